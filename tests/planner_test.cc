#include "tuner/planner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace topotune {
namespace {

// A curve that rises linearly and crosses `target` = 0.8 at epoch `at` (never if at == 0),
// over `epochs` epochs of `seconds` each; the first takes `first_extra` seconds more.
std::string Curve(int batch, double lr, const char* optimizer, int seed, int at, int epochs,
                  double seconds, double first_extra = 0.0) {
  std::ostringstream out;
  for (int e = 1; e <= epochs; ++e) {
    const double accuracy = at > 0 ? std::min(0.95, 0.8 * e / at) : std::min(0.5, 0.05 * e);
    out << batch << ',' << lr << ',' << optimizer << ',' << seed << ',' << e << ',' << accuracy
        << ',' << seconds + (e == 1 ? first_extra : 0.0) << '\n';
  }
  return out.str();
}

// A table of 6,400 training samples with these curves.
CurveTable TableOf(const std::string& curves) {
  StatusOr<CurveTable> table = CurveTable::Parse(
      "# train_samples=6400\n"
      "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n" +
          curves,
      "t.csv");
  EXPECT_TRUE(table.ok()) << table.status().message();
  return *table;
}

// Batch 32 reaches 0.8 at epoch 9 or 11 (two seeds), batch 128 at 16, batch 512 at 40;
// lr 0.1 at batch 128 never does.
CurveTable Table() {
  return TableOf(Curve(32, 0.01, "sgd", 0, 9, 60, 8.0) + Curve(32, 0.01, "sgd", 1, 11, 60, 8.0) +
                 Curve(128, 0.01, "sgd", 0, 16, 60, 8.0) + Curve(128, 0.1, "sgd", 0, 0, 60, 8.0) +
                 Curve(512, 0.01, "sgd", 0, 40, 60, 8.0));
}

Target Single(const std::string& name, const std::string& device_class) {
  Target t;
  t.name = name;
  t.device_class = device_class;
  return t;
}

// Data-parallel over 4 "cloud" devices on one node (1 GB/s, 10 us between them).
Target FourCloudDevicesOnOneNode() {
  Target dp = Single("cloud-x4", "cloud");
  dp.kind = Target::Kind::kDataParallel;
  dp.devices = 4;
  dp.nodes = 1;
  dp.intra_node = {1e9, 1e-5};
  return dp;
}

PlanInput Input(const CurveTable& table) {
  PlanInput input;
  input.curves = &table;
  input.target_accuracy = 0.8;
  input.workload = {6400, 4e6};
  // The edge's step is proportional to the batch; the cloud's has overhead.
  input.profile = {{"edge", 1, 1, 32, 0.04, 0},
                   {"edge", 1, 1, 128, 0.16, 0},
                   {"cloud", 1, 1, 32, 0.002, 0},
                   {"cloud", 1, 1, 128, 0.004, 0},
                   {"cloud", 1, 1, 512, 0.012, 0}};
  return input;
}

TEST(Planner, RanksMeasuredConfigurationsPerClassAndLeavesOutThoseThatNeverReach) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {Single("edge", "edge"), Single("cloud", "cloud")};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  ASSERT_EQ(plans->size(), 2u);
  const TargetPlan& edge = (*plans)[0];
  ASSERT_EQ(edge.ranked.size(), 3u);  // lr 0.1 never reaches
  // Edge: 10 epochs x 200 steps x 0.04 s = 80 s at batch 32 beats 16 x 50 x 0.16 = 128 s.
  EXPECT_EQ(edge.ranked[0].config.batch_size, 32);
  EXPECT_NEAR(edge.ranked[0].cost.tta.value, 80.0, 1e-9);
  EXPECT_NEAR(edge.ranked[0].cost.tta.lo, 72.0, 1e-9);  // the faster seed
  EXPECT_NEAR(edge.ranked[0].cost.tta.hi, 88.0, 1e-9);
  EXPECT_EQ(edge.ranked[0].epochs_from, "measured (2 seeds)");
  // The cloud's overhead makes the larger batch faster: 16 x 50 x 0.004 = 3.2 s.
  const TargetPlan& cloud = (*plans)[1];
  EXPECT_EQ(cloud.ranked[0].config.batch_size, 128);
  EXPECT_NEAR(cloud.ranked[0].cost.tta.value, 3.2, 1e-9);
  // The edge has no 512 row: that step is predicted from the fit, and says so.
  for (const PlannedConfig& p : edge.ranked) {
    EXPECT_EQ(p.cost.step_compute.measured, p.config.batch_size != 512) << p.config.batch_size;
  }
}

// "When does moving the data to the cloud pay off?" The edge trains in 80 s; the cloud in
// 3.2 s, after moving the data over a 10 Mbit/s uplink: 50 MB (40 s) pays, 200 MB does not.
TEST(Planner, MovingTheDataToTheCloudPaysOnlyWhenTheLinkCarriesItInTime) {
  const CurveTable table = Table();
  for (double mb : {50.0, 200.0}) {
    PlanInput input = Input(table);
    Target cloud = Single("cloud", "cloud");
    cloud.data_bytes = mb * 1e6;
    cloud.data_link = {1.25e6, 0.05};
    input.targets = {Single("edge", "edge"), cloud};
    StatusOr<std::vector<TargetPlan>> plans = Plan(input);
    ASSERT_TRUE(plans.ok());
    const double edge_s = (*plans)[0].ranked[0].cost.tta.value;
    const double cloud_s = (*plans)[1].ranked[0].cost.tta.value;
    EXPECT_NEAR(cloud_s, 3.2 + 0.05 + mb * 1e6 / 1.25e6, 1e-6);
    EXPECT_EQ(cloud_s < edge_s, mb == 50.0)
        << mb << " MB: cloud " << cloud_s << " s, edge " << edge_s << " s";
  }
}

