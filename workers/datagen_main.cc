// topotune-datagen: writes the generated shapes dataset in CIFAR-10 binary format.

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "workers/dataset.h"

namespace {

constexpr char kUsage[] =
    "usage: topotune-datagen --out DIR [--train N] [--test N] [--noise X] [--seed S]\n"
    "  --out DIR    folder to write data_batch_1.bin, test_batch.bin, batches.meta.txt\n"
    "  --train N    training images (default 5000)\n"
    "  --test N     test images (default 1000)\n"
    "  --noise X    std of the pixel noise, 0..1 (default 0.15)\n"
    "  --seed S     random seed (default 1)\n";

int BadFlag(const std::string& message) {
  std::fprintf(stderr, "topotune-datagen: %s\n%s", message.c_str(), kUsage);
  return 2;
}

bool ParseInt(const std::string& text, long long* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *value = std::strtoll(text.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

bool ParseUnsigned(const std::string& text, unsigned long long* value) {
  if (text.empty() || text[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  *value = std::strtoull(text.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

bool ParseDouble(const std::string& text, double* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *value = std::strtod(text.c_str(), &end);
  return errno == 0 && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  topotune::ShapesOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::string value;
    const size_t equals = flag.find('=');
    if (equals != std::string::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    } else if (flag == "--out" || flag == "--train" || flag == "--test" || flag == "--noise" ||
               flag == "--seed") {
      if (i + 1 >= argc) return BadFlag(flag + " needs a value");
      value = argv[++i];
    } else {
      return BadFlag("unknown flag '" + flag + "'");
    }

    long long count = 0;
    unsigned long long seed = 0;
    if (flag == "--out") {
      if (value.empty()) return BadFlag("--out is empty");
      out = value;
    } else if (flag == "--train") {
      if (!ParseInt(value, &count) || count < 1) {
        return BadFlag("--train is '" + value + "', expected an integer >= 1");
      }
      options.train_samples = count;
    } else if (flag == "--test") {
      if (!ParseInt(value, &count) || count < 1) {
        return BadFlag("--test is '" + value + "', expected an integer >= 1");
      }
      options.test_samples = count;
    } else if (flag == "--noise") {
      if (!ParseDouble(value, &options.noise) || !(options.noise >= 0 && options.noise <= 1)) {
        return BadFlag("--noise is '" + value + "', expected a number in 0..1");
      }
    } else if (flag == "--seed") {
      if (!ParseUnsigned(value, &seed)) {
        return BadFlag("--seed is '" + value + "', expected a non-negative integer");
      }
      options.seed = seed;
    } else {
      return BadFlag("unknown flag '" + flag + "'");
    }
  }
  if (out.empty()) return BadFlag("--out DIR is required");

  const topotune::Status status = topotune::WriteShapesDataset(out, options);
  if (!status.ok()) {
    std::fprintf(stderr, "topotune-datagen: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf(
      "wrote %s: data_batch_1.bin (%lld train images), test_batch.bin (%lld test images), "
      "batches.meta.txt; noise %g, seed %llu\n",
      out.c_str(), static_cast<long long>(options.train_samples),
      static_cast<long long>(options.test_samples), options.noise,
      static_cast<unsigned long long>(options.seed));
  return 0;
}
