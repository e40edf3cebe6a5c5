#include "workers/trainer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "workers/dataset.h"
#include "workers/device_probe.h"
#include "workers/memory_stats.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kTrainSamples = 2000;
constexpr int64_t kTestSamples = 500;

// A temporary folder per test binary with one generated shapes dataset (and its MNIST-format
// twin), made on first use and removed when the tests end.
class ShapesEnvironment : public ::testing::Environment {
 public:
  static const fs::path& Root() {
    static const fs::path root =
        fs::temp_directory_path() / ("topotune_trainer_test_" + std::to_string(::getpid()));
    return root;
  }
  static std::string DataDir() {
    static const std::string dir = [] {
      const fs::path path = Root() / "shapes";
      ShapesOptions options;
      options.train_samples = kTrainSamples;
      options.test_samples = kTestSamples;
      const Status status = WriteShapesDataset(path.string(), options);
      EXPECT_TRUE(status.ok()) << status.ToString();
      return path.string();
    }();
    return dir;
  }
  // The same shapes as one-channel 28x28 images in gzipped MNIST IDX files.
  static std::string MnistDataDir() {
    static const std::string dir = [] {
      const fs::path path = Root() / "shapes_mnist";
      for (const char* split : {"train", "test"}) {
        StatusOr<ImageSet> rgb = ReadCifar10(DataDir(), split);
        EXPECT_TRUE(rgb.ok()) << rgb.status().ToString();
        if (!rgb.ok()) break;
        const Status status = WriteMnistIdx(path.string(), split, GreyCentreCrop(*rgb), true);
        EXPECT_TRUE(status.ok()) << status.ToString();
      }
      return path.string();
    }();
    return dir;
  }
  static std::string CheckpointDir() { return (Root() / "checkpoints").string(); }
  // A checkpoint stem of its own for the running test.
  static std::string CheckpointStem(const std::string& tag = "") {
    return std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + tag;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(Root(), ec);
  }
};

[[maybe_unused]] const auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new ShapesEnvironment);

// One intra-op thread: steady timings on a small, shared machine.
Trainer& SharedTrainer() {
  static Trainer trainer(/*threads=*/1);
  return trainer;
}

TrainRequest Request(int batch_size, Optimizer optimizer, double learning_rate, int end_epoch) {
  TrainRequest request;
  request.model = "lenet";
  request.data_dir = ShapesEnvironment::DataDir();
  request.config.batch_size = batch_size;
  request.config.optimizer = optimizer;
  request.config.learning_rate = learning_rate;
  request.seed = 11;
  request.end_epoch = end_epoch;
  request.checkpoint_dir = ShapesEnvironment::CheckpointDir();
  request.checkpoint_stem = ShapesEnvironment::CheckpointStem();
  return request;
}

struct Outcome {
  TrainResult result;
  std::vector<CurvePoint> points;
};

Outcome Train(const TrainRequest& request, bool stop_now = false) {
  Outcome outcome;
  std::atomic<bool> stop{stop_now};
  outcome.result = SharedTrainer().Run(
      request, [&](const CurvePoint& point) { outcome.points.push_back(point); }, stop);
  return outcome;
}

TEST(Trainer, LearnsShapesWithAGoodConfig) {
  const TrainRequest request = Request(/*batch_size=*/16, Optimizer::kAdam, 2e-3, 4);
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  EXPECT_EQ(outcome.result.epochs_done, 4);
  EXPECT_FALSE(outcome.result.reached_target);
  ASSERT_EQ(outcome.points.size(), 4u);
  for (size_t i = 0; i < outcome.points.size(); ++i) {
    const CurvePoint& point = outcome.points[i];
    SCOPED_TRACE("epoch " + std::to_string(point.epoch));
    EXPECT_EQ(point.trial_id, 0);
    EXPECT_EQ(point.epoch, static_cast<int>(i) + 1);
    EXPECT_EQ(point.samples_seen, point.epoch * kTrainSamples);
    EXPECT_TRUE(std::isfinite(point.train_loss));
    EXPECT_GT(point.compute_s, 0.0);
    EXPECT_NEAR(point.data_s + point.forward_s + point.backward_s + point.optimizer_s,
                point.compute_s, 1e-6 * point.compute_s);
    EXPECT_EQ(point.comm_s, 0.0);
    EXPECT_GT(point.eval_s, 0.0);
    EXPECT_GE(point.wall_s, point.compute_s + point.eval_s);
    EXPECT_GT(point.step_ms_p50, 0.0);
    EXPECT_GE(point.step_ms_p95, point.step_ms_p50);
    EXPECT_LE(point.step_ms_p95 * 1e-3, point.compute_s);
    EXPECT_GT(point.peak_memory_bytes, 0);
  }
  EXPECT_LT(outcome.points.back().train_loss, outcome.points.front().train_loss);
  EXPECT_GT(outcome.points.back().val_accuracy, 0.4) << "chance is 0.1";
  EXPECT_EQ(outcome.result.checkpoint_path, CheckpointPath(request, 4));
  EXPECT_TRUE(fs::exists(CheckpointPath(request, 4)));
}

