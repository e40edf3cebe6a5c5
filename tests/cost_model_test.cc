#include "tuner/cost_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tuner/device_classes.h"

namespace topotune {
namespace {

Target MakeTarget(const std::string& name, Target::Kind kind, const std::string& device_class) {
  Target t;
  t.name = name;
  t.kind = kind;
  t.device_class = device_class;
  return t;
}

TEST(CostModel, StepTimeFitsOverheadPlusPerSampleAndKeepsMeasurements) {
  // 2 ms of overhead plus 0.5 ms per sample, measured at 16, 64 and 256.
  StatusOr<StepTimeModel> model =
      StepTimeModel::Fit({{16, 0.010}, {64, 0.034}, {256, 0.130}, {64, 0.036}, {64, 0.034}});
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_NEAR(model->alpha(), 0.002, 1e-9);
  EXPECT_NEAR(model->beta(), 0.0005, 1e-9);
  const Estimate measured = model->At(64);  // the median of the three repeats
  EXPECT_TRUE(measured.measured);
  EXPECT_DOUBLE_EQ(measured.value, 0.034);
  const Estimate predicted = model->At(128);
  EXPECT_FALSE(predicted.measured);
  EXPECT_NEAR(predicted.value, 0.066, 1e-9);
  EXPECT_LT(predicted.lo, predicted.value);
  EXPECT_GT(predicted.hi, predicted.value);
}

TEST(CostModel, StepTimeWithOneBatchIsProportionalAndNoiseNeverGoesNegative) {
  StatusOr<StepTimeModel> one = StepTimeModel::Fit({{32, 0.064}});
  ASSERT_TRUE(one.ok());
  EXPECT_NEAR(one->At(128).value, 0.256, 1e-12);
  // Faster at the larger batch (noise): never a negative time.
  StatusOr<StepTimeModel> noisy = StepTimeModel::Fit({{16, 0.050}, {32, 0.040}});
  ASSERT_TRUE(noisy.ok());
  EXPECT_GT(noisy->At(1024).value, 0.0);
  EXPECT_GT(noisy->At(1).value, 0.0);
  EXPECT_FALSE(StepTimeModel::Fit({}).ok());
  EXPECT_FALSE(StepTimeModel::Fit({{0, 0.1}}).ok());
  EXPECT_FALSE(StepTimeModel::Fit({{8, -1.0}}).ok());
  EXPECT_FALSE(StepTimeModel::Fit({{8, std::nan("")}}).ok());
}

// Steps many orders of magnitude apart (a table's epochs of 3 s and 1e60 s, from
// planner_input_fuzzer): the normal equations' determinant cancelled to 0 and the fit was
// NaN. A fit stays finite and positive, or says why there is none.
TEST(CostModel, StepTimeFitsStepsOrdersOfMagnitudeApart) {
  StatusOr<StepTimeModel> wide = StepTimeModel::Fit({{1, 1.5}, {4, 1e60}});
  ASSERT_TRUE(wide.ok()) << wide.status().message();
  EXPECT_TRUE(std::isfinite(wide->alpha()) && std::isfinite(wide->beta()));
  for (int batch : {2, 3, 8}) {
    const Estimate e = wide->At(batch);
    EXPECT_TRUE(std::isfinite(e.value) && e.value > 0 && e.lo <= e.value && e.value <= e.hi)
        << batch << ": " << e.value;
  }
  // The same shape as the normal equations give where they do not cancel.
  StatusOr<StepTimeModel> scaled = StepTimeModel::Fit({{16, 0.010e-9}, {64, 0.034e-9}});
  ASSERT_TRUE(scaled.ok());
  EXPECT_NEAR(scaled->alpha(), 0.002e-9, 1e-20);
  EXPECT_NEAR(scaled->beta(), 0.0005e-9, 1e-21);
  const StatusOr<StepTimeModel> apart = StepTimeModel::Fit({{1, 1e-300}, {2, 1e300}});
  ASSERT_FALSE(apart.ok());
  EXPECT_NE(apart.status().message().find("too far apart"), std::string::npos);
  // Columns whose norms overflow while each entry is finite: once a fit of alpha = beta = 0,
  // a step of no time at every batch.
  const StatusOr<StepTimeModel> overflowing =
      StepTimeModel::Fit({{1, 5.9e-299}, {2, 1.2e-298}, {3, 1e10}});
  ASSERT_FALSE(overflowing.ok());
  EXPECT_NE(overflowing.status().message().find("too far apart"), std::string::npos);
}

// A product of extreme inputs that overflows is an error, not an infinite answer.
TEST(CostModel, AnOverflowingTimeToAccuracyIsAnError) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{16, 1e306}});  // x 20 epochs x 3,125 steps
  ASSERT_TRUE(step.ok());
  StatusOr<TtaBreakdown> cost = PredictTta(MakeTarget("slow", Target::Kind::kSingle, "gpu"),
                                           {50000, 1e6}, 16, Estimate::Measured(20), *step);
  ASSERT_FALSE(cost.ok());
  EXPECT_NE(cost.status().message().find("target slow: the epoch term is not a finite number"),
            std::string::npos)
      << cost.status().message();
}