TEST(Planner, DataParallelKeepsTheGlobalBatchAndUsesMeasuredSyncWhereItHasIt) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {FourCloudDevicesOnOneNode()};
  // Measured: 4 devices on one node at local batch 32 take 3 ms per step, 1 ms of which
  // synchronises (the class alone takes 2 ms: no slowdown).
  input.profile.push_back({"cloud", 1, 4, 32, 0.003, 0.001});
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  const TargetPlan& plan = (*plans)[0];
  bool saw_measured_sync = false, saw_scaled = false;
  for (const PlannedConfig& p : plan.ranked) {
    if (p.cost.local_batch == 32 && p.config.batch_size == 128) {
      // Global 128 as recorded: its 16 epochs are measured, its sync too.
      EXPECT_EQ(p.epochs_from, "measured (1 seed)");
      EXPECT_TRUE(p.cost.step_sync.measured);
      EXPECT_NEAR(p.cost.tta.value, 16 * 50 * (0.002 + 0.001), 1e-9);
      saw_measured_sync = true;
    }
    if (p.config.batch_size == 2048) {  // 512 per device: beyond anything recorded
      EXPECT_FALSE(p.cost.epochs.measured);
      EXPECT_NE(p.epochs_from.find("batch scaling"), std::string::npos);
      EXPECT_FALSE(p.cost.step_sync.measured);
      saw_scaled = true;
    }
  }
  EXPECT_TRUE(saw_measured_sync);
  EXPECT_TRUE(saw_scaled);
  for (size_t i = 1; i < plan.ranked.size(); ++i) {
    EXPECT_LE(plan.ranked[i - 1].cost.tta.value, plan.ranked[i].cost.tta.value);
  }
}

// Four devices sharing a node each compute 1.5x slower than one alone (measured at local
// batches 32 and 512): at local batch 128, not measured there, the class's step alone is
// scaled by that slowdown; at 32 the placement's own step less its sync is the compute.
TEST(Planner, APlacementsMeasuredSlowdownScalesTheComputeAtABatchItDidNotMeasure) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {FourCloudDevicesOnOneNode()};
  input.profile.push_back({"cloud", 1, 4, 32, 0.002 * 1.5 + 0.001, 0.001});
  input.profile.push_back({"cloud", 1, 4, 512, 0.012 * 1.5 + 0.001, 0.001});
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  bool saw_measured = false, saw_scaled = false;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    if (p.cost.local_batch == 32) {
      EXPECT_TRUE(p.cost.step_compute.measured);
      EXPECT_NEAR(p.cost.step_compute.value, 0.003, 1e-12);
      EXPECT_EQ(p.step_from, "measured at this placement");
      saw_measured = true;
    }
    if (p.cost.local_batch == 128) {
      EXPECT_FALSE(p.cost.step_compute.measured);
      EXPECT_NEAR(p.cost.step_compute.value, 0.004 * 1.5, 1e-9);
      EXPECT_NE(p.step_from.find("x 1.50, the slowdown measured at 2 other batches"),
                std::string::npos)
          << p.step_from;
      saw_scaled = true;
    }
  }
  EXPECT_TRUE(saw_measured);
  EXPECT_TRUE(saw_scaled);
}

// Four devices on one node synchronise in 3 ms at local batch 32 and 1 ms at 512 (a sync
// that does not grow with the batch), and two devices in 0.1 ms. At local batch 128 the
// four's sync is their own rows' median with those rows' range as its interval, not a
// ring fitted across 2 and 4 devices.
TEST(Planner, APlacementsSyncAtAnotherBatchComesFromItsOwnRows) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {FourCloudDevicesOnOneNode()};
  input.profile.push_back({"cloud", 1, 4, 32, 0.002 + 0.003, 0.003});
  input.profile.push_back({"cloud", 1, 4, 512, 0.012 + 0.001, 0.001});
  input.profile.push_back({"cloud", 1, 2, 128, 0.004 + 0.0001, 0.0001});
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  bool saw = false;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    if (p.cost.local_batch != 128) continue;
    EXPECT_FALSE(p.cost.step_sync.measured);
    EXPECT_NEAR(p.cost.step_sync.value, 0.002, 1e-12);
    EXPECT_NEAR(p.cost.step_sync.lo, 0.001, 1e-12);
    EXPECT_NEAR(p.cost.step_sync.hi, 0.003, 1e-12);
    EXPECT_EQ(p.sync_from, "measured at 2 other batches of this placement");
    saw = true;
  }
  EXPECT_TRUE(saw);
  // A placement without rows of its own (8 devices) gets the ring fitted to the others.
  Target eight = FourCloudDevicesOnOneNode();
  eight.devices = 8;
  input.targets = {eight};
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  ASSERT_FALSE((*plans)[0].ranked.empty());
  EXPECT_NE((*plans)[0].ranked[0].sync_from.find("fitted to 3 measured placements"),
            std::string::npos)
      << (*plans)[0].ranked[0].sync_from;
}

// Devices that share a host wait in the all-reduce for peers still computing, longer at a
// larger batch: on one node, two devices synchronise in 2 ms + 10 us per sample of local
// batch at 32 and 512. Four devices, measured at 32 only (5 ms), get at local batch 128
// their own row's sync moved by 10 us per sample: 5.96 ms, the slope pooled from the two.
// With no slope to pool (the two's syncs flat), the row's sync as it was.
TEST(Planner, ASyncThatGrowsWithTheBatchIsMovedAlongItsSlope) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {FourCloudDevicesOnOneNode()};
  const size_t two = input.profile.size();  // the two devices' rows
  input.profile.push_back({"cloud", 1, 2, 32, 0.002 + 0.00232, 0.00232});
  input.profile.push_back({"cloud", 1, 2, 512, 0.012 + 0.00712, 0.00712});
  input.profile.push_back({"cloud", 1, 4, 32, 0.002 + 0.005, 0.005});
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  bool saw = false;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    if (p.cost.local_batch != 128) continue;
    EXPECT_NEAR(p.cost.step_sync.value, 0.005 + 1e-5 * (128 - 32), 1e-9);
    EXPECT_FALSE(p.cost.step_sync.measured);
    EXPECT_NE(p.sync_from.find("moved by 0.01 ms per sample of local batch"), std::string::npos)
        << p.sync_from;
    saw = true;
  }
  EXPECT_TRUE(saw);
  for (size_t i : {two, two + 1}) {
    input.profile[i].step_seconds += 0.003 - input.profile[i].sync_seconds;
    input.profile[i].sync_seconds = 0.003;
  }
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  saw = false;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    if (p.cost.local_batch != 128) continue;
    EXPECT_NEAR(p.cost.step_sync.value, 0.005, 1e-12);
    EXPECT_EQ(p.sync_from, "measured at 1 other batch of this placement");
    saw = true;
  }
  EXPECT_TRUE(saw);
}

