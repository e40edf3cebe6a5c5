#include "workers/replay_table.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace topotune {
namespace {

const char kTable[] =
    "# model=lenet\n"
    "# device=cpu:test\n"
    "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n"
    "32,0.01,sgd,0,1,0.5,2.0\n"
    "32,0.01,sgd,0,2,0.7,2.0\n"
    "32,0.01,sgd,0,3,0.9,2.0\n"
    "32,0.01,sgd,1,1,0.4,2.5\n"
    "32,0.01,sgd,1,2,0.6,2.5\n"
    "32,0.01,sgd,1,3,0.8,2.5\n"
    "128,0.1,sgd,0,1,0.3,1.0\n"
    "128,1,sgd,0,1,0.1,1.0\n"  // diverged after one epoch
    "32,0.001,adam,0,1,0.6,3.0\n"
    "32,0.001,adam,0,2,0.95,3.0\n";

ReplayTable Table() {
  StatusOr<ReplayTable> table = ReplayTable::Parse(kTable, "t.csv");
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return *table;
}

TEST(ReplayTable, ParsesRunsCurvesAndMetadata) {
  ReplayTable table = Table();
  EXPECT_EQ(table.runs().size(), 4u);
  EXPECT_EQ(table.meta().at("model"), "lenet");
  EXPECT_EQ(table.BatchSizes(), (std::vector<int>{32, 128}));
}

TEST(ReplayTable, SnapsToTheNearestRecordedConfigInLogSpace) {
  ReplayTable table = Table();
  const auto& a = table.Nearest({64, 0.02, Optimizer::kSgd});  // log2 distance 1 vs 1
  EXPECT_EQ(a.config.batch_size, 32);                          // lr 0.02 is nearer 0.01
  const auto& b = table.Nearest({256, 0.5, Optimizer::kSgd});
  EXPECT_EQ(b.config.batch_size, 128);
  EXPECT_DOUBLE_EQ(b.config.learning_rate, 1.0);
  const auto& c = table.Nearest({512, 1.0, Optimizer::kAdam});  // the optimizer wins
  EXPECT_EQ(c.config.optimizer, Optimizer::kAdam);
}

TEST(ReplayTable, ReplaysASegmentStoppingAtTheTargetWithRecordedTimes) {
  ReplayTable table = Table();
  TrainRequest request;
  request.config = {32, 0.01, Optimizer::kSgd};
  request.seed = 1;  // the second recorded seed
  request.start_epoch = 1;
  request.end_epoch = 3;
  request.target_accuracy = 0.6;
  std::vector<CurvePoint> points;
  std::atomic<bool> stop{false};
  TrainResult r = ReplaySegment(
      table, request, /*speedup=*/0, [&](const CurvePoint& p) { points.push_back(p); }, stop);
  EXPECT_EQ(r.status, SegmentStatus::kCompleted);
  EXPECT_TRUE(r.reached_target);
  ASSERT_EQ(points.size(), 1u);  // epoch 2 reaches 0.6
  EXPECT_EQ(points[0].epoch, 2);
  EXPECT_DOUBLE_EQ(points[0].compute_s, 2.5);
  EXPECT_DOUBLE_EQ(points[0].val_accuracy, 0.6);
}

TEST(ReplayTable, ASegmentEndsAtTheEpochThatUsesUpItsSeconds) {
  ReplayTable table = Table();
  TrainRequest request;
  request.config = {32, 0.01, Optimizer::kSgd};
  request.seed = 0;  // 2.0 s epochs
  request.end_epoch = 3;
  request.target_accuracy = 0.99;
  request.train_s_before = 1.0;  // as if an earlier segment had trained 1 s
  request.max_train_s = 4.5;     // 1 + 2 < 4.5 <= 1 + 2 + 2
  std::vector<CurvePoint> points;
  std::atomic<bool> stop{false};
  TrainResult r = ReplaySegment(
      table, request, 0, [&](const CurvePoint& p) { points.push_back(p); }, stop);
  EXPECT_EQ(r.status, SegmentStatus::kCompleted);
  EXPECT_FALSE(r.reached_target);
  EXPECT_EQ(r.epochs_done, 2);
  EXPECT_EQ(points.size(), 2u);
}

TEST(ReplayTable, ACurveThatEndsEarlyIsADivergedRun) {
  ReplayTable table = Table();
  TrainRequest request;
  request.config = {128, 1.0, Optimizer::kSgd};
  request.end_epoch = 3;
  std::atomic<bool> stop{false};
  int epochs = 0;
  TrainResult r = ReplaySegment(
      table, request, 0, [&](const CurvePoint&) { ++epochs; }, stop);
  EXPECT_EQ(r.status, SegmentStatus::kFailed);
  EXPECT_NE(r.message.find("diverged"), std::string::npos);
  EXPECT_EQ(epochs, 1);
}

TEST(ReplayTable, RejectsMalformedTablesNamingTheLine) {
  EXPECT_NE(ReplayTable::Parse("a,b\n1,2\n", "x.csv").status().message().find("x.csv:1"),
            std::string::npos);
  const std::string gap =
      "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n32,0.1,sgd,0,2,0.5,1\n";
  EXPECT_NE(ReplayTable::Parse(gap, "g.csv").status().message().find("g.csv:2"), std::string::npos);
  const std::string bad_opt =
      "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n32,0.1,rmsprop,0,1,0.5,1\n";
  EXPECT_FALSE(ReplayTable::Parse(bad_opt, "o.csv").ok());
}

// Each value a planner computes with is held to a range, and the error names the field: an
// infinite learning rate went into the offline planner's answer, and a batch size of 6e8
// overflowed the int global batch of 4 data-parallel devices (planner_input_fuzzer's harness).
TEST(ReplayTable, RejectsValuesOutOfRangeNamingTheField) {
  const std::string header = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  for (const auto& [row, error] : std::vector<std::pair<std::string, std::string>>{
           {"600000000,0.1,sgd,0,1,0.5,1",
            "t.csv:2: batch_size must be in [1, 1048576], got 600000000"},
           {"0,0.1,sgd,0,1,0.5,1", "t.csv:2: batch_size must be in [1, 1048576], got 0"},
           {"32,inf,sgd,0,1,0.5,1", "t.csv:2: lr must be a finite number > 0, got inf"},
           {"32,0,sgd,0,1,0.5,1", "t.csv:2: lr must be a finite number > 0, got 0"},
           {"32,0.1,sgd,0,1,1.5,1", "t.csv:2: val_accuracy must be in [0, 1], got 1.5"},
           {"32,0.1,sgd,0,1,0.5,inf",
            "t.csv:2: epoch_seconds must be a finite number >= 0, got inf"},
           {"32,0.1,sgd,0,1,0.5,-1",
            "t.csv:2: epoch_seconds must be a finite number >= 0, got -1"}}) {
    StatusOr<ReplayTable> table = ReplayTable::Parse(header + row + "\n", "t.csv");
    ASSERT_FALSE(table.ok()) << row;
    EXPECT_EQ(table.status().message(), error);
  }
  EXPECT_TRUE(ReplayTable::Parse(header + "1048576,100,adam,0,1,1,0\n", "t.csv").ok());
}

}  // namespace
}  // namespace topotune