TEST(CostModel, RingAllReduceAndTransfer) {
  const Link link{1e9, 1e-3};  // 1 GB/s, 1 ms
  // 2 (N-1)/N x bytes / bandwidth + 2 (N-1) x latency.
  EXPECT_NEAR(RingAllReduceSeconds(100e6, 4, link), 0.15 + 0.006, 1e-12);
  EXPECT_EQ(RingAllReduceSeconds(100e6, 1, link), 0.0);
  EXPECT_NEAR(TransferSeconds(2e9, link), 2.001, 1e-12);
  EXPECT_EQ(TransferSeconds(0, link), 0.0);
}

// Synchronisations measured on rings of 2, 4 and 8 devices over one link give it back;
// with one ring size the declared latency stays and the bandwidth is solved.
TEST(CostModel, FitRingLinkRecoversTheLinkFromMeasuredPlacements) {
  const Link truth{1e8, 1e-4};
  const double bytes = 4e6;
  std::vector<SyncSample> samples;
  for (int n : {2, 4, 8}) samples.push_back({n, RingAllReduceSeconds(bytes, n, truth)});
  double error = 1.0;
  StatusOr<Link> fit = FitRingLink(bytes, samples, {1e9, 5e-3}, &error);
  ASSERT_TRUE(fit.ok()) << fit.status().message();
  EXPECT_NEAR(fit->bandwidth_bytes_s, 1e8, 1e2);
  EXPECT_NEAR(fit->latency_s, 1e-4, 1e-9);
  EXPECT_LT(error, 1e-9);

  fit = FitRingLink(bytes, {samples[1]}, {1e9, 1e-4}, &error);
  ASSERT_TRUE(fit.ok());
  EXPECT_NEAR(fit->bandwidth_bytes_s, 1e8, 1e2);
  EXPECT_DOUBLE_EQ(fit->latency_s, 1e-4);

  // Syncs that grow with the ring's hops, not its bytes (CPU-limited devices on loopback:
  // 2.3, 9.3 and 13.4 ms at 2, 3 and 4 devices measured for a 248 KB model): the two-term
  // fit's bandwidth is negative, so the declared bandwidth stays and the per-hop latency is
  // solved, which fits them better than a bandwidth over the declared latency.
  const std::vector<SyncSample> per_hop = {{2, 2.3e-3}, {3, 9.3e-3}, {4, 13.4e-3}};
  fit = FitRingLink(248e3, per_hop, {2.5e9, 5e-5}, &error);
  ASSERT_TRUE(fit.ok()) << fit.status().message();
  EXPECT_DOUBLE_EQ(fit->bandwidth_bytes_s, 2.5e9);
  EXPECT_GT(fit->latency_s, 1.5e-3);
  EXPECT_LT(fit->latency_s, 2.5e-3);
  EXPECT_NEAR(RingAllReduceSeconds(248e3, 4, *fit), 13.4e-3, 0.15 * 13.4e-3);

  // Nothing to fit: one device, no bytes, or less time than the declared latency alone.
  EXPECT_FALSE(FitRingLink(bytes, {{1, 0.5}}, {1e9, 1e-4}).ok());
  EXPECT_FALSE(FitRingLink(0, samples, {1e9, 1e-4}).ok());
  EXPECT_FALSE(FitRingLink(bytes, {{4, 1e-4}}, {1e9, 1e-3}).ok());
}