// Synchronisation measured at 2 and 4 devices on one node, over a link slower than the
// declared one: 8 devices on that node get the ring over the fitted link (predicted, said
// so), not the declared link's.
TEST(Planner, MeasuredPlacementsFitTheLinkForOneNotMeasured) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  const Link real{2e8, 2e-5};
  const double bytes = input.workload.model_bytes;
  input.profile.push_back({"cloud", 1, 2, 16, 0.002, RingAllReduceSeconds(bytes, 2, real)});
  input.profile.push_back({"cloud", 1, 4, 32, 0.002, RingAllReduceSeconds(bytes, 4, real)});
  Target dp = Single("cloud-x8", "cloud");
  dp.kind = Target::Kind::kDataParallel;
  dp.devices = 8;
  dp.intra_node = {5e9, 1e-6};  // declared: 25x faster than what was measured
  input.targets = {dp};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  ASSERT_FALSE((*plans)[0].ranked.empty());
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    EXPECT_NEAR(p.cost.step_sync.value, RingAllReduceSeconds(bytes, 8, real),
                1e-6 * p.cost.step_sync.value);
    EXPECT_FALSE(p.cost.step_sync.measured);
    EXPECT_LE(p.cost.step_sync.lo, p.cost.step_sync.value);
    EXPECT_GE(p.cost.step_sync.hi, p.cost.step_sync.value);
    EXPECT_NE(p.sync_from.find("fitted to 2 measured placements"), std::string::npos)
        << p.sync_from;
  }
  // Measurements across nodes say nothing of a link within one: the declared link answers.
  input.profile.resize(input.profile.size() - 2);
  input.profile.push_back({"cloud", 2, 1, 16, 0.002, 0.5});
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  EXPECT_NEAR((*plans)[0].ranked.at(0).cost.step_sync.value,
              RingAllReduceSeconds(bytes, 8, dp.intra_node), 1e-12);
}

// Four devices on two nodes: over 1 Gbit/s the compute decides and the global batch with
// the fewest epochs wins; over 10 Mbit/s the synchronisation dominates every step, and the best
// moves to a larger global batch, which synchronises fewer times per epoch. The terms say so.
TEST(Planner, ASlowerLinkMovesTheBestTowardLargerBatches) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.workload.model_bytes = 1e5;
  // The edge class: a step proportional to its batch, so alone it favours the least epochs.
  Target fast = Single("dp4-1gbit", "edge");
  fast.kind = Target::Kind::kDataParallel;
  fast.devices = 4;
  fast.nodes = 2;
  fast.intra_node = {2.5e9, 1e-5};
  fast.inter_node = {1.25e8, 1e-4};
  Target slow = fast;
  slow.name = "dp4-10mbit";
  slow.inter_node = {1.25e6, 1e-4};
  input.targets = {fast, slow};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  const PlannedConfig& best_fast = (*plans)[0].ranked.at(0);
  const PlannedConfig& best_slow = (*plans)[1].ranked.at(0);
  EXPECT_GT(best_slow.config.batch_size, best_fast.config.batch_size);
  auto sync_share = [](const TtaBreakdown& c) {
    return c.step_sync.value / (c.step_sync.value + c.step_compute.value);
  };
  EXPECT_LT(sync_share(best_fast.cost), 0.5);
  EXPECT_GT(sync_share(best_slow.cost), 0.5);
  // The slow link's best pays fewer synchronisations in all than the fast link's best
  // would over the same link.
  double fast_best_syncs_on_slow = 0.0;
  for (const PlannedConfig& p : (*plans)[1].ranked) {
    if (p.config.batch_size == best_fast.config.batch_size &&
        p.config.learning_rate == best_fast.config.learning_rate) {
      fast_best_syncs_on_slow = p.cost.epochs.value * p.cost.steps_per_epoch;
    }
  }
  EXPECT_LT(best_slow.cost.epochs.value * best_slow.cost.steps_per_epoch, fast_best_syncs_on_slow);
  for (const TargetPlan& plan : *plans) {
    std::printf("%s: best global batch %d, %lld steps/epoch x %.1f epochs, sync %.4f s/step\n",
                plan.target.name.c_str(), plan.ranked[0].config.batch_size,
                plan.ranked[0].cost.steps_per_epoch, plan.ranked[0].cost.epochs.value,
                plan.ranked[0].cost.step_sync.value);
  }
}

// The edge holds the data; the cloud trains faster once the data is there. The verdict
// gives the break-even: the slowest link (or the most data) at which moving still pays.
TEST(Planner, TheDataMoveVerdictGivesTheBreakEvenLink) {
  const CurveTable table = Table();
  for (double mbit : {2.0, 200.0}) {
    PlanInput input = Input(table);
    Target cloud = Single("cloud", "cloud");
    cloud.data_bytes = 50e6;
    cloud.data_link = {mbit * 1e6 / 8, 0.05};
    input.targets = {Single("edge", "edge"), cloud};
    StatusOr<std::vector<TargetPlan>> plans = Plan(input);
    ASSERT_TRUE(plans.ok());
    const std::vector<DataMoveVerdict> verdicts = CompareDataMoves(*plans);
    ASSERT_EQ(verdicts.size(), 1u);
    const DataMoveVerdict& v = verdicts[0];
    EXPECT_EQ(v.moving, "cloud");
    EXPECT_EQ(v.staying, "edge");
    const double edge_s = (*plans)[0].ranked[0].cost.tta.value;
    const double cloud_s = (*plans)[1].ranked[0].cost.tta.value;
    EXPECT_EQ(v.pays, cloud_s < edge_s);
    EXPECT_EQ(v.pays, mbit == 200.0);
    // At the break-even bandwidth the two targets take the same time.
    Target at_break_even = cloud;
    at_break_even.data_link.bandwidth_bytes_s = v.min_bandwidth_bytes_s;
    input.targets = {Single("edge", "edge"), at_break_even};
    StatusOr<std::vector<TargetPlan>> again = Plan(input);
    ASSERT_TRUE(again.ok());
    EXPECT_NEAR((*again)[1].ranked[0].cost.tta.value, edge_s, 1e-6 * edge_s);
    EXPECT_NEAR(v.max_data_bytes, v.bandwidth_bytes_s * (v.break_even_transfer_s - 0.05), 1.0);
  }
  // Nothing to compare without a target that stays with the data.
  PlanInput input = Input(table);
  Target cloud = Single("cloud", "cloud");
  cloud.data_bytes = 50e6;
  cloud.data_link = {1e6, 0.05};
  input.targets = {cloud};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  EXPECT_TRUE(CompareDataMoves(*plans).empty());
}