TEST(Trainer, ResNet8LearnsTheGeneratedShapesInTwoEpochs) {
  TrainRequest request = Request(/*batch_size=*/16, Optimizer::kAdam, 2e-3, 2);
  request.model = "resnet8";
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  ASSERT_EQ(outcome.points.size(), 2u);
  EXPECT_GT(outcome.points.back().val_accuracy, 0.3) << "chance is 0.1";
}

TEST(Trainer, ResumeContinuesTheEpochsAndMatchesAStraightRun) {
  TrainRequest first = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 1);
  first.max_train_samples = 512;
  const Outcome one = Train(first);
  ASSERT_EQ(one.result.status, SegmentStatus::kCompleted) << one.result.message;
  ASSERT_EQ(one.points.size(), 1u);
  EXPECT_EQ(one.points[0].epoch, 1);

  TrainRequest second = first;
  second.start_epoch = 1;
  second.end_epoch = 2;
  const Outcome resumed = Train(second);
  ASSERT_EQ(resumed.result.status, SegmentStatus::kCompleted) << resumed.result.message;
  EXPECT_EQ(resumed.result.epochs_done, 2);
  ASSERT_EQ(resumed.points.size(), 1u);
  EXPECT_EQ(resumed.points[0].epoch, 2);
  EXPECT_EQ(resumed.points[0].samples_seen, 2 * 512);

  // Model, momentum and shuffle all carry over: the same as two epochs in one go.
  TrainRequest straight = first;
  straight.end_epoch = 2;
  straight.checkpoint_stem = ShapesEnvironment::CheckpointStem("_straight");
  const Outcome two = Train(straight);
  ASSERT_EQ(two.points.size(), 2u);
  EXPECT_NEAR(two.points[1].train_loss, resumed.points[0].train_loss, 1e-3);
  EXPECT_NEAR(two.points[1].val_accuracy, resumed.points[0].val_accuracy, 0.01);

  // Each epoch has its own checkpoint: epoch 1's is still there for a rerun of the second
  // segment. A file that holds another epoch than its name says is refused.
  EXPECT_TRUE(fs::exists(CheckpointPath(first, 1)));
  EXPECT_TRUE(fs::exists(CheckpointPath(first, 2)));
  fs::copy_file(CheckpointPath(first, 2), CheckpointPath(first, 1),
                fs::copy_options::overwrite_existing);
  const Outcome stale = Train(second);
  EXPECT_EQ(stale.result.status, SegmentStatus::kFailed);
  EXPECT_NE(stale.result.message.find("holds epoch 2"), std::string::npos) << stale.result.message;
  EXPECT_TRUE(stale.points.empty());
}

TEST(Trainer, StopsAfterTheEpochThatReachesTheTarget) {
  TrainRequest request = Request(/*batch_size=*/64, Optimizer::kSgd, 0.05, 5);
  request.max_train_samples = 256;
  request.max_val_samples = 100;
  request.target_accuracy = 0.0;  // any accuracy reaches it
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  EXPECT_TRUE(outcome.result.reached_target);
  EXPECT_EQ(outcome.result.epochs_done, 1);
  ASSERT_EQ(outcome.points.size(), 1u);
  EXPECT_EQ(outcome.points[0].samples_seen, 256);
  EXPECT_TRUE(fs::exists(CheckpointPath(request, 1)));
}