TEST(CostModel, BatchScalingRecoversTheNoiseScale) {
  // Epochs to target E(B) = (S_min / n)(B + B_noise) with B_noise = 512, measured at three
  // batch sizes, plus a worse learning rate at 64 that the fit must ignore.
  auto epochs = [](int b) { return 0.01 * (b + 512); };
  StatusOr<BatchScaling> scaling = BatchScaling::Fit(
      {{16, epochs(16)}, {64, epochs(64)}, {64, 3 * epochs(64)}, {256, epochs(256)}});
  ASSERT_TRUE(scaling.ok()) << scaling.status().message();
  EXPECT_NEAR(scaling->noise_batch(), 512, 1e-6);
  const Estimate r = scaling->Ratio(64, 1024);
  EXPECT_NEAR(r.value, epochs(1024) / epochs(64), 1e-9);
  EXPECT_FALSE(r.measured);
  EXPECT_TRUE(scaling->Ratio(64, 64).measured);
  // Far above B_noise epochs grow nearly linearly with the batch (steps stop shrinking).
  EXPECT_NEAR(scaling->Ratio(8192, 16384).value, (16384 + 512.0) / (8192 + 512.0), 1e-9);
  EXPECT_FALSE(BatchScaling::Fit({{64, 3.0}, {64, 2.0}}).ok());
  EXPECT_FALSE(BatchScaling::Fit({{64, 3.0}, {128, 0.0}}).ok());
}

// Epochs log-quadratic in the noise temperature with an optimum, times B^(1/2): recorded at
// two batch sizes, the fit recovers them at a third, with the optimizer's own temperature
// (lr / B for SGD, lr / sqrt(B) for Adam); the other optimizer's rule does not fit.
TEST(CostModel, TemperatureScalingRecoversALogQuadraticSurface) {
  auto epochs = [](Optimizer o, double lr, int b) {
    const double t = std::log2(lr / (o == Optimizer::kSgd ? b : std::sqrt(b)) / 1e-3);
    return 3.0 * std::exp2(0.5 * t * t) * std::sqrt(b / 32.0);
  };
  for (Optimizer o : {Optimizer::kSgd, Optimizer::kAdam}) {
    std::vector<TemperatureScaling::Sample> samples;
    for (int b : {32, 128}) {
      for (double lr : {0.01, 0.03, 0.1, 0.3}) samples.push_back({b, lr, epochs(o, lr, b), 2});
    }
    StatusOr<TemperatureScaling> fit = TemperatureScaling::Fit(o, samples);
    ASSERT_TRUE(fit.ok()) << fit.status().message();
    EXPECT_NEAR(fit->EpochsAt(0.05, 64) / epochs(o, 0.05, 64), 1.0, 1e-4);
    const Optimizer other = o == Optimizer::kSgd ? Optimizer::kAdam : Optimizer::kSgd;
    StatusOr<TemperatureScaling> wrong = TemperatureScaling::Fit(other, samples);
    ASSERT_TRUE(wrong.ok());
    EXPECT_GT(std::abs(wrong->EpochsAt(0.05, 64) / epochs(o, 0.05, 64) - 1.0), 0.01);
  }
}

// One learning rate at every batch size: the temperature and the batch are collinear, and the
// fit still answers, through the recorded points.
TEST(CostModel, TemperatureScalingWithOneRatePerBatchAndTooFewPoints) {
  std::vector<TemperatureScaling::Sample> samples;
  for (int b : {16, 32, 64, 128, 256}) samples.push_back({b, 0.001, 4.0 * std::sqrt(b / 16.0), 3});
  StatusOr<TemperatureScaling> fit = TemperatureScaling::Fit(Optimizer::kAdam, samples);
  ASSERT_TRUE(fit.ok()) << fit.status().message();
  EXPECT_NEAR(fit->EpochsAt(0.001, 64), 8.0, 0.01);
  samples.pop_back();
  EXPECT_FALSE(TemperatureScaling::Fit(Optimizer::kAdam, samples).ok());
  samples.push_back({256, 0.001, 0.0, 3});
  EXPECT_FALSE(TemperatureScaling::Fit(Optimizer::kAdam, samples).ok());
}