// The table's least epochs follow E(B) = (B + 128) / 16 exactly (10 at 32, 16 at 128, 40 at
// 512): a what-if batch size of 64, never recorded, gets E(64) = 12 epochs, scaled from its
// nearest recorded batch (32) and marked predicted; a configuration that never reaches the
// target gets no what-if entry, and a recorded batch size adds nothing.
TEST(Planner, WhatIfBatchSizesGetTheBatchScalingModelsEpochs) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {Single("cloud", "cloud")};
  input.what_if_batches = {64, 128};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  int at_64 = 0, at_128 = 0;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    if (p.config.batch_size == 128) ++at_128;
    if (p.config.batch_size != 64) continue;
    ++at_64;
    EXPECT_EQ(p.config.learning_rate, 0.01);
    EXPECT_NEAR(p.cost.epochs.value, 12.0, 0.2);
    EXPECT_FALSE(p.cost.epochs.measured);
    EXPECT_LE(p.cost.epochs.lo, p.cost.epochs.value);
    EXPECT_GE(p.cost.epochs.hi, p.cost.epochs.value);
    EXPECT_EQ(p.epochs_from.rfind("batch scaling from 32", 0), 0u) << p.epochs_from;
    EXPECT_FALSE(p.cost.step_compute.measured);  // 64 is not in the cloud's profile
  }
  EXPECT_EQ(at_64, 1);
  EXPECT_EQ(at_128, 1);  // only the recorded lr 0.01 (lr 0.1 never reaches)
}

// Epochs to target E = 2 x 2^(t^2) x (B / B_0)^p, t = log2 of the noise temperature
// (lr / B for SGD, lr / sqrt(B) for Adam) over its optimum: SGD recorded at 32 and 128
// (p = 1/2), Adam at 16 and 256 (p = 1/4), four rates each, t = -1, 0, 1, 2 at both (2, 4
// epochs at the optimum; 32, 64 at t = 2). A what-if batch size whose equivalent rates fall
// between recorded ones is predicted by the fit over all eight configurations: exactly, with
// the optimizer's own temperature. The chord between the two nearest recorded rates at the
// nearest batch sizes would overshoot (3.7 for 3.1 epochs at SGD's 48).
TEST(Planner, WhatIfBatchSizesKeepTheNoiseTemperature) {
  auto exact = [](Optimizer o, double lr, int batch) {
    const bool sgd = o == Optimizer::kSgd;
    const double t = std::log2(lr / (sgd ? batch / 32.0 : std::sqrt(batch / 16.0)) / 0.02);
    return 2.0 * std::exp2(t * t) * (sgd ? std::sqrt(batch / 32.0) : std::pow(batch / 16.0, 0.25));
  };
  std::string text = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  for (int i = 0; i < 4; ++i) {
    const double lr = 0.01 * (1 << i);  // t = i - 1 at the smaller batch; x 4 at the larger
    auto at = [&](Optimizer o, double rate, int batch) {
      return static_cast<int>(std::lround(exact(o, rate, batch)));
    };
    text += Curve(32, lr, "sgd", 0, at(Optimizer::kSgd, lr, 32), 70, 8.0) +
            Curve(128, 4 * lr, "sgd", 0, at(Optimizer::kSgd, 4 * lr, 128), 70, 8.0) +
            Curve(16, lr, "adam", 0, at(Optimizer::kAdam, lr, 16), 70, 8.0) +
            Curve(256, 4 * lr, "adam", 0, at(Optimizer::kAdam, 4 * lr, 256), 70, 8.0);
  }
  StatusOr<CurveTable> table = CurveTable::Parse(text, "t.csv");
  ASSERT_TRUE(table.ok()) << table.status().message();
  PlanInput input = Input(*table);
  input.targets = {Single("cloud", "cloud")};
  input.what_if_batches = {48, 36};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  auto epochs_at = [&](int batch, double lr, Optimizer optimizer) {
    for (const PlannedConfig& p : (*plans)[0].ranked) {
      if (p.config.batch_size == batch && p.config.learning_rate == lr &&
          p.config.optimizer == optimizer) {
        EXPECT_FALSE(p.cost.epochs.measured);
        EXPECT_EQ(p.epochs_from.rfind("equal noise temperature", 0), 0u) << p.epochs_from;
        EXPECT_NE(p.epochs_from.find("fitted over 8 configurations"), std::string::npos)
            << p.epochs_from;
        EXPECT_LE(p.cost.epochs.lo, p.cost.epochs.value);
        EXPECT_GE(p.cost.epochs.hi, p.cost.epochs.value);
        return p.cost.epochs.value;
      }
    }
    ADD_FAILURE() << "no entry at batch " << batch << ", lr " << lr;
    return 0.0;
  };
  // SGD lr 0.02 at 48: t = log2(2/3), read at 32 (lr 0.0133) and 128 (lr 0.0533).
  EXPECT_NEAR(epochs_at(48, 0.02, Optimizer::kSgd), exact(Optimizer::kSgd, 0.02, 48), 1e-3);
  // Adam lr 0.02 at 36: lr x sqrt(16/36) = 0.0133 at 16 (the linear rule's 0.0089 is
  // below the recorded rates), 0.0533 at 256.
  EXPECT_NEAR(epochs_at(36, 0.02, Optimizer::kAdam), exact(Optimizer::kAdam, 0.02, 36), 1e-3);
}

