#include "tuner/report.h"

#include <gtest/gtest.h>

namespace topotune {
namespace {

TrialRecord Trial(int64_t id, int batch, bool reached, double tta, double acc) {
  TrialRecord t;
  t.id = id;
  t.number = static_cast<int>(id);
  t.config.batch_size = batch;
  t.reached_target = reached;
  t.tta_s = tta;
  t.best_accuracy = acc;
  t.epochs_done = 1;
  t.state = reached ? TrialState::kCompleted : TrialState::kStopped;
  return t;
}

CurvePoint Point(int64_t trial, int epoch, double wall) {
  CurvePoint p;
  p.trial_id = trial;
  p.epoch = epoch;
  p.wall_s = wall;
  p.compute_s = wall * 0.9;
  return p;
}

JobSpec Spec() {
  JobSpec spec;
  spec.space.batch_sizes = {16, 32, 64};
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.grid_lr_points = 4;
  spec.asha = AshaSettings::InEpochs(1, 3, 2);  // top rung: 3 epochs
  spec.target_accuracy = 0.8;
  return spec;
}

TEST(Report, BestIsTheLeastTimeToAccuracy) {
  std::vector<TrialRecord> trials = {Trial(1, 16, true, 9.0, 0.85), Trial(2, 64, true, 4.0, 0.81),
                                     Trial(3, 32, false, 0.0, 0.99)};
  std::vector<CurvePoint> points = {Point(1, 1, 5.0), Point(2, 1, 2.0), Point(2, 2, 2.0),
                                    Point(3, 1, 3.0)};
  Report r = BuildReport(JobRecord{}, Spec(), trials, points);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->id, 2);
  EXPECT_TRUE(r.target_reached);
  ASSERT_EQ(r.best_curve.size(), 2u);
  EXPECT_DOUBLE_EQ(r.compute_s, 12.0);
  EXPECT_EQ(r.epochs_trained, 4);
  EXPECT_EQ(r.ranking[0].id, 2);
  EXPECT_EQ(r.ranking[1].id, 1);
  EXPECT_EQ(r.ranking[2].id, 3);
}

// A trial counted from another class's seconds (2.0 s) and measured again on the
// reference class (its confirmation, 2.4 s): the measured one is the answer, even against a
// third trial at 2.2 s that was never confirmed.
TEST(Report, AConfirmedTrialCountsByItsConfirmation) {
  TrialRecord counted = Trial(1, 16, true, 2.0, 0.9);
  TrialRecord other = Trial(2, 32, true, 2.2, 0.9);
  TrialRecord confirmation = Trial(3, 16, true, 2.4, 0.9);
  confirmation.confirms = counted.number;
  JobSpec spec = Spec();
  spec.reference_class = "edge";
  Report r = BuildReport(JobRecord{}, spec, {counted, other, confirmation}, {});
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->id, 2);
  EXPECT_EQ(r.reference_class, "edge");
  EXPECT_EQ(r.reference_target.device_class, "edge");
  EXPECT_EQ(r.reference_target.kind, Target::Kind::kSingle);
  // Measured faster than counted, the confirmation is the best.
  confirmation.tta_s = 1.5;
  r = BuildReport(JobRecord{}, spec, {counted, other, confirmation}, {});
  EXPECT_EQ(r.best->id, 3);
}

// A data-parallel reference target counts over the links its job fixed, and says how.
TEST(Report, TheReferenceTargetHasTheLinksItsJobFixed) {
  JobSpec spec = Spec();
  spec.reference_class = "edge";
  spec.reference_target.kind = Target::Kind::kDataParallel;
  spec.reference_target.device_class = "edge";
  spec.reference_target.devices = 4;
  spec.reference_target.nodes = 2;
  spec.reference_target.inter_node = {1e6, 0.001};
  Report declared = BuildReport(JobRecord{}, spec, {}, {});
  EXPECT_DOUBLE_EQ(declared.reference_target.inter_node.bandwidth_bytes_s, 1e6);
  EXPECT_EQ(declared.reference_target.links_measured, "");
  JobRecord job;
  job.counted_links = CountedLinks{{2.5e6, 0.002}, {}, "inter_node measured by a link test"};
  Report fixed = BuildReport(job, spec, {}, {});
  EXPECT_EQ(fixed.reference_target.kind, Target::Kind::kDataParallel);
  EXPECT_DOUBLE_EQ(fixed.reference_target.inter_node.bandwidth_bytes_s, 2.5e6);
  EXPECT_DOUBLE_EQ(fixed.reference_target.inter_node.latency_s, 0.002);
  EXPECT_EQ(fixed.reference_target.links_measured, "inter_node measured by a link test");
}