TEST(CostModel, BatchScalingWithoutAFitSpansBothExtremes) {
  const Estimate r = BatchScaling::UnfittedRatio(32, 128);
  EXPECT_DOUBLE_EQ(r.lo, 1.0);  // epochs independent of the batch
  EXPECT_DOUBLE_EQ(r.hi, 4.0);  // steps independent of it
  EXPECT_DOUBLE_EQ(r.value, 2.0);
  const Estimate down = BatchScaling::UnfittedRatio(128, 32);
  EXPECT_DOUBLE_EQ(down.lo, 0.25);
  EXPECT_DOUBLE_EQ(down.hi, 1.0);
}

// One configuration, three targets: a single device, 4 data-parallel devices of the same
// class across a slow link, and the same 4 on a fast one. The terms add up by hand.
TEST(CostModel, DataParallelTtaAddsComputeAndRingSynchronisation) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{32, 0.050}, {128, 0.170}});
  ASSERT_TRUE(step.ok());
  const Workload workload{50000, 100e6};
  const Estimate epochs = Estimate::Predicted(20, 16, 26);

  Target single = MakeTarget("one", Target::Kind::kSingle, "gpu");
  StatusOr<TtaBreakdown> one = PredictTta(single, workload, 128, epochs, *step);
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->steps_per_epoch, 391);  // ceil(50000 / 128)
  EXPECT_NEAR(one->tta.value, 20 * 391 * 0.170, 1e-9);
  EXPECT_NEAR(one->tta.lo, 16 * 391 * 0.170, 1e-9);  // the step was measured
  EXPECT_NEAR(one->tta.hi, 26 * 391 * 0.170, 1e-9);

  Target dp = single;
  dp.kind = Target::Kind::kDataParallel;
  dp.devices = 4;
  dp.nodes = 4;
  dp.inter_node = {125e6, 0.5e-3};  // 1 Gbit/s
  StatusOr<TtaBreakdown> slow = PredictTta(dp, workload, 32, epochs, *step);
  ASSERT_TRUE(slow.ok()) << slow.status().message();
  EXPECT_EQ(slow->global_batch, 128);
  EXPECT_EQ(slow->steps_per_epoch, 391);
  const double sync = 1.5 * 100e6 / 125e6 + 6 * 0.5e-3;
  EXPECT_NEAR(slow->step_sync.value, sync, 1e-12);
  EXPECT_NEAR(slow->tta.value, 20 * 391 * (0.050 + sync), 1e-6);
  // A 100 MB model over 1 Gbit/s: synchronising costs more than the 4x smaller steps save.
  EXPECT_GT(slow->tta.value, one->tta.value);

  dp.inter_node = {12.5e9, 5e-6};  // 100 Gbit/s
  dp.overlap = 1.0;                // hidden behind compute entirely
  StatusOr<TtaBreakdown> fast = PredictTta(dp, workload, 32, epochs, *step);
  ASSERT_TRUE(fast.ok());
  EXPECT_NEAR(fast->tta.value, 20 * 391 * 0.050, 1e-6);
  EXPECT_LT(fast->tta.value, one->tta.value);
}