// Data-parallel over 2 devices, with batch 64 asked as a what-if: SGD lr 0.04 at global 64
// (local 32) is both the what-if reading at 64 (the equal noise temperature, read at 32 and
// 128) and the recorded batch 32 scaled up by the batch-size model. The plan gives it once,
// from the reading; before, it listed both, and the scaled one ranked first.
TEST(Planner, ADataParallelTargetPredictsEachConfigurationOnce) {
  std::string text = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  for (int i = 0; i < 4; ++i) {
    const double lr = 0.01 * (1 << i);
    text += Curve(32, lr, "sgd", 0, 8 + 4 * i, 70, 8.0) +
            Curve(128, 4 * lr, "sgd", 0, 12 + 4 * i, 70, 8.0);
  }
  StatusOr<CurveTable> table = CurveTable::Parse(text, "t.csv");
  ASSERT_TRUE(table.ok()) << table.status().message();
  PlanInput input = Input(*table);
  Target dp = FourCloudDevicesOnOneNode();
  dp.devices = 2;
  input.targets = {dp};
  input.what_if_batches = {64};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  std::set<std::tuple<int, int, double, Optimizer>> seen;
  int read = 0;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    EXPECT_TRUE(seen.insert({p.config.batch_size, p.cost.local_batch, p.config.learning_rate,
                             p.config.optimizer})
                    .second)
        << "global " << p.config.batch_size << ", local " << p.cost.local_batch << ", lr "
        << p.config.learning_rate << " twice";
    if (p.config.batch_size == 64 && p.cost.local_batch == 32 && p.config.learning_rate == 0.04) {
      EXPECT_EQ(p.epochs_from.rfind("equal noise temperature", 0), 0u) << p.epochs_from;
      ++read;
    }
  }
  EXPECT_EQ(read, 1);
}

// The edge's probe found batch 128 does not fit: no configuration with a local batch of
// 128 or more is ranked on it (the batch-32 ones are), and the plan says what it left out.
// The cloud, without such a limit, ranks them.
TEST(Planner, ConfigurationsThatDoNotFitTheClassesMemoryAreLeftOut) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {Single("edge", "edge"), Single("cloud", "cloud")};
  input.no_fit_batch = {{"edge", 128}};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  const TargetPlan& edge = (*plans)[0];
  ASSERT_FALSE(edge.ranked.empty());
  for (const PlannedConfig& p : edge.ranked) EXPECT_LT(p.cost.local_batch, 128);
  EXPECT_NE(edge.left_out.find("2 configurations with a local batch of 128 or more"),
            std::string::npos)
      << edge.left_out;
  bool cloud_has_large = false;
  for (const PlannedConfig& p : (*plans)[1].ranked) cloud_has_large |= p.cost.local_batch >= 128;
  EXPECT_TRUE(cloud_has_large);
  EXPECT_TRUE((*plans)[1].left_out.empty());
  // Nothing fits at all: no ranking, and the note says why.
  input.no_fit_batch = {{"edge", 16}};
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  EXPECT_TRUE((*plans)[0].ranked.empty());
  EXPECT_NE((*plans)[0].note.find("does not fit edge's memory"), std::string::npos)
      << (*plans)[0].note;
}

// Where the edge's probe found that batch 128 fits with SGD's state but not with Adam's,
// Adam's configurations at 128 are left out of the edge's ranking and SGD's are not, and
// the plan says which it left out and why.
TEST(Planner, AdamConfigurationsThatOnlySgdsStateFitsAreLeftOut) {
  const CurveTable table =
      TableOf(Curve(32, 0.01, "sgd", 0, 9, 60, 8.0) + Curve(128, 0.01, "sgd", 0, 16, 60, 8.0) +
              Curve(32, 0.001, "adam", 0, 8, 60, 8.0) + Curve(128, 0.001, "adam", 0, 14, 60, 8.0));
  PlanInput input = Input(table);
  input.targets = {Single("edge", "edge")};
  input.adam_no_fit_batch = {{"edge", 128}};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  const TargetPlan& edge = (*plans)[0];
  bool sgd_at_128 = false;
  for (const PlannedConfig& p : edge.ranked) {
    if (p.config.optimizer == Optimizer::kAdam) {
      EXPECT_LT(p.cost.local_batch, 128);
    }
    sgd_at_128 |= p.config.optimizer == Optimizer::kSgd && p.cost.local_batch == 128;
  }
  EXPECT_TRUE(sgd_at_128);
  EXPECT_NE(edge.left_out.find("of Adam with a local batch of 128 or more (Adam's state)"),
            std::string::npos)
      << edge.left_out;
  // With a limit for both below it, Adam's is the smaller of the two.
  input.no_fit_batch = {{"edge", 64}};
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  for (const PlannedConfig& p : (*plans)[0].ranked) EXPECT_LT(p.cost.local_batch, 64);
  EXPECT_EQ((*plans)[0].left_out.find("Adam's state"), std::string::npos) << (*plans)[0].left_out;
}

// What a class measured stands beside the prediction on a single device of that class, for
// that configuration only; another class's target, or a data-parallel one, shows none.
TEST(Planner, MeasuredTimeToAccuracyStandsBesideThePrediction) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.measured_tta = {{"cloud", {{{128, 0.01, Optimizer::kSgd}, 7.5}}}};
  Target dp = Single("cloud-x4", "cloud");
  dp.kind = Target::Kind::kDataParallel;
  dp.devices = 4;
  dp.intra_node = {1e9, 1e-5};
  input.targets = {Single("cloud", "cloud"), Single("edge", "edge"), dp};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  int shown = 0;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    const bool measured = p.config.batch_size == 128 && p.config.learning_rate == 0.01;
    EXPECT_EQ(p.measured_tta_s.has_value(), measured);
    if (measured) {
      EXPECT_EQ(*p.measured_tta_s, 7.5);
    }
    shown += measured;
  }
  EXPECT_EQ(shown, 1);
  for (size_t t = 1; t < plans->size(); ++t) {
    for (const PlannedConfig& p : (*plans)[t].ranked) EXPECT_FALSE(p.measured_tta_s.has_value());
  }
}

