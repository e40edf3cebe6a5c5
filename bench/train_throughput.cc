// bench_train_throughput: the training throughput of the worker's own Trainer, one model
// and batch size, for comparison with bench/train_throughput.py (the same work in Python
// PyTorch). Trains one warm-up epoch and one timed epoch and prints samples/s of the timed
// one: training samples / CurvePoint::compute_s (batch assembly, forward, loss, backward
// and optimizer step; evaluation and checkpointing excluded).

#include <ATen/Context.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "tuner/types.h"
#include "workers/dataset.h"
#include "workers/trainer.h"

namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: bench_train_throughput --data DIR [--model M] [--batch B] [--threads T]\n"
    "                              [--train-samples N] [--val-samples N] [--seed S]\n"
    "                              [--deterministic] [--json]\n"
    "       bench_train_throughput --generate DIR [--train-samples N] [--val-samples N]\n"
    "  --data DIR          CIFAR-10 binary dataset (data_batch_1.bin, test_batch.bin)\n"
    "  --model M           model name (default lenet)\n"
    "  --batch B           batch size (default 32)\n"
    "  --threads T         LibTorch intra-op (and inter-op) threads, as the worker's --threads\n"
    "                      (default 1)\n"
    "  --train-samples N   first N training images (default 0: all)\n"
    "  --val-samples N     first N test images for the untimed evaluation after each epoch\n"
    "                      (default 1: its CPU time falls into cpu_s, kept negligible)\n"
    "  --seed S            weights and shuffle seed (default 0)\n"
    "  --deterministic     ask cuDNN for deterministic algorithms, no autotuning (GPU runs;\n"
    "                      the Python twin's --deterministic asks the same)\n"
    "  --json              print one JSON line instead of text\n"
    "  --generate DIR      write the shapes dataset (N training, N test images) and exit\n";

// SGD with momentum 0.9 (TrainRequest's default), lr 0.01: what the Python twin runs.
constexpr double kLearningRate = 0.01;

// CPU seconds of this process, all threads.
double ProcessCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Minor page faults of this process so far: a fresh page mapped in, typically a large
// tensor's buffer that malloc took from (and gave back to) the kernel.
int64_t MinorPageFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// An epoch's point and the clocks when the trainer reported it.
struct EpochMark {
  topotune::CurvePoint point;
  double cpu_s = 0.0;
  double wall_s = 0.0;
  int64_t page_faults = 0;
};

struct Options {
  std::string data_dir;
  std::string generate_dir;
  std::string model = "lenet";
  int batch = 32;
  int threads = 1;
  int64_t train_samples = 0;
  int64_t val_samples = 1;
  uint64_t seed = 0;
  bool deterministic = false;
  bool json = false;
};

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "bench_train_throughput: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

int64_t ParseCount(const std::string& flag, const char* text, int64_t min) {
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < min) {
    Fail(flag + " is '" + text + "', expected an integer >= " + std::to_string(min));
  }
  return value;
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--json") {
      options.json = true;
      continue;
    }
    if (flag == "--deterministic") {
      options.deterministic = true;
      continue;
    }
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) Fail("unknown flag or missing value: " + flag);
    const char* value = argv[++i];
    if (flag == "--data") {
      options.data_dir = value;
    } else if (flag == "--generate") {
      options.generate_dir = value;
    } else if (flag == "--model") {
      options.model = value;
    } else if (flag == "--batch") {
      options.batch = static_cast<int>(ParseCount(flag, value, 1));
    } else if (flag == "--threads") {
      options.threads = static_cast<int>(ParseCount(flag, value, 1));
    } else if (flag == "--train-samples") {
      options.train_samples = ParseCount(flag, value, 0);
    } else if (flag == "--val-samples") {
      options.val_samples = ParseCount(flag, value, 1);
    } else if (flag == "--seed") {
      options.seed = static_cast<uint64_t>(ParseCount(flag, value, 0));
    } else {
      Fail("unknown flag: " + flag);
    }
  }
  if (options.data_dir.empty() && options.generate_dir.empty()) {
    Fail("--data DIR or --generate DIR is required");
  }
  return options;
}