TEST(Trainer, PresetStopFlagReturnsStoppedAtOnce) {
  const TrainRequest request = Request(/*batch_size=*/32, Optimizer::kAdam, 1e-3, 3);
  // No epoch ran: it returned at the first check, not after training (no wall-clock bound
  // here; speed is bench/'s business).
  const Outcome outcome = Train(request, /*stop_now=*/true);
  EXPECT_EQ(outcome.result.status, SegmentStatus::kStopped);
  EXPECT_EQ(outcome.result.epochs_done, 0);
  EXPECT_TRUE(outcome.points.empty());
}

TEST(Trainer, UnknownModelFailsNamingTheKnownOnes) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kAdam, 1e-3, 1);
  request.model = "resnet-9000";
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, SegmentStatus::kFailed);
  EXPECT_NE(outcome.result.message.find("unknown model 'resnet-9000'; known: lenet"),
            std::string::npos)
      << outcome.result.message;
  EXPECT_TRUE(outcome.points.empty());
}

TEST(Trainer, MissingCheckpointFails) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 3);
  request.start_epoch = 2;
  request.checkpoint_stem = ShapesEnvironment::CheckpointStem("_never_written");
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, SegmentStatus::kFailed);
  EXPECT_EQ(outcome.result.epochs_done, 2);
  EXPECT_NE(outcome.result.message.find(CheckpointPath(request, 2)), std::string::npos)
      << outcome.result.message;
  EXPECT_TRUE(outcome.points.empty());
}

TEST(Trainer, MissingDataFailsNamingTheFolder) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 1);
  request.data_dir = (ShapesEnvironment::Root() / "no_such_data").string();
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, SegmentStatus::kFailed);
  EXPECT_NE(outcome.result.message.find(request.data_dir), std::string::npos)
      << outcome.result.message;
}

TEST(Trainer, RejectsABadBatchSize) {
  const Outcome outcome = Train(Request(/*batch_size=*/0, Optimizer::kSgd, 0.05, 1));
  EXPECT_EQ(outcome.result.status, SegmentStatus::kFailed);
  EXPECT_NE(outcome.result.message.find("batch_size"), std::string::npos);
}

TEST(Trainer, HugeLearningRateDivergesOrLearnsNothing) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 1e6, 2);
  request.max_train_samples = 512;
  const Outcome outcome = Train(request);
  if (outcome.result.status == SegmentStatus::kFailed) {
    EXPECT_NE(outcome.result.message.find("diverged: train loss is"), std::string::npos)
        << outcome.result.message;
    EXPECT_EQ(outcome.result.epochs_done, static_cast<int>(outcome.points.size()));
  } else {
    ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
    ASSERT_FALSE(outcome.points.empty());
    EXPECT_LT(outcome.points.back().val_accuracy, 0.3);
  }
}

TEST(Trainer, PhaseTimesArePositiveAndSumToComputeTime) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 2);
  request.max_train_samples = 512;
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  ASSERT_EQ(outcome.points.size(), 2u);
  for (const CurvePoint& point : outcome.points) {
    SCOPED_TRACE("epoch " + std::to_string(point.epoch));
    EXPECT_GT(point.data_s, 0.0);
    EXPECT_GT(point.forward_s, 0.0);
    EXPECT_GT(point.backward_s, 0.0);
    EXPECT_GT(point.optimizer_s, 0.0);
    EXPECT_NEAR(point.data_s + point.forward_s + point.backward_s + point.optimizer_s,
                point.compute_s, 1e-6 * point.compute_s);
    // Training needs more than the copying of its batches.
    EXPECT_GT(point.forward_s + point.backward_s, point.data_s);
  }
}

// A product target: on one CPU thread, LeNet at batch 128 spends at most 5% of its training
// time getting batches ready.
TEST(Trainer, LeNetLearnsOneChannelMnistFormatShapes) {
  TrainRequest request = Request(/*batch_size=*/16, Optimizer::kAdam, 2e-3, 3);
  request.data_format = "mnist-idx";
  request.data_dir = ShapesEnvironment::MnistDataDir();
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  ASSERT_EQ(outcome.points.size(), 3u);
  EXPECT_EQ(outcome.points.back().samples_seen, 3 * kTrainSamples);
  EXPECT_LT(outcome.points.back().train_loss, outcome.points.front().train_loss);
  EXPECT_GT(outcome.points.back().val_accuracy, 0.3) << "chance is 0.1";
}