// A trial stopped short of the target (25 of the epochs it would need, still rising) is
// ranked with the epochs the curve model predicts for it, marked predicted; a curve flat
// below the target (lr 0.1) stays out.
TEST(Planner, TrialsStoppedEarlyGetTheCurveModelsEpochs) {
  std::string text = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n" +
                     Curve(32, 0.01, "sgd", 0, 9, 60, 8.0) + Curve(128, 0.1, "sgd", 0, 0, 60, 8.0) +
                     // Stopped after one epoch: no trend to extrapolate, left out.
                     "16,0.05,sgd,0,1,0.1,8\n";
  // 0.95 - 0.85 / (1 + 0.1 e): crosses 0.8 at epoch 47; recorded to epoch 25.
  for (int e = 1; e <= 25; ++e) {
    text += "64,0.003,adam,0," + std::to_string(e) + "," +
            std::to_string(0.95 - 0.85 / (1 + 0.1 * e)) + ",8\n";
  }
  StatusOr<CurveTable> table = CurveTable::Parse(text, "t.csv");
  ASSERT_TRUE(table.ok()) << table.status().message();
  PlanInput input = Input(*table);
  input.targets = {Single("cloud", "cloud")};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  const std::vector<PlannedConfig>& ranked = (*plans)[0].ranked;
  ASSERT_EQ(ranked.size(), 2u);  // batch 32 (measured) and batch 64 (predicted)
  const PlannedConfig& slow = ranked[0].config.batch_size == 64 ? ranked[0] : ranked[1];
  EXPECT_EQ(slow.config.batch_size, 64);
  EXPECT_FALSE(slow.cost.epochs.measured);
  EXPECT_NE(slow.epochs_from.find("curve model from 25 epochs"), std::string::npos)
      << slow.epochs_from;
  EXPECT_GT(slow.cost.epochs.value, 25);  // not yet there
  EXPECT_NEAR(slow.cost.epochs.value, 47, 0.25 * 47) << slow.epochs_from;
  EXPECT_LE(slow.cost.epochs.lo, slow.cost.epochs.value);
  EXPECT_GE(slow.cost.epochs.hi, slow.cost.epochs.value);
}

TEST(Planner, TargetsWithoutAProfileSayWhatIsMissing) {
  const CurveTable table = Table();
  PlanInput input = Input(table);
  input.targets = {Single("jetson", "jetson-nano")};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  EXPECT_TRUE((*plans)[0].ranked.empty());
  EXPECT_NE((*plans)[0].note.find("jetson-nano"), std::string::npos);
  // The class the curves were recorded on needs no profile: 8 s epochs / steps.
  input.curves_class = "jetson-nano";
  plans = Plan(input);
  ASSERT_TRUE(plans.ok());
  ASSERT_FALSE((*plans)[0].ranked.empty());
  EXPECT_NEAR((*plans)[0].ranked[0].cost.tta.value, 10 * 8.0, 1e-9);  // batch 32: 10 epochs
  input.workload.train_samples = 0;
  EXPECT_FALSE(Plan(input).ok());
}

// From the curves' own seconds, each optimizer gets its own step time where it was recorded
// at two batch sizes or more: Adam's epochs take 12 s where SGD's take 8, at both batches,
// and at a batch neither recorded (64) each keeps its own line.
TEST(Planner, TheCurvesStepTimeIsFittedPerOptimizer) {
  const CurveTable table = TableOf(
      Curve(32, 0.01, "sgd", 0, 10, 30, 8.0) + Curve(128, 0.01, "sgd", 0, 10, 30, 8.0) +
      Curve(32, 0.001, "adam", 0, 10, 30, 12.0) + Curve(128, 0.001, "adam", 0, 10, 30, 12.0));
  PlanInput input = Input(table);
  input.curves_class = "jetson-nano";
  input.targets = {Single("jetson", "jetson-nano")};
  input.what_if_batches = {64};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  int checked = 0;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    const double epoch_s = p.config.optimizer == Optimizer::kAdam ? 12.0 : 8.0;
    const double steps = 6400.0 / p.config.batch_size;
    EXPECT_NEAR(p.cost.step_compute.value * steps, epoch_s, 1e-6 * epoch_s)
        << p.config.batch_size << " " << OptimizerName(p.config.optimizer);
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // 2 optimizers x (32, 128 and 64)
}