TEST(CostModel, FederatedCountsRoundsOfLocalEpochsAndTwoHopsOfTheModel) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{16, 0.020}, {64, 0.050}});
  ASSERT_TRUE(step.ok());
  const Workload workload{60000, 10e6};
  Target fed = MakeTarget("fed", Target::Kind::kFederated, "jetson");
  fed.clients_per_edge = 5;
  fed.edges = 2;
  fed.local_epochs = 2;
  fed.client_edge = {1.25e6, 0.01};  // 10 Mbit/s
  fed.edge_cloud = {12.5e6, 0.02};   // 100 Mbit/s
  fed.data_bytes = 0;
  StatusOr<TtaBreakdown> t = PredictTta(fed, workload, 16, Estimate::Predicted(9, 7, 12), *step);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->steps_per_epoch, 375);  // a shard of 6000 at batch 16
  EXPECT_EQ(t->rounds.value, 5);       // ceil(9 / 2)
  EXPECT_EQ(t->rounds.lo, 4);
  EXPECT_EQ(t->rounds.hi, 6);
  const double comm = 2 * (0.01 + 10e6 / 1.25e6) + 2 * (0.02 + 10e6 / 12.5e6);
  EXPECT_NEAR(t->round.value, 2 * 375 * 0.020 + comm, 1e-9);
  EXPECT_NEAR(t->tta.value, 5 * (2 * 375 * 0.020 + comm), 1e-9);
  EXPECT_FALSE(t->tta.measured);
}

TEST(CostModel, MovingTheDataIsAOneTimeTerm) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{64, 0.1}});
  ASSERT_TRUE(step.ok());
  Target cloud = MakeTarget("cloud", Target::Kind::kSingle, "a100");
  cloud.data_bytes = 2e9;
  cloud.data_link = {1.25e6, 0.05};  // the edge's 10 Mbit/s uplink
  StatusOr<TtaBreakdown> t = PredictTta(cloud, {6400, 1e6}, 64, Estimate::Measured(10), *step);
  ASSERT_TRUE(t.ok());
  EXPECT_NEAR(t->transfer.value, 0.05 + 1600, 1e-9);
  EXPECT_NEAR(t->tta.value, 10 * 100 * 0.1 + 1600.05, 1e-9);
  EXPECT_FALSE(t->transfer.measured);  // over a declared link
  cloud.data_link_measured = "measured through the controller";
  t = PredictTta(cloud, {6400, 1e6}, 64, Estimate::Measured(10), *step);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->transfer.measured);
  EXPECT_NEAR(t->transfer.value, 0.05 + 1600, 1e-9);
}

// A trial's start-up is charged once, in steps of the target's own compute step: not per
// epoch, not per federated round, and not per data-parallel device.
TEST(CostModel, TheWarmUpIsChargedOnceInComputeSteps) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{16, 0.020}, {64, 0.050}});
  ASSERT_TRUE(step.ok());
  const Workload workload{6400, 1e6};
  const Estimate warmup = Estimate::Predicted(8, 5, 11);
  Target one = MakeTarget("one", Target::Kind::kSingle, "jetson");
  StatusOr<TtaBreakdown> cold = PredictTta(one, workload, 64, Estimate::Measured(10), *step,
                                           std::nullopt, std::nullopt, warmup);
  StatusOr<TtaBreakdown> warm = PredictTta(one, workload, 64, Estimate::Measured(10), *step);
  ASSERT_TRUE(cold.ok() && warm.ok());
  EXPECT_NEAR(warm->tta.value, 10 * 100 * 0.050, 1e-9);
  EXPECT_NEAR(cold->warmup.value, 8 * 0.050, 1e-12);
  EXPECT_NEAR(cold->tta.value, warm->tta.value + 8 * 0.050, 1e-9);
  EXPECT_NEAR(cold->tta.lo, warm->tta.lo + 5 * 0.050, 1e-9);
  EXPECT_NEAR(cold->tta.hi, warm->tta.hi + 11 * 0.050, 1e-9);
  EXPECT_FALSE(cold->warmup.measured);

  Target fed = MakeTarget("fed", Target::Kind::kFederated, "jetson");
  fed.clients_per_edge = 2;
  fed.edges = 2;
  fed.local_epochs = 1;
  fed.client_edge = {1.25e6, 0.01};
  fed.edge_cloud = {12.5e6, 0.02};
  cold = PredictTta(fed, workload, 16, Estimate::Measured(6), *step, std::nullopt, std::nullopt,
                    warmup);
  warm = PredictTta(fed, workload, 16, Estimate::Measured(6), *step);
  ASSERT_TRUE(cold.ok() && warm.ok());
  EXPECT_NEAR(cold->tta.value - warm->tta.value, 8 * 0.020, 1e-9);  // once, not per round

  Target dp = MakeTarget("dp", Target::Kind::kDataParallel, "jetson");
  dp.devices = 4;
  dp.nodes = 1;
  dp.intra_node = {1e9, 1e-5};
  cold = PredictTta(dp, workload, 16, Estimate::Measured(6), *step, std::nullopt, std::nullopt,
                    warmup);
  warm = PredictTta(dp, workload, 16, Estimate::Measured(6), *step);
  ASSERT_TRUE(cold.ok() && warm.ok());
  EXPECT_NEAR(cold->tta.value - warm->tta.value, 8 * 0.020, 1e-9);  // side by side

  cold = PredictTta(one, workload, 64, Estimate::Measured(10), *step, std::nullopt, std::nullopt,
                    Estimate::Predicted(-1, -2, 0));
  ASSERT_FALSE(cold.ok());
  EXPECT_NE(cold.status().message().find("warm-up"), std::string::npos);
}