TEST(Trainer, DatasetsOfDifferentFormatsInOneFolderAreKeptApart) {
  // The cache key holds the format: the 3-channel set of a folder is not reused for its
  // MNIST files, nor the other way round.
  const fs::path both = ShapesEnvironment::Root() / "both_formats";
  fs::create_directories(both);
  for (const char* name : {"data_batch_1.bin", "test_batch.bin"}) {
    fs::copy_file(fs::path(ShapesEnvironment::DataDir()) / name, both / name,
                  fs::copy_options::overwrite_existing);
  }
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    fs::copy_file(fs::path(ShapesEnvironment::MnistDataDir()) / name, both / name,
                  fs::copy_options::overwrite_existing);
  }
  for (const char* format : {"cifar10-bin", "mnist-idx", "cifar10-bin"}) {
    SCOPED_TRACE(format);
    TrainRequest request = Request(/*batch_size=*/64, Optimizer::kSgd, 0.05, 1);
    request.data_format = format;
    request.data_dir = both.string();
    request.max_train_samples = 128;
    request.max_val_samples = 64;
    const Outcome outcome = Train(request);
    EXPECT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  }
  TrainRequest unknown = Request(/*batch_size=*/64, Optimizer::kSgd, 0.05, 1);
  unknown.data_format = "imagenet-jpeg";
  const Outcome outcome = Train(unknown);
  EXPECT_EQ(outcome.result.status, SegmentStatus::kFailed);
  EXPECT_NE(outcome.result.message.find("imagenet-jpeg"), std::string::npos)
      << outcome.result.message;
}

TEST(Trainer, AugmentationTrainsAndIsDeterministicForASeed) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kAdam, 2e-3, 3);
  request.max_train_samples = 1000;
  request.augment = true;
  const Outcome first = Train(request);
  ASSERT_EQ(first.result.status, SegmentStatus::kCompleted) << first.result.message;
  ASSERT_EQ(first.points.size(), 3u);
  EXPECT_GT(first.points.back().val_accuracy, 0.2) << "chance is 0.1";
  for (const CurvePoint& point : first.points) EXPECT_GT(point.data_s, 0.0);

  const Outcome second = Train(request);
  ASSERT_EQ(second.points.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(second.points[i].val_accuracy, first.points[i].val_accuracy) << "epoch " << i + 1;
    EXPECT_EQ(second.points[i].train_loss, first.points[i].train_loss) << "epoch " << i + 1;
  }

  // The crops and flips change what the model sees.
  request.augment = false;
  const Outcome plain = Train(request);
  ASSERT_EQ(plain.points.size(), 3u);
  EXPECT_NE(plain.points[0].train_loss, first.points[0].train_loss);
}

TEST(Trainer, MemoryStaysFlatAcrossEpochs) {
  const Outcome outcome = Train(Request(/*batch_size=*/64, Optimizer::kAdam, 1e-3, 4));
  ASSERT_EQ(outcome.result.status, SegmentStatus::kCompleted) << outcome.result.message;
  ASSERT_EQ(outcome.points.size(), 4u);
  const double second = static_cast<double>(outcome.points[1].peak_memory_bytes);
  const double fourth = static_cast<double>(outcome.points[3].peak_memory_bytes);
  std::printf("peak memory: epoch 2 %.1f MB, epoch 4 %.1f MB\n", second / 1e6, fourth / 1e6);
  EXPECT_LE(fourth - second, std::max(0.05 * second, 20e6));
}

TEST(MemoryStats, ResetStartsANewPeakOnTheCpu) {
  constexpr size_t kBytes = size_t{256} << 20;
  ResetPeakMemory(/*cuda_device=*/-1);
  const int64_t before = PeakMemory(-1);
  ASSERT_GT(before, 0);
  {
    std::unique_ptr<char[]> block(new char[kBytes]);
    std::memset(block.get(), 1, kBytes);  // resident, not just reserved
    EXPECT_GE(PeakMemory(-1), before + static_cast<int64_t>(kBytes) * 9 / 10);
  }
  // Freed, given back by the reset's malloc_trim, and no longer part of the new peak.
  ResetPeakMemory(-1);
  EXPECT_LT(PeakMemory(-1), before + static_cast<int64_t>(kBytes) / 2);
  EXPECT_EQ(ReadProcNumber("/proc/self/status", "NoSuchField:", 1024), 0);
  EXPECT_GT(ReadProcNumber("/proc/meminfo", "MemTotal:", 1024), 0);
}