// An epoch on another class counts as measured when no probe scaled it (reference_s equal
// to its measured seconds); one on the reference class itself is measured by definition,
// unless the reference is several devices, whose synchronisation must be added.
TEST(Report, SaysWhichEpochsRanOnAnotherClassAndCountAsMeasured) {
  std::vector<TrialRecord> trials = {Trial(1, 16, false, 0.0, 0.5), Trial(2, 16, false, 0.0, 0.5),
                                     Trial(3, 16, false, 0.0, 0.5)};
  const auto on = [](int64_t trial, int epoch, const std::string& device_class, double scale) {
    CurvePoint p = Point(trial, epoch, 1.0);
    p.device_class = device_class;
    p.reference_s = p.compute_s * scale;
    return p;
  };
  // Trial 1 scaled on the cloud; trial 2 unscaled on the cloud for two epochs, then
  // scaled; trial 3 on the edge; one point stored before migration 15 (no class).
  std::vector<CurvePoint> points = {on(1, 1, "cloud", 4.0), on(2, 1, "cloud", 1.0),
                                    on(2, 2, "cloud", 1.0), on(2, 3, "cloud", 4.0),
                                    on(3, 1, "edge", 1.0),  on(3, 2, "", 1.0)};
  JobSpec spec = Spec();
  spec.reference_class = "edge";
  Report r = BuildReport(JobRecord{}, spec, trials, points);
  EXPECT_EQ(r.unscaled_epochs_total, 2);
  EXPECT_EQ(r.unscaled_epochs, (std::map<int64_t, int>{{2, 2}}));
  EXPECT_EQ(r.classes_of[1], std::vector<std::string>{"cloud"});
  EXPECT_EQ(r.classes_of[3], std::vector<std::string>{"edge"});
  // Without a reference class every second is as measured, and nothing is flagged.
  EXPECT_EQ(BuildReport(JobRecord{}, Spec(), trials, points).unscaled_epochs_total, 0);
  // Four edge devices: the edge's own unscaled epoch lacks its synchronisation.
  spec.reference_target.kind = Target::Kind::kDataParallel;
  spec.reference_target.device_class = "edge";
  spec.reference_target.devices = 4;
  r = BuildReport(JobRecord{}, spec, trials, points);
  EXPECT_EQ(r.unscaled_epochs, (std::map<int64_t, int>{{2, 2}, {3, 1}}));
}

TEST(Report, GridCostUsesMeasuredEpochTimesPerBatchSize) {
  std::vector<TrialRecord> trials = {Trial(1, 16, false, 0, 0.5), Trial(2, 64, false, 0, 0.5)};
  std::vector<CurvePoint> points = {Point(1, 1, 8.0), Point(2, 1, 2.0)};
  Report r = BuildReport(JobRecord{}, Spec(), trials, points);
  // 32 is interpolated in log-log space between 16 (8 s) and 64 (2 s): 4 s.
  // Each batch size: 2 optimizers x 4 learning rates x 3 epochs = 24 epochs.
  EXPECT_EQ(r.grid.points, 24);
  EXPECT_EQ(r.grid.batch_sizes_measured, 2);
  EXPECT_NEAR(r.grid.cost_s, 24 * (8.0 + 4.0 + 2.0), 1e-9);
  EXPECT_NEAR(r.grid_ratio, 10.0 / r.grid.cost_s, 1e-12);
  EXPECT_FALSE(r.target_reached);
  EXPECT_EQ(r.best->id, 1);  // equal accuracy: the lower number
}

TEST(Report, WithRungsInSecondsTheGridTrainsEachPointForTheTopRungsSeconds) {
  JobSpec spec = Spec();
  spec.asha = AshaSettings::InSeconds(/*min_seconds=*/2.0, 3, 2, /*max_epochs=*/50);
  std::vector<TrialRecord> trials = {Trial(1, 16, false, 0, 0.5)};
  std::vector<CurvePoint> points = {Point(1, 1, 8.0), Point(1, 2, 2.0)};  // 9 of 10 s train
  Report r = BuildReport(JobRecord{}, spec, trials, points);
  EXPECT_EQ(r.grid.points, 24);
  EXPECT_DOUBLE_EQ(r.grid.seconds_per_point, 6.0);
  EXPECT_EQ(r.grid.epochs_per_point, 0);
  EXPECT_NEAR(r.grid.cost_s, 24 * 6.0 / 0.9, 1e-9);
}

TEST(Report, ProgressIsCompleteOnlyWhenTheJobIs) {
  JobRecord job;
  job.state = JobState::kRunning;
  JobSpec spec = Spec();
  spec.max_trials = 4;
  std::vector<TrialRecord> trials = {Trial(1, 16, true, 1.0, 0.9), Trial(2, 16, true, 1.0, 0.9),
                                     Trial(3, 16, true, 1.0, 0.9), Trial(4, 16, true, 1.0, 0.9)};
  EXPECT_LT(SummariseProgress(job, spec, trials).fraction, 1.0);
  job.state = JobState::kCompleted;
  EXPECT_DOUBLE_EQ(SummariseProgress(job, spec, trials).fraction, 1.0);
  EXPECT_EQ(SummariseProgress(job, spec, trials).trials_by_state.at("completed"), 4);
}

TEST(Report, ProgressUnderATimeBudgetIsTheShareSpentWhenThatIsFurther) {
  JobRecord job;
  job.state = JobState::kRunning;
  JobSpec spec = Spec();
  spec.max_trials = 10;
  spec.time_budget_s = 20;
  std::vector<TrialRecord> trials = {Trial(1, 16, false, 0, 0.5), Trial(2, 16, false, 0, 0.5)};
  trials[0].train_s = 6;
  trials[1].train_s = 2;
  trials[1].cut_s = 2;  // epochs a lost worker cut: spent all the same
  EXPECT_DOUBLE_EQ(SummariseProgress(job, spec, trials).fraction, 0.5);  // not 2 of 10 trials
  spec.time_budget_s = 200;
  EXPECT_DOUBLE_EQ(SummariseProgress(job, spec, trials).fraction, 0.2);
  EXPECT_DOUBLE_EQ(BuildReport(job, spec, trials, {}).cut_s, 2.0);
}

}  // namespace
}  // namespace topotune