TEST(CostModel, TargetsThatCannotBeCostedSayWhy) {
  StatusOr<StepTimeModel> step = StepTimeModel::Fit({{64, 0.1}});
  ASSERT_TRUE(step.ok());
  const Estimate epochs = Estimate::Measured(10);
  Target dp = MakeTarget("dp", Target::Kind::kDataParallel, "cpu");
  dp.devices = 4;
  dp.nodes = 2;
  StatusOr<TtaBreakdown> t = PredictTta(dp, {1000, 1e6}, 64, epochs, *step);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("inter_node"), std::string::npos) << t.status().message();
  dp.devices = 3;
  EXPECT_FALSE(PredictTta(dp, {1000, 1e6}, 64, epochs, *step).ok());  // not even over nodes
  Target fed = MakeTarget("fed", Target::Kind::kFederated, "cpu");
  t = PredictTta(fed, {1000, 1e6}, 64, epochs, *step);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("clients_per_edge"), std::string::npos);
  Target moved = MakeTarget("moved", Target::Kind::kSingle, "cpu");
  moved.data_bytes = 1e9;
  t = PredictTta(moved, {1000, 1e6}, 64, epochs, *step);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("data_link"), std::string::npos);
  EXPECT_FALSE(PredictTta(moved, {0, 1e6}, 64, epochs, *step).ok());
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

// Data-parallel over 4 cloud devices on 4 nodes, 8 Mbit/s and 1 ms between them.
Target CloudRing() {
  Target ring;
  ring.name = "cloud-x4";
  ring.kind = Target::Kind::kDataParallel;
  ring.device_class = "cloud";
  ring.devices = 4;
  ring.nodes = 4;
  ring.inter_node = {1e6, 0.001};
  return ring;
}

// A class "cloud" of one worker that probed `cloud` and a class "edge" of one that probed
// `edge`, both of lenet on 1x28x28.
std::vector<DeviceClassProfile> CloudAndEdgeOf(std::vector<BatchProbe> cloud,
                                               std::vector<BatchProbe> edge) {
  WorkerRecord wc, we;
  wc.id = "c";
  wc.device.device_class = "cloud";
  we.id = "e";
  we.device.device_class = "edge";
  DeviceProbe pc, pe;
  pc.worker_id = "c";
  pe.worker_id = "e";
  pc.model = pe.model = "lenet";
  pc.input = pe.input = "1x28x28";
  pc.batches = std::move(cloud);
  pe.batches = std::move(edge);
  return GroupByClass({wc, we}, {pc, pe});
}

// Classes whose steps at batch b take 1 + b/16 ms (cloud, probed at 16 and 64) and four
// times that (edge, probed at 16 only, where 64 does not fit).
std::vector<DeviceClassProfile> CloudAndEdge() {
  return CloudAndEdgeOf({{16, true, 2.0, 0, ""}, {64, true, 5.0, 0, ""}},
                        {{16, true, 8.0, 0, ""}, {64, false, 0.0, 0, "out of memory"}});
}

