// topotune-datagen: writes the generated shapes dataset in CIFAR-10 binary format, or
// as one-channel 28x28 images in MNIST's IDX format.

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "workers/dataset.h"

namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: topotune-datagen --out DIR [--format F] [--gzip] [--train N] [--test N] [--noise X]\n"
    "                        [--seed S]\n"
    "  --out DIR    folder to write the dataset and batches.meta.txt into\n"
    "  --format F   cifar10-bin (default): data_batch_1.bin, test_batch.bin, 3x32x32;\n"
    "               mnist-idx: train-/t10k-images-idx3-ubyte and -labels-idx1-ubyte, 1x28x28\n"
    "               (the centre crop of the channel where each shape stands out most)\n"
    "  --gzip       mnist-idx only: write the files gzipped, with a .gz suffix\n"
    "  --train N    training images (default 5000)\n"
    "  --test N     test images (default 1000)\n"
    "  --noise X    std of the pixel noise, 0..1 (default 0.15)\n"
    "  --seed S     random seed (default 1)\n";

// Generates the shapes in a scratch folder, then writes both splits to `out` as MNIST IDX.
topotune::Status WriteShapesAsMnist(const std::string& out, const topotune::ShapesOptions& options,
                                    bool gzip) {
  const fs::path scratch =
      fs::temp_directory_path() / ("topotune-datagen-" + std::to_string(::getpid()));
  topotune::Status status = topotune::WriteShapesDataset(scratch.string(), options);
  for (const char* split : {"train", "test"}) {
    if (!status.ok()) break;
    topotune::StatusOr<topotune::ImageSet> rgb = topotune::ReadCifar10(scratch.string(), split);
    status = rgb.ok() ? topotune::WriteMnistIdx(out, split, topotune::GreyCentreCrop(*rgb), gzip)
                      : rgb.status();
  }
  std::error_code ec;
  if (status.ok()) {
    fs::copy_file(scratch / "batches.meta.txt", fs::path(out) / "batches.meta.txt",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) status = topotune::Status::IOError("cannot write batches.meta.txt: " + ec.message());
  }
  fs::remove_all(scratch, ec);
  return status;
}

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
  std::string format = "cifar10-bin";
  bool gzip = false;
  topotune::ShapesOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (flag == "--gzip") {
      gzip = true;
      continue;
    }
    std::string value;
    const size_t equals = flag.find('=');
    if (equals != std::string::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
    } else if (flag == "--out" || flag == "--format" || flag == "--train" || flag == "--test" ||
               flag == "--noise" || flag == "--seed") {
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
    } else if (flag == "--format") {
      if (value != "cifar10-bin" && value != "mnist-idx") {
        return BadFlag("--format is '" + value + "', expected cifar10-bin or mnist-idx");
      }
      format = value;
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
  if (gzip && format != "mnist-idx") return BadFlag("--gzip needs --format mnist-idx");

  const bool mnist = format == "mnist-idx";
  const topotune::Status status =
      mnist ? WriteShapesAsMnist(out, options, gzip) : topotune::WriteShapesDataset(out, options);
  if (!status.ok()) {
    std::fprintf(stderr, "topotune-datagen: %s\n", status.ToString().c_str());
    return 1;
  }
  const std::string suffix = gzip ? ".gz" : "";
  const std::string train_file = mnist ? "train-*-ubyte" + suffix : "data_batch_1.bin";
  const std::string test_file = mnist ? "t10k-*-ubyte" + suffix : "test_batch.bin";
  std::printf(
      "wrote %s (%s): %s (%lld train images), %s (%lld test images), batches.meta.txt; "
      "noise %g, seed %llu\n",
      out.c_str(), format.c_str(), train_file.c_str(),
      static_cast<long long>(options.train_samples), test_file.c_str(),
      static_cast<long long>(options.test_samples), options.noise,
      static_cast<unsigned long long>(options.seed));
  return 0;
}
