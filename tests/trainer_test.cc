#include "workers/trainer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "workers/dataset.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kTrainSamples = 2000;
constexpr int64_t kTestSamples = 500;

// A temporary folder per test binary with one generated shapes dataset, made on first use
// and removed when the tests end.
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
  // A checkpoint path of its own for the running test.
  static std::string CheckpointPath(const std::string& tag = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return (Root() / "checkpoints" / (std::string(info->name()) + tag + ".pt")).string();
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
  request.checkpoint_path = ShapesEnvironment::CheckpointPath();
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
  ASSERT_EQ(outcome.result.status, "completed") << outcome.result.message;
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
  EXPECT_TRUE(fs::exists(request.checkpoint_path));
}

TEST(Trainer, ResumeContinuesTheEpochsAndMatchesAStraightRun) {
  TrainRequest first = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 1);
  first.max_train_samples = 512;
  const Outcome one = Train(first);
  ASSERT_EQ(one.result.status, "completed") << one.result.message;
  ASSERT_EQ(one.points.size(), 1u);
  EXPECT_EQ(one.points[0].epoch, 1);

  TrainRequest second = first;
  second.start_epoch = 1;
  second.end_epoch = 2;
  const Outcome resumed = Train(second);
  ASSERT_EQ(resumed.result.status, "completed") << resumed.result.message;
  EXPECT_EQ(resumed.result.epochs_done, 2);
  ASSERT_EQ(resumed.points.size(), 1u);
  EXPECT_EQ(resumed.points[0].epoch, 2);
  EXPECT_EQ(resumed.points[0].samples_seen, 2 * 512);

  // Model, momentum and shuffle all carry over: the same as two epochs in one go.
  TrainRequest straight = first;
  straight.end_epoch = 2;
  straight.checkpoint_path = ShapesEnvironment::CheckpointPath("_straight");
  const Outcome two = Train(straight);
  ASSERT_EQ(two.points.size(), 2u);
  EXPECT_NEAR(two.points[1].train_loss, resumed.points[0].train_loss, 1e-3);
  EXPECT_NEAR(two.points[1].val_accuracy, resumed.points[0].val_accuracy, 0.01);

  // The checkpoint now holds epoch 2: resuming it as epoch 1 is refused.
  const Outcome stale = Train(second);
  EXPECT_EQ(stale.result.status, "failed");
  EXPECT_NE(stale.result.message.find("holds epoch 2"), std::string::npos) << stale.result.message;
  EXPECT_TRUE(stale.points.empty());
}

TEST(Trainer, StopsAfterTheEpochThatReachesTheTarget) {
  TrainRequest request = Request(/*batch_size=*/64, Optimizer::kSgd, 0.05, 5);
  request.max_train_samples = 256;
  request.max_val_samples = 100;
  request.target_accuracy = 0.0;  // any accuracy reaches it
  const Outcome outcome = Train(request);
  ASSERT_EQ(outcome.result.status, "completed") << outcome.result.message;
  EXPECT_TRUE(outcome.result.reached_target);
  EXPECT_EQ(outcome.result.epochs_done, 1);
  ASSERT_EQ(outcome.points.size(), 1u);
  EXPECT_EQ(outcome.points[0].samples_seen, 256);
  EXPECT_TRUE(fs::exists(request.checkpoint_path));
}

TEST(Trainer, PresetStopFlagReturnsStoppedAtOnce) {
  const TrainRequest request = Request(/*batch_size=*/32, Optimizer::kAdam, 1e-3, 3);
  const auto begin = std::chrono::steady_clock::now();
  const Outcome outcome = Train(request, /*stop_now=*/true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(outcome.result.status, "stopped");
  EXPECT_EQ(outcome.result.epochs_done, 0);
  EXPECT_TRUE(outcome.points.empty());
  EXPECT_LT(seconds, 5.0);
}

TEST(Trainer, UnknownModelFailsNamingTheKnownOnes) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kAdam, 1e-3, 1);
  request.model = "resnet-9000";
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, "failed");
  EXPECT_NE(outcome.result.message.find("unknown model 'resnet-9000'; known: lenet"),
            std::string::npos)
      << outcome.result.message;
  EXPECT_TRUE(outcome.points.empty());
}

TEST(Trainer, MissingCheckpointFails) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 3);
  request.start_epoch = 2;
  request.checkpoint_path = ShapesEnvironment::CheckpointPath("_never_written");
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, "failed");
  EXPECT_EQ(outcome.result.epochs_done, 2);
  EXPECT_NE(outcome.result.message.find(request.checkpoint_path), std::string::npos)
      << outcome.result.message;
  EXPECT_TRUE(outcome.points.empty());
}

TEST(Trainer, MissingDataFailsNamingTheFolder) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 0.05, 1);
  request.data_dir = (ShapesEnvironment::Root() / "no_such_data").string();
  const Outcome outcome = Train(request);
  EXPECT_EQ(outcome.result.status, "failed");
  EXPECT_NE(outcome.result.message.find(request.data_dir), std::string::npos)
      << outcome.result.message;
}

TEST(Trainer, RejectsABadBatchSize) {
  const Outcome outcome = Train(Request(/*batch_size=*/0, Optimizer::kSgd, 0.05, 1));
  EXPECT_EQ(outcome.result.status, "failed");
  EXPECT_NE(outcome.result.message.find("batch_size"), std::string::npos);
}

TEST(Trainer, HugeLearningRateDivergesOrLearnsNothing) {
  TrainRequest request = Request(/*batch_size=*/32, Optimizer::kSgd, 1e6, 2);
  request.max_train_samples = 512;
  const Outcome outcome = Train(request);
  if (outcome.result.status == "failed") {
    EXPECT_NE(outcome.result.message.find("diverged: train loss is"), std::string::npos)
        << outcome.result.message;
    EXPECT_EQ(outcome.result.epochs_done, static_cast<int>(outcome.points.size()));
  } else {
    ASSERT_EQ(outcome.result.status, "completed") << outcome.result.message;
    ASSERT_FALSE(outcome.points.empty());
    EXPECT_LT(outcome.points.back().val_accuracy, 0.3);
  }
}

TEST(Trainer, ProbeDeviceDescribesThisMachine) {
  const DeviceProfile profile = Trainer::ProbeDevice();
  EXPECT_TRUE(profile.kind == "cpu" || profile.kind == "cuda") << profile.kind;
  EXPECT_FALSE(profile.name.empty());
  EXPECT_GT(profile.cores, 0);
  EXPECT_GT(profile.memory_bytes, 0);
}

}  // namespace
}  // namespace topotune