TEST(DeviceClasses, TimeScalesAreTheReferencesStepOverTheDevicesWhereBothHaveOne) {
  const std::vector<DeviceClassProfile> classes = CloudAndEdge();
  const std::map<int, double> on_edge =
      TimeScales(classes, "edge", "cloud", "lenet", "1x28x28", {16, 32, 64}, Optimizer::kSgd);
  ASSERT_EQ(on_edge.count(16), 1u);
  EXPECT_DOUBLE_EQ(on_edge.at(16), 4.0);
  // The edge has one step time, so its fit is proportional to the batch (8 ms / 16 x b);
  // the cloud's at 32 is fitted on its two: 1 + 32/16 = 3 ms.
  ASSERT_EQ(on_edge.count(32), 1u);
  EXPECT_NEAR(on_edge.at(32), 16.0 / 3.0, 1e-9);
  EXPECT_EQ(TimeScales(classes, "cloud", "cloud", "lenet", "1x28x28", {16}, Optimizer::kSgd).at(16),
            1.0);
  // No probe of that input, or no such class: nothing to scale by.
  EXPECT_TRUE(
      TimeScales(classes, "edge", "cloud", "lenet", "3x32x32", {16}, Optimizer::kSgd).empty());
  EXPECT_TRUE(
      TimeScales(classes, "jetson", "cloud", "lenet", "1x28x28", {16}, Optimizer::kSgd).empty());
}

// An Adam trial counts with Adam's step on both classes: each probed step with its update
// swapped for Adam's, and a fitted step plus the class's median extra. A class that did not
// time Adam's update gives SGD's step.
TEST(DeviceClasses, AdamTrialsCountWithAdamsStepOnBothClasses) {
  // Adam's update takes 0.5 ms more than SGD's on the cloud, 3 ms more on the edge.
  const std::vector<DeviceClassProfile> classes = CloudAndEdgeOf(
      {{16, true, 2.0, 0, "", 0.6, 1.2, 0.2, 0.7}, {64, true, 5.0, 0, "", 1.6, 3.2, 0.2, 0.7}},
      {{16, true, 8.0, 0, "", 2.0, 5.0, 1.0, 4.0}, {64, false, 0.0, 0, "out of memory"}});
  const std::map<int, double> adam =
      TimeScales(classes, "edge", "cloud", "lenet", "1x28x28", {16, 32}, Optimizer::kAdam);
  ASSERT_EQ(adam.size(), 2u);
  EXPECT_NEAR(adam.at(16), (8.0 - 1.0 + 4.0) / (2.0 - 0.2 + 0.7), 1e-9);
  // Fitted at 32: the edge's 8 / 16 x 32 ms and the cloud's 1 + 32 / 16 ms, each plus its
  // extra.
  EXPECT_NEAR(adam.at(32), (16.0 + 3.0) / (3.0 + 0.5), 1e-9);
  // SGD's trials keep the probed steps.
  EXPECT_NEAR(
      TimeScales(classes, "edge", "cloud", "lenet", "1x28x28", {16}, Optimizer::kSgd).at(16), 4.0,
      1e-9);
  const ClassProbe* edge_probe = FindProbe(classes[1], "lenet", "1x28x28");
  ASSERT_NE(edge_probe, nullptr);
  EXPECT_NEAR(StepMsAt(*edge_probe, 48, Optimizer::kAdam).value_or(0), 24.0 + 3.0, 1e-9);
  EXPECT_NEAR(StepMsAt(*edge_probe, 48, Optimizer::kSgd).value_or(0), 24.0, 1e-9);
  // A data-parallel target of the cloud class: its compute at the local batch is Adam's.
  const Target ring = CloudRing();
  Workload workload;
  workload.model_bytes = 4000;  // the ring: 12 ms, as below
  EXPECT_NEAR(
      TargetTimeScales(classes, ring, workload, "cloud", "lenet", "1x28x28", {64}, Optimizer::kAdam)
          .at(64),
      (2.5 + 12.0) / 5.5, 1e-6);
  // Without Adam's update timed, Adam's scales are SGD's.
  const std::vector<DeviceClassProfile> untimed = CloudAndEdge();
  EXPECT_EQ(TimeScales(untimed, "edge", "cloud", "lenet", "1x28x28", {16, 32}, Optimizer::kAdam),
            TimeScales(untimed, "edge", "cloud", "lenet", "1x28x28", {16, 32}, Optimizer::kSgd));
}