int Generate(const Options& options) {
  topotune::ShapesOptions shapes;
  if (options.train_samples > 0) shapes.train_samples = options.train_samples;
  shapes.test_samples = std::max<int64_t>(options.val_samples, 200);
  const topotune::Status status = topotune::WriteShapesDataset(options.generate_dir, shapes);
  if (!status.ok()) {
    std::fprintf(stderr, "bench_train_throughput: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  if (!options.generate_dir.empty()) return Generate(options);
  if (options.deterministic) {
    at::globalContext().setDeterministicCuDNN(true);
    at::globalContext().setBenchmarkCuDNN(false);
  }

  topotune::TrainRequest request;
  request.model = options.model;
  request.data_dir = options.data_dir;
  request.max_train_samples = options.train_samples;
  request.max_val_samples = options.val_samples;
  request.config = {options.batch, kLearningRate, topotune::Optimizer::kSgd};
  request.seed = options.seed;
  request.start_epoch = 0;
  request.end_epoch = 2;          // a warm-up epoch, then the timed one
  request.target_accuracy = 2.0;  // never reached: both epochs always run
  request.checkpoint_dir = fs::temp_directory_path().string();
  request.checkpoint_stem = "bench_train_throughput_" + std::to_string(::getpid());

  std::vector<EpochMark> marks;
  std::atomic<bool> stop{false};
  topotune::Trainer trainer(options.threads);
  const topotune::TrainResult result = trainer.Run(
      request,
      [&marks](const topotune::CurvePoint& point) {
        marks.push_back({point, ProcessCpuSeconds(), WallSeconds(), MinorPageFaults()});
      },
      stop);
  std::error_code ignored;
  fs::remove(result.checkpoint_path, ignored);
  if (result.status != topotune::SegmentStatus::kCompleted || marks.size() != 2) {
    std::fprintf(stderr, "bench_train_throughput: training %s: %s\n",
                 topotune::SegmentStatusName(result.status), result.message.c_str());
    return 1;
  }

  const topotune::CurvePoint& timed = marks[1].point;
  const int64_t samples = timed.samples_seen - marks[0].point.samples_seen;
  const double samples_per_s = static_cast<double>(samples) / timed.compute_s;
  const double data_share = timed.data_s / timed.compute_s;
  // CPU seconds of the timed epoch (its evaluation of --val-samples images included), and
  // per wall second: about `threads` on a quiet machine, lower when other processes took
  // the cores. samples / cpu_s does not count the time the process waited for a core.
  const double cpu_s = marks[1].cpu_s - marks[0].cpu_s;
  const double cpu_per_wall = cpu_s / (marks[1].wall_s - marks[0].wall_s);
  const double samples_per_cpu_s = static_cast<double>(samples) / cpu_s;
  const int64_t steps = (samples + options.batch - 1) / options.batch;
  const double page_faults_per_step =
      static_cast<double>(marks[1].page_faults - marks[0].page_faults) / static_cast<double>(steps);
  // The Trainer's choice: the first CUDA GPU when there is one, else the CPU.
  const std::string device = topotune::Trainer::ProbeDevice().kind;
  if (options.json) {
    std::printf(
        "{\"impl\": \"cpp\", \"device\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"threads\": "
        "%d, "
        "\"samples\": %lld, \"samples_per_s\": %.6g, \"compute_s\": %.6g, \"data_s\": %.6g, "
        "\"forward_s\": %.6g, \"backward_s\": %.6g, \"optimizer_s\": %.6g, "
        "\"data_share\": %.6g, \"step_ms_p50\": %.6g, \"cpu_s\": %.6g, "
        "\"samples_per_cpu_s\": %.6g, \"cpu_per_wall\": %.4g, \"page_faults_per_step\": %.6g, "
        "\"warmup_loss\": %.8g, \"train_loss\": %.8g}\n",
        device.c_str(), options.model.c_str(), options.batch, options.threads,
        static_cast<long long>(samples), samples_per_s, timed.compute_s, timed.data_s,
        timed.forward_s, timed.backward_s, timed.optimizer_s, data_share, timed.step_ms_p50, cpu_s,
        samples_per_cpu_s, cpu_per_wall, page_faults_per_step, marks[0].point.train_loss,
        timed.train_loss);
  } else {
    std::printf(
        "C++ Trainer  %s on %s  batch %d  threads %d: %.1f samples/s (%lld samples in %.3f s; "
        "data %.1f%%, forward %.3f s, backward %.3f s, optimizer %.3f s; step p50 %.2f ms; "
        "CPU/wall %.2f; %.0f page faults per step; train loss %.4f)\n",
        options.model.c_str(), device.c_str(), options.batch, options.threads, samples_per_s,
        static_cast<long long>(samples), timed.compute_s, 100.0 * data_share, timed.forward_s,
        timed.backward_s, timed.optimizer_s, timed.step_ms_p50, cpu_per_wall, page_faults_per_step,
        timed.train_loss);
  }
  return 0;
}