// Each curve's first epoch takes 10 steps' worth longer than its others (6,400 samples:
// 200 steps of 0.04 s at batch 32, 50 of 0.16 s at 128), except one curve's 40. The planner
// charges the median, 10 steps, once, at the target's step; on the recording class, whose
// step comes from the later epochs, a measured configuration's prediction is then its
// recorded seconds to the target.
TEST(Planner, AFirstEpochSlowerThanTheOthersIsChargedOnceInStepsOfTheTarget) {
  const CurveTable table = TableOf(Curve(32, 0.01, "sgd", 0, 10, 30, 8.0, 10 * 0.04) +
                                   Curve(32, 0.01, "sgd", 1, 10, 30, 8.0, 10 * 0.04) +
                                   Curve(128, 0.01, "sgd", 0, 20, 30, 8.0, 10 * 0.16) +
                                   Curve(128, 0.01, "sgd", 1, 20, 30, 8.0, 40 * 0.16));
  PlanInput input = Input(table);
  input.curves_class = "recorder";
  input.targets = {Single("edge", "edge"), Single("recorder", "recorder")};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  const TargetPlan& edge = (*plans)[0];
  ASSERT_EQ(edge.ranked.size(), 2u);
  EXPECT_EQ(edge.ranked[0].config.batch_size, 32);
  EXPECT_NEAR(edge.ranked[0].cost.warmup_steps.value, 10.0, 1e-6);
  EXPECT_NEAR(edge.ranked[0].cost.warmup_steps.hi, 40.0, 1e-6);
  // The edge's profile: 0.04 s at 32, 0.16 s at 128.
  EXPECT_NEAR(edge.ranked[0].cost.tta.value, 10 * 200 * 0.04 + 10 * 0.04, 1e-6);
  EXPECT_NEAR(edge.ranked[1].cost.tta.value, 20 * 50 * 0.16 + 10 * 0.16, 1e-6);
  const TargetPlan& recorder = (*plans)[1];
  ASSERT_EQ(recorder.ranked.size(), 2u);
  EXPECT_NEAR(recorder.ranked[0].cost.tta.value, 8.0 * 10 + 10 * 0.04, 1e-6);
  EXPECT_NEAR(recorder.ranked[0].cost.step_compute.value, 0.04, 1e-9);

  // Curves whose first epoch is no slower (or faster) charge nothing.
  const CurveTable even = TableOf(Curve(32, 0.01, "sgd", 0, 10, 30, 8.0) +
                                  Curve(128, 0.01, "sgd", 0, 20, 30, 8.0, -1.0));
  PlanInput flat = Input(even);
  flat.targets = {Single("edge", "edge")};
  plans = Plan(flat);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  EXPECT_EQ((*plans)[0].ranked[0].cost.warmup_steps.value, 0.0);
  EXPECT_NEAR((*plans)[0].ranked[0].cost.tta.value, 10 * 200 * 0.04, 1e-6);
}

// A probe times momentum SGD's step; rows that name Adam give Adam's (its update costs
// more). Adam's configurations on that class take their step from those rows alone.
TEST(Planner, RowsThatNameAnOptimizerGiveThatOptimizersStep) {
  const CurveTable table =
      TableOf(Curve(32, 0.01, "sgd", 0, 10, 30, 8.0) + Curve(32, 0.001, "adam", 0, 10, 30, 8.0) +
              Curve(128, 0.001, "adam", 0, 20, 30, 8.0));
  PlanInput input = Input(table);
  input.profile.push_back({"edge", 1, 1, 32, 0.05, 0, Optimizer::kAdam});
  input.profile.push_back({"edge", 1, 1, 128, 0.17, 0, Optimizer::kAdam});
  input.targets = {Single("edge", "edge"), Single("cloud", "cloud")};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  std::map<std::tuple<int, Optimizer>, const PlannedConfig*> edge;
  for (const PlannedConfig& p : (*plans)[0].ranked) {
    edge[{p.config.batch_size, p.config.optimizer}] = &p;
  }
  ASSERT_EQ(edge.size(), 3u);
  auto at = [&](int batch, Optimizer optimizer) { return *edge.at({batch, optimizer}); };
  // 10 epochs x 200 steps: SGD at the untagged row's 0.04 s, Adam at its own 0.05 s.
  EXPECT_NEAR(at(32, Optimizer::kSgd).cost.tta.value, 10 * 200 * 0.04, 1e-9);
  EXPECT_NEAR(at(32, Optimizer::kAdam).cost.tta.value, 10 * 200 * 0.05, 1e-9);
  EXPECT_NEAR(at(128, Optimizer::kAdam).cost.tta.value, 20 * 50 * 0.17, 1e-9);
  EXPECT_EQ(at(32, Optimizer::kAdam).step_from, "measured (profile, adam's rows)");
  EXPECT_EQ(at(32, Optimizer::kSgd).step_from, "measured (profile)");
  // The cloud has no Adam rows: both optimizers take its untagged step.
  for (const PlannedConfig& p : (*plans)[1].ranked) {
    if (p.config.batch_size == 32) {
      EXPECT_NEAR(p.cost.tta.value, 10 * 200 * 0.002, 1e-9);
    }
  }
}

TEST(Planner, ProfileCsvErrorsNameTheLine) {
  StatusOr<std::vector<PlacementMeasurement>> rows = ParseProfileCsv(
      "# measured 2026-12-03\n"
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds\n"
      "cpu-2c,1,1,32,0.05,0\n"
      "cpu-2c,2,1,32,0.05,0.01\n",
      "p.csv");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].nodes, 2);
  EXPECT_DOUBLE_EQ((*rows)[1].sync_seconds, 0.01);
  for (const char* bad : {"cpu,1,1,32,0.05\n", "cpu,1,1,32,fast,0\n", "cpu,1,1,0,0.05,0\n",
                          "cpu,1,1,32,-1,0\n", "cpu,1,1,32,0.05,nan\n", "cpu,1x,1,32,0.05,0\n"}) {
    rows = ParseProfileCsv(
        std::string("device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds\n") +
            bad,
        "p.csv");
    ASSERT_FALSE(rows.ok()) << bad;
    EXPECT_NE(rows.status().message().find("p.csv:2"), std::string::npos)
        << rows.status().message();
  }
  EXPECT_FALSE(ParseProfileCsv("a,b\n", "p.csv").ok());
  // The optional optimizer column: a name, or empty for any optimizer.
  const std::string with_optimizer =
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds,optimizer\n";
  rows =
      ParseProfileCsv(with_optimizer + "edge,1,1,32,0.05,0,adam\nedge,1,1,32,0.04,0,\n", "p.csv");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].optimizer, Optimizer::kAdam);
  EXPECT_FALSE((*rows)[1].optimizer.has_value());
  for (const char* bad : {"edge,1,1,32,0.05,0,lamb\n", "edge,1,1,32,0.05,0\n"}) {
    rows = ParseProfileCsv(with_optimizer + bad, "p.csv");
    ASSERT_FALSE(rows.ok()) << bad;
    EXPECT_NE(rows.status().message().find("p.csv:2"), std::string::npos)
        << rows.status().message();
  }
}