// A data-parallel target counts the class's compute step at the local batch plus the
// ring's synchronisation; a federated one its round per epoch; one device, TimeScales.
TEST(DeviceClasses, ASeveralDeviceTargetCountsItsWholeStepNotOnlyItsClasssCompute) {
  const std::vector<DeviceClassProfile> classes = CloudAndEdge();
  Target ring = CloudRing();
  Workload workload;
  workload.model_bytes = 4000;
  // Ring: 2 x 3/4 x 4000 B / 1e6 B/s + 2 x 3 x 1 ms = 12 ms. The cloud's step at 16 (64 / 4)
  // is 2 ms, its fit 1 + b/16 ms elsewhere: 8 = 32 / 4 gives 1.5 ms.
  const std::map<int, double> dp = TargetTimeScales(classes, ring, workload, "cloud", "lenet",
                                                    "1x28x28", {32, 64}, Optimizer::kSgd);
  ASSERT_EQ(dp.size(), 2u);
  EXPECT_NEAR(dp.at(64), (2.0 + 12.0) / 5.0, 1e-9);  // the device's own step at 64: 5 ms
  EXPECT_NEAR(dp.at(32), (1.5 + 12.0) / 3.0, 1e-9);  // and at 32, fitted: 3 ms
  // Half the synchronisation hidden: overlap x the shorter of compute and sync.
  ring.overlap = 0.5;
  EXPECT_NEAR(
      TargetTimeScales(classes, ring, workload, "cloud", "lenet", "1x28x28", {64}, Optimizer::kSgd)
          .at(64),
      (2.0 + 12.0 - 0.5 * 2.0) / 5.0, 1e-9);
  // From the edge (8 ms a step at 16): the cloud's fitted step at 4 (1 + 4/16 ms) and the
  // ring, over the edge's step.
  ring.overlap = 0.0;
  EXPECT_NEAR(
      TargetTimeScales(classes, ring, workload, "edge", "lenet", "1x28x28", {16}, Optimizer::kSgd)
          .at(16),
      (1.0 + 4.0 / 16.0 + 12.0) / 8.0, 1e-9);

  Target fed;
  fed.name = "edge-fedavg";
  fed.kind = Target::Kind::kFederated;
  fed.device_class = "edge";
  fed.clients_per_edge = 2;
  fed.edges = 2;
  fed.local_epochs = 2;
  fed.client_edge = {1e6, 0.0};
  fed.edge_cloud = {5e5, 0.0};
  workload.train_samples = 640;
  // A client's shard: 160 samples, 10 steps of 16 at 8 ms, twice: 160 ms; the model's
  // trips: 2 x 4 ms + 2 x 8 ms = 24 ms. Per epoch (a round is 2): 92 ms, against the
  // cloud's 40 steps of 2 ms.
  EXPECT_NEAR(
      TargetTimeScales(classes, fed, workload, "cloud", "lenet", "1x28x28", {16}, Optimizer::kSgd)
          .at(16),
      (160.0 + 24.0) / 2.0 / 80.0, 1e-9);
  // Without the number of samples there is no round to count: the client's compute step.
  workload.train_samples = 0;
  EXPECT_DOUBLE_EQ(
      TargetTimeScales(classes, fed, workload, "cloud", "lenet", "1x28x28", {16}, Optimizer::kSgd)
          .at(16),
      4.0);
  // One device of a class is TimeScales of that class.
  Target one;
  one.device_class = "edge";
  EXPECT_EQ(TargetTimeScales(classes, one, workload, "cloud", "lenet", "1x28x28", {16, 32},
                             Optimizer::kSgd),
            TimeScales(classes, "edge", "cloud", "lenet", "1x28x28", {16, 32}, Optimizer::kSgd));
}

}  // namespace
}  // namespace topotune