TEST(Trainer, ProbeDeviceDescribesThisMachine) {
  const DeviceProfile profile = Trainer::ProbeDevice();
  EXPECT_TRUE(profile.kind == "cpu" || profile.kind == "cuda") << profile.kind;
  EXPECT_FALSE(profile.name.empty());
  EXPECT_GT(profile.cores, 0);
  EXPECT_GT(profile.memory_bytes, 0);
}

TEST(DeviceProbe, TimesAsManyRoundsAsTheTimedSecondsAllow) {
  ProbeRequest request;
  request.rounds = 5;
  request.min_timed_s = 6.0;
  EXPECT_EQ(ProbeRounds(request), 5);  // 1.2 s each
  request.min_timed_s = 1.0;           // the agent's default: two rounds of 0.5 s
  EXPECT_EQ(ProbeRounds(request), 2);
  request.min_timed_s = 0.3;
  EXPECT_EQ(ProbeRounds(request), 1);
  request.min_timed_s = 0.0;
  EXPECT_EQ(ProbeRounds(request), 1);
  request.min_timed_s = 60.0;
  request.rounds = 1;
  EXPECT_EQ(ProbeRounds(request), 1);
  request.rounds = 0;
  EXPECT_EQ(ProbeRounds(request), 1);
}

TEST(DeviceProbe, EachSizeThatFitsGetsTheStepOfItsMedianRoundAndIsProbedOnce) {
  DeviceProber prober;
  ProbeRequest request;
  request.model = "lenet";
  request.data_dir = ShapesEnvironment::DataDir();
  request.batch_sizes = {32, 8};
  request.timed_steps = 1;
  request.min_timed_s = 1.5;  // three rounds of 0.5 s
  request.rounds = 3;
  StatusOr<DeviceProbe> first = prober.Probe(request);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->input, "3x32x32");
  ASSERT_EQ(first->batches.size(), 2u);
  EXPECT_EQ(first->batches[0].batch_size, 8);  // ascending
  EXPECT_EQ(first->batches[1].batch_size, 32);
  for (const BatchProbe& b : first->batches) {
    EXPECT_TRUE(b.fits) << b.error;
    EXPECT_GT(b.step_ms, 0.0);
    EXPECT_GT(b.forward_ms, 0.0);
    EXPECT_GT(b.backward_ms, 0.0);
    // The parts come from the same round (or the same two), so they add up to the step.
    EXPECT_NEAR(b.forward_ms + b.backward_ms + b.optimizer_ms, b.step_ms, 1e-9 * b.step_ms);
    EXPECT_GT(b.peak_memory_bytes, 0);
    // Adam's update does about three times momentum SGD's work per weight (two moments, a
    // square root, a division); its extra is timed once, whatever the batch.
    EXPECT_GT(b.adam_optimizer_ms, b.optimizer_ms);
    // Every round timed its 0.5 s at least.
    EXPECT_GE(b.timed_s, request.min_timed_s);
  }
  EXPECT_NEAR(first->batches[0].adam_optimizer_ms - first->batches[0].optimizer_ms,
              first->batches[1].adam_optimizer_ms - first->batches[1].optimizer_ms, 1e-9);
  // A second probe of the same sizes is answered from the first, not timed again.
  request.batch_sizes = {8, 16, 32};
  StatusOr<DeviceProbe> again = prober.Probe(request);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->batches.size(), 3u);
  EXPECT_EQ(again->batches[0].step_ms, first->batches[0].step_ms);
  EXPECT_EQ(again->batches[0].timed_s, first->batches[0].timed_s);
  EXPECT_TRUE(again->batches[1].fits) << again->batches[1].error;  // new: timed now
  EXPECT_GT(again->batches[1].step_ms, 0.0);
  EXPECT_EQ(again->batches[2].step_ms, first->batches[1].step_ms);
}

}  // namespace
}  // namespace topotune