// A row's step includes its synchronisation: a longer sync (a fuzzer's profile, 4 s of sync
// in a 1 s step) gave the compute at the placement's other batches a negative slowdown, and
// epochs of negative seconds at the low end of their interval.
TEST(Planner, ProfileCsvRejectsASyncLongerThanItsStep) {
  const std::string header =
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds\n";
  StatusOr<std::vector<PlacementMeasurement>> rows =
      ParseProfileCsv(header + "cloud,1,2,32,1,1\ncloud,1,2,64,1,4\n", "p.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("p.csv:3: sync_seconds (4) is more than step_seconds (1)"),
            std::string::npos)
      << rows.status().message();
  // All of the step: allowed.
  EXPECT_TRUE(ParseProfileCsv(header + "cloud,1,2,32,1,1\n", "p.csv").ok());
}

// Each value is held to a range that the planner computes with, and the error names the
// field: 100000 x 100000 devices overflowed an int, and steps of 1e200 or 1e-200 s made the
// step-time fit's weights (1 / step^2) overflow and predicted NaN seconds.
TEST(Planner, ProfileCsvRejectsValuesOutOfRangeNamingTheField) {
  const std::string header =
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds\n";
  for (const auto& [row, error] : std::vector<std::pair<std::string, std::string>>{
           {"cloud,100000,100000,16,0.004,0.001",
            "p.csv:2: nodes x devices_per_node must be at most 1048576, got 100000 x 100000"},
           {"cloud,1,1,2000000,0.004,0",
            "p.csv:2: local_batch must be at most 1048576, got 2000000"},
           {"cloud,1,1,16,1e200,0", "p.csv:2: step_seconds must be in [1e-09, 1e+06], got 1e+200"},
           {"cloud,1,1,16,1e-200,0",
            "p.csv:2: step_seconds must be in [1e-09, 1e+06], got 1e-200"}}) {
    StatusOr<std::vector<PlacementMeasurement>> rows =
        ParseProfileCsv(header + row + "\n", "p.csv");
    ASSERT_FALSE(rows.ok()) << row;
    EXPECT_EQ(rows.status().message(), error);
  }
  EXPECT_TRUE(
      ParseProfileCsv(header + "cloud,1024,1024,1048576,1e-9,0\ncloud,1,1,1,1e6,1e6\n", "p.csv")
          .ok());
}

// A data-parallel target's global batch is its local batch times its devices: 2^20 on 4,096
// devices is 2^32, which overflowed an int (to 0: a division by zero in the steps per epoch).
// That configuration is left out, and the plan's left_out says so; the rest still rank.
TEST(Planner, AGlobalBatchBeyondAnIntIsLeftOut) {
  const CurveTable table = TableOf(Curve(1 << 20, 0.01, "sgd", 0, 3, 4, 8.0));
  PlanInput input = Input(table);
  input.workload.train_samples = int64_t{1} << 30;
  input.profile.push_back({"cloud", 1, 1, 256, 0.001, 0});
  Target dp = FourCloudDevicesOnOneNode();
  dp.devices = 4096;
  input.targets = {dp};
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  ASSERT_TRUE(plans.ok()) << plans.status().message();
  // 2^20 split over the devices, 256 each, ranks; 2^20 on each device (2^32 in all) does not.
  ASSERT_EQ((*plans)[0].ranked.size(), 1u) << (*plans)[0].note;
  EXPECT_EQ((*plans)[0].ranked[0].cost.local_batch, 256);
  EXPECT_EQ((*plans)[0].ranked[0].cost.global_batch, 1 << 20);
  EXPECT_EQ((*plans)[0].left_out,
            "1 configuration whose global batch on the target's devices is above 2147483647");

  // PredictTta itself refuses it, naming the target.
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{256, 0.001}});
  ASSERT_TRUE(step.ok());
  StatusOr<TtaBreakdown> cost =
      PredictTta(dp, input.workload, 1 << 20, Estimate::Measured(3), *step);
  ASSERT_FALSE(cost.ok());
  EXPECT_EQ(cost.status().message(),
            "target cloud-x4: a global batch of 1048576 x 4096 devices is above 2147483647");
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

CurvePoint TimedPoint(int64_t trial, int epoch, double accuracy, double seconds, double scale) {
  CurvePoint p;
  p.trial_id = trial;
  p.epoch = epoch;
  p.val_accuracy = accuracy;
  p.compute_s = seconds;
  p.reference_s = seconds * scale;
  return p;
}

// Trial 1 trained on the edge throughout; trial 2 on the cloud throughout (its seconds
// counted x4 on the edge); trial 3 began on the cloud and was promoted onto the edge: it
// measures neither class. Each reaches 0.9 at its second epoch.
TEST(Planner, ATrialThatRanOnTwoClassesMeasuresNeither) {
  std::vector<TrialRecord> trials(3);
  for (int i = 0; i < 3; ++i) {
    trials[i].id = i + 1;
    trials[i].config = {16 << i, 0.01, Optimizer::kSgd};
  }
  trials[0].worker = "edge-1";
  trials[1].worker = "cloud-1";
  trials[2].worker = "edge-1";
  const std::vector<CurvePoint> points = {
      TimedPoint(1, 1, 0.5, 2.0, 1.0), TimedPoint(1, 2, 0.9, 2.0, 1.0),
      TimedPoint(2, 1, 0.5, 0.5, 4.0), TimedPoint(2, 2, 0.9, 0.5, 4.0),
      TimedPoint(3, 1, 0.5, 0.5, 4.0), TimedPoint(3, 2, 0.9, 2.0, 1.0)};
  const auto measured =
      MeasuredTtaByClass(trials, points, {{"edge-1", "edge"}, {"cloud-1", "cloud"}}, 0.9);
  ASSERT_EQ(measured.count("edge"), 1u);
  ASSERT_EQ(measured.at("edge").size(), 1u);
  EXPECT_DOUBLE_EQ(measured.at("edge").at({16, 0.01, Optimizer::kSgd}), 4.0);
  ASSERT_EQ(measured.count("cloud"), 1u);
  EXPECT_DOUBLE_EQ(measured.at("cloud").at({32, 0.01, Optimizer::kSgd}), 1.0);
}

}  // namespace
}  // namespace topotune
