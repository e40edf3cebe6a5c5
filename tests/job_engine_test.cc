#include "tuner/job_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "tests/memory_journal.h"
#include "tuner/algorithms.h"
#include "tuner/report.h"

namespace topotune {
namespace {

JobSpec SmallSpec(int max_trials) {
  JobSpec spec;
  spec.model = "lenet";
  spec.space.batch_sizes = {16, 32, 64};
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.target_accuracy = 0.9;
  spec.max_trials = max_trials;
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/2);
  spec.seed = 7;
  return spec;
}

JobRecord Job() {
  JobRecord job;
  job.id = 1;
  job.state = JobState::kQueued;
  return job;
}

CurvePoint Epoch(int epoch, double accuracy, double seconds) {
  CurvePoint p;
  p.epoch = epoch;
  p.val_accuracy = accuracy;
  p.compute_s = seconds;
  p.wall_s = seconds;
  return p;
}

// Runs a trial's assigned segment to its end with the given accuracy per epoch.
void RunSegment(JobEngine& engine, const Assignment& a, double accuracy, double seconds) {
  for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
    StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, Epoch(e, accuracy, seconds));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    if (v->stop) break;
  }
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
}

Assignment Next(JobEngine& engine, const std::string& worker) {
  StatusOr<std::optional<Assignment>> a = engine.NextAssignment(worker, 0);
  EXPECT_TRUE(a.ok());
  EXPECT_TRUE(a->has_value());
  return a->value_or(Assignment{});
}

TEST(JobEngine, PromotesTheTopThirdAndResumesFromTheRungOnTheSameWorker) {
  MemoryJournal journal;
  JobEngine engine(Job(), SmallSpec(3), &journal);
  engine.SetWorkerOnline("w1", true);
  const double acc[] = {0.3, 0.6, 0.5};
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    Assignment a = Next(engine, "w1");
    EXPECT_EQ(a.start_epoch, 0);
    EXPECT_EQ(a.trial.target_epochs, 1);
    ids.push_back(a.trial.id);
    RunSegment(engine, a, acc[i], 1.0);
  }
  // floor(3/3) = 1 promotion: the trial with 0.6, resumed at epoch 1 to epoch 3.
  Assignment promoted = Next(engine, "w1");
  EXPECT_EQ(promoted.trial.id, ids[1]);
  EXPECT_EQ(promoted.start_epoch, 1);
  EXPECT_EQ(promoted.trial.target_epochs, 3);
  EXPECT_EQ(promoted.trial.rung, 1);
  EXPECT_EQ(promoted.checkpoint, "job1-trial1");
  RunSegment(engine, promoted, 0.7, 1.0);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_EQ(journal.trials[ids[1]].state, TrialState::kCompleted);
  EXPECT_EQ(journal.trials[ids[1]].epochs_done, 3);
  EXPECT_EQ(journal.trials[ids[0]].state, TrialState::kStopped);
  EXPECT_NE(journal.trials[ids[0]].reason.find("not promoted"), std::string::npos);
}

TEST(JobEngine, PromotionWaitsForTheWorkerThatHoldsTheCheckpoint) {
  MemoryJournal journal;
  JobEngine engine(Job(), SmallSpec(4), &journal);
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  Assignment best = Next(engine, "w1");
  RunSegment(engine, best, 0.8, 1.0);
  for (int i = 0; i < 2; ++i) RunSegment(engine, Next(engine, "w2"), 0.2, 1.0);
  // w2 asks: the promotable trial lives on w1, so w2 gets a new trial instead.
  Assignment other = Next(engine, "w2");
  EXPECT_NE(other.trial.id, best.trial.id);
  EXPECT_EQ(other.start_epoch, 0);
  Assignment resumed = Next(engine, "w1");
  EXPECT_EQ(resumed.trial.id, best.trial.id);
  EXPECT_EQ(resumed.start_epoch, 1);
}

TEST(JobEngine, StopsATrialAtTheTargetAndRecordsItsTimeToAccuracy) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(1);
  spec.asha = AshaSettings::InEpochs(3, 3, 1);
  JobEngine engine(Job(), spec, &journal);
  Assignment a = Next(engine, "w1");
  ASSERT_FALSE(engine.OnEpoch(a.trial.id, Epoch(1, 0.5, 2.0))->stop);
  StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, Epoch(2, 0.95, 3.0));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->stop);
  ASSERT_TRUE(
      engine
          .OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kStopped, "told to stop"}, 0)
          .ok());
  const TrialRecord& t = journal.trials[a.trial.id];
  EXPECT_EQ(t.state, TrialState::kCompleted);
  EXPECT_TRUE(t.reached_target);
  EXPECT_DOUBLE_EQ(t.tta_s, 5.0);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_DOUBLE_EQ(*engine.IncumbentTta(), 5.0);
}

TEST(JobEngine, BoundPrunesATrialSlowerThanTheIncumbent) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(2);
  spec.asha = AshaSettings::InEpochs(5, 3, 1);
  JobEngine engine(Job(), spec, &journal);
  Assignment fast = Next(engine, "w1");
  Assignment slow = Next(engine, "w2");
  ASSERT_TRUE(engine.OnEpoch(fast.trial.id, Epoch(1, 0.95, 4.0))->stop);
  ASSERT_TRUE(
      engine.OnSegmentEnded({fast.trial.id, fast.trial.attempt, SegmentStatus::kStopped, ""}, 0)
          .ok());
  EXPECT_FALSE(engine.OnEpoch(slow.trial.id, Epoch(1, 0.5, 3.0))->stop);
  StatusOr<EpochVerdict> v = engine.OnEpoch(slow.trial.id, Epoch(2, 0.6, 3.0));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->stop);
  EXPECT_NE(v->reason.find("bound"), std::string::npos);
  ASSERT_TRUE(
      engine.OnSegmentEnded({slow.trial.id, slow.trial.attempt, SegmentStatus::kStopped, ""}, 0)
          .ok());
  EXPECT_EQ(journal.trials[slow.trial.id].state, TrialState::kStopped);
  EXPECT_NE(journal.trials[slow.trial.id].reason.find("bound"), std::string::npos);
}

TEST(JobEngine, ARepeatedEpochIsStoredOnceAndNotCountedTwice) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(1);
  spec.asha = AshaSettings::InEpochs(3, 3, 1);
  JobEngine engine(Job(), spec, &journal);
  Assignment a = Next(engine, "w1");
  ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(1, 0.5, 2.0)).ok());
  ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(1, 0.5, 2.0)).ok());
  EXPECT_DOUBLE_EQ(journal.trials[a.trial.id].train_s, 2.0);
  EXPECT_EQ(journal.points.size(), 1u);
  // Skipping an epoch is an error.
  EXPECT_FALSE(engine.OnEpoch(a.trial.id, Epoch(3, 0.5, 2.0)).ok());
}

TEST(JobEngine, ATrialOfALostWorkerIsRerunElsewhereFromItsLastCheckpoint) {
  MemoryJournal journal;
  JobEngine engine(Job(), SmallSpec(1), &journal);
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  Assignment a = Next(engine, "w1");
  ASSERT_TRUE(engine.OnWorkerLost("w1", 0).ok());
  EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kPending);
  Assignment again = Next(engine, "w2");
  EXPECT_EQ(again.trial.id, a.trial.id);
  EXPECT_EQ(again.start_epoch, 0);
}

TEST(JobEngine, FailedAndInfeasibleSegmentsEndTheirTrials) {
  MemoryJournal journal;
  JobEngine engine(Job(), SmallSpec(2), &journal);
  Assignment a = Next(engine, "w1");
  Assignment b = Next(engine, "w2");
  ASSERT_TRUE(engine
                  .OnSegmentEnded(
                      {a.trial.id, a.trial.attempt, SegmentStatus::kInfeasible, "out of memory"}, 0)
                  .ok());
  ASSERT_TRUE(
      engine.OnSegmentEnded({b.trial.id, b.trial.attempt, SegmentStatus::kFailed, "diverged"}, 0)
          .ok());
  EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kInfeasible);
  EXPECT_EQ(journal.trials[b.trial.id].state, TrialState::kFailed);
  EXPECT_EQ(journal.trials[b.trial.id].reason, "diverged");
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

TEST(JobEngine, CancelStopsEveryUnfinishedTrial) {
  MemoryJournal journal;
  JobEngine engine(Job(), SmallSpec(5), &journal);
  Assignment a = Next(engine, "w1");
  StatusOr<std::vector<std::pair<std::string, int64_t>>> running = engine.Cancel(0);
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->size(), 1u);
  EXPECT_EQ((*running)[0].first, "w1");
  EXPECT_EQ(engine.state(), JobState::kCancelled);
  EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kStopped);
  EXPECT_FALSE(engine.NextAssignment("w1", 0)->has_value());
  EXPECT_FALSE(engine.Cancel(0).ok());
}

TEST(JobEngine, SamplesConfigurationsInsideTheSpace) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(50);
  spec.space.lr_min = 1e-3;
  spec.space.lr_max = 1e-1;
  JobEngine engine(Job(), spec, &journal);
  int adam = 0;
  for (int i = 0; i < 50; ++i) {
    Assignment a = Next(engine, "w" + std::to_string(i));
    EXPECT_GE(a.trial.config.learning_rate, 1e-3);
    EXPECT_LE(a.trial.config.learning_rate, 1e-1);
    EXPECT_TRUE(a.trial.config.batch_size == 16 || a.trial.config.batch_size == 32 ||
                a.trial.config.batch_size == 64);
    adam += a.trial.config.optimizer == Optimizer::kAdam;
  }
  EXPECT_GT(adam, 10);
  EXPECT_LT(adam, 40);
  EXPECT_FALSE(engine.NextAssignment("another", 0)->has_value());  // max_trials reached
}

TEST(JobEngine, SynchronousHalvingWaitsForTheWholeRung) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(3);
  spec.algorithm = "sha";
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  Assignment a = Next(engine, "w1");
  Assignment b = Next(engine, "w2");
  RunSegment(engine, a, 0.8, 1.0);
  RunSegment(engine, b, 0.2, 1.0);
  // SHA promotes only once every trial of rung 0 has a result, however clear the winner.
  Assignment c = Next(engine, "w1");
  EXPECT_EQ(c.start_epoch, 0);  // the third new trial, not a promotion
  EXPECT_FALSE(engine.NextAssignment("w1", 0)->has_value());  // rung 0 still running
  RunSegment(engine, c, 0.1, 1.0);
  Assignment promoted = Next(engine, "w1");
  EXPECT_EQ(promoted.trial.id, a.trial.id);
  EXPECT_EQ(promoted.start_epoch, 1);
}

TEST(JobEngine, HyperbandBracketsStartAtDifferentRungs) {
  JobSpec spec = SmallSpec(100);
  spec.algorithm = "hyperband";
  spec.asha = AshaSettings::InEpochs(1, 3, 3);  // rungs of 1, 3, 9 epochs
  const std::vector<BracketPlan> plans = PlanBrackets(spec);
  // s = 2: 9 trials from rung 0; s = 1: ceil(3/2 * 3) = 5 from rung 1; s = 0: 3 from rung 2.
  ASSERT_GE(plans.size(), 3u);
  EXPECT_EQ(plans[0].start_rung, 0);
  EXPECT_EQ(plans[0].quota, 9);
  EXPECT_EQ(plans[1].start_rung, 1);
  EXPECT_EQ(plans[1].quota, 5);
  EXPECT_EQ(plans[2].start_rung, 2);
  EXPECT_EQ(plans[2].quota, 3);
  int total = 0;
  for (const auto& p : plans) {
    EXPECT_TRUE(p.synchronous);
    total += p.quota;
  }
  EXPECT_EQ(total, 100);

  MemoryJournal journal;
  JobEngine engine(Job(), spec, &journal);
  for (int i = 0; i < 9; ++i)
    EXPECT_EQ(Next(engine, "w" + std::to_string(i)).trial.target_epochs, 1);
  Assignment second_bracket = Next(engine, "x");
  EXPECT_EQ(second_bracket.trial.rung, 1);
  EXPECT_EQ(second_bracket.trial.target_epochs, 3);
  EXPECT_EQ(second_bracket.start_epoch, 0);  // a new trial trains from scratch to rung 1
}

TEST(JobEngine, RandomAndGridTrainEveryTrialToTheTopRung) {
  for (const char* algorithm : {"random", "grid"}) {
    MemoryJournal journal;
    JobSpec spec = SmallSpec(2);
    spec.algorithm = algorithm;
    spec.asha = AshaSettings::InEpochs(1, 3, 3);
    JobEngine engine(Job(), spec, &journal);
    Assignment a = Next(engine, "w1");
    EXPECT_EQ(a.trial.target_epochs, 9) << algorithm;
    RunSegment(engine, a, 0.5, 1.0);
    EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kCompleted) << algorithm;
    EXPECT_EQ(journal.trials[a.trial.id].epochs_done, 9) << algorithm;
  }
}

// Trains the segment of `a` as a worker does, from the SegmentSpec it is sent: epochs of
// `seconds` of its own until the verdict says stop or its own seconds reach the spec's
// max_train_s. Returns the epochs trained.
int RunAsWorker(JobEngine& engine, const Assignment& a, const JobSpec& spec, double accuracy,
                double seconds) {
  const SegmentSpec s = MakeSegmentSpec(a, spec);
  double trained = 0.0;
  int e = s.start_epoch;
  while (e < s.end_epoch) {
    ++e;
    StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, Epoch(e, accuracy, seconds));
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    trained += seconds;
    if (!v.ok() || v->stop) break;
    if (ReachedSeconds(s.train_s_before + trained, s.max_train_s)) break;
  }
  EXPECT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  return e - s.start_epoch;
}

// The same for a placement whose seconds count as measured (time scale 1).
int RunTimedSegment(JobEngine& engine, const Assignment& a, double accuracy, double seconds) {
  return RunAsWorker(engine, a, JobSpec(), accuracy, seconds);
}

// Runs `spec`'s job on one worker as a worker does (RunAsWorker), every epoch of 1 s at
// accuracy 0.5 (below any target here), until it has nothing left to assign. Returns the
// training seconds its trials spent.
double SpendOnOneWorker(JobEngine& engine, const JobSpec& spec) {
  engine.SetWorkerOnline("w1", true);
  for (int round = 0; round < 500; ++round) {
    StatusOr<std::optional<Assignment>> next = engine.NextAssignment("w1", 0);
    EXPECT_TRUE(next.ok()) << next.status().ToString();
    if (!next.ok() || !next->has_value()) break;
    RunAsWorker(engine, **next, spec, 0.5, 1.0);
  }
  return engine.SpentSeconds();
}

TEST(TimeBudget, NothingStartsOnceTheJobsSecondsAreSpentAndTheJobEndsSayingSo) {
  // Unlimited, this job trains 6 trials to rung 0 (1 epoch) and 2 to rung 1 (3 epochs).
  JobSpec spec = SmallSpec(6);
  {
    MemoryJournal journal;
    JobEngine engine(Job(), spec, &journal);
    EXPECT_DOUBLE_EQ(SpendOnOneWorker(engine, spec), 10.0);
  }
  spec.time_budget_s = 7.5;
  MemoryJournal journal;
  journal.jobs[1] = Job();
  JobEngine engine(Job(), spec, &journal);
  // Each segment is told where the budget ends; the worker stops at the epoch that reaches it.
  EXPECT_DOUBLE_EQ(SpendOnOneWorker(engine, spec), 8.0);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_NE(journal.jobs[1].message.find("time budget of 7.50 s spent"), std::string::npos)
      << journal.jobs[1].message;
  int by_budget = 0;
  for (const auto& [id, t] : journal.trials) {
    EXPECT_TRUE(IsTerminal(t.state)) << t.reason;
    by_budget += t.reason.find("time budget") != std::string::npos;
  }
  EXPECT_GE(by_budget, 1);
}

TEST(TimeBudget, ASegmentRunningWhenAnotherSpendsTheBudgetStopsAtItsNextEpoch) {
  JobSpec spec = SmallSpec(6);
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/5, /*reduction_factor=*/3, /*num_rungs=*/1);
  spec.time_budget_s = 4.0;
  MemoryJournal journal;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  const Assignment a = Next(engine, "w1");
  const Assignment b = Next(engine, "w2");
  EXPECT_DOUBLE_EQ(a.max_train_s, 4.0);  // the whole budget was left for each
  EXPECT_DOUBLE_EQ(b.max_train_s, 4.0);
  StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, Epoch(1, 0.5, 3.0));
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->stop);
  v = engine.OnEpoch(b.trial.id, Epoch(1, 0.5, 1.5));  // 4.5 s spent in all
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->stop);
  ASSERT_TRUE(
      engine.OnSegmentEnded({b.trial.id, b.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  // Four of the six trials are still to propose, and w2 is idle: nothing starts.
  StatusOr<std::optional<Assignment>> idle = engine.NextAssignment("w2", 0);
  ASSERT_TRUE(idle.ok());
  EXPECT_FALSE(idle->has_value());
  EXPECT_EQ(engine.state(), JobState::kRunning);  // a still trains
  // a's next epoch is its last: the budget was spent while it ran.
  v = engine.OnEpoch(a.trial.id, Epoch(2, 0.5, 0.5));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->stop);
  EXPECT_NE(v->reason.find("time budget"), std::string::npos) << v->reason;
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  for (const Assignment* x : {&a, &b}) {
    EXPECT_EQ(journal.trials[x->trial.id].state, TrialState::kStopped);
    EXPECT_NE(journal.trials[x->trial.id].reason.find("time budget"), std::string::npos);
  }
}

TEST(TimeBudget, EpochsALostWorkerCutAreTrainedAgainAndStillCount) {
  JobSpec spec = SmallSpec(6);
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/5, /*reduction_factor=*/3, /*num_rungs=*/1);
  spec.time_budget_s = 10.0;
  MemoryJournal journal;
  journal.jobs[1] = Job();
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  engine.SetWorkerOnline("w2", true);
  const Assignment b = Next(engine, "w2");
  ASSERT_TRUE(engine.OnEpoch(b.trial.id, Epoch(1, 0.5, 2.0)).ok());
  const Assignment a = Next(engine, "w1");
  EXPECT_DOUBLE_EQ(a.max_train_s, 8.0);
  // w2 is lost: b's epoch is cut, to be trained again, but its 2 s were spent.
  ASSERT_TRUE(engine.OnWorkerLost("w2", 0).ok());
  EXPECT_EQ(journal.trials[b.trial.id].epochs_done, 0);
  EXPECT_DOUBLE_EQ(journal.trials[b.trial.id].train_s, 0.0);
  EXPECT_DOUBLE_EQ(journal.trials[b.trial.id].cut_s, 2.0);
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 2.0);
  // a's worker ends the segment at its 8 s, before its rung's 5 epochs: that spends the
  // budget, so b is not rerun and the job ends.
  EXPECT_EQ(RunAsWorker(engine, a, spec, 0.5, 2.0), 4);
  EXPECT_TRUE(engine.BudgetSpent());
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 10.0);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_NE(journal.jobs[1].message.find("(10.00 s of training)"), std::string::npos)
      << journal.jobs[1].message;
  for (const Assignment* x : {&a, &b}) {
    EXPECT_EQ(journal.trials[x->trial.id].state, TrialState::kStopped)
        << journal.trials[x->trial.id].reason;
    EXPECT_NE(journal.trials[x->trial.id].reason.find("time budget"), std::string::npos);
  }
}

TEST(TimeBudget, AnEpochReportedAgainCountsTheSecondsOfThoseItReplaces) {
  JobSpec spec = SmallSpec(6);
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/5, /*reduction_factor=*/3, /*num_rungs=*/1);
  spec.time_budget_s = 100.0;
  MemoryJournal journal;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  const Assignment a = Next(engine, "w1");
  for (int e : {1, 2, 3, 2}) ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(e, 0.5, e)).ok());
  // Epochs 2 and 3 (5 s) were replaced by a second epoch 2 (2 s).
  EXPECT_DOUBLE_EQ(journal.trials[a.trial.id].train_s, 3.0);
  EXPECT_DOUBLE_EQ(journal.trials[a.trial.id].cut_s, 5.0);
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 8.0);
}

TEST(JobEngine, AnEpochBeforeItsSegmentBeganIsRefused) {
  JobSpec spec = SmallSpec(6);  // rungs of 1 and 3 epochs
  MemoryJournal journal;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  Assignment promoted = Next(engine, "w1");
  for (int i = 0; i < 6 && promoted.start_epoch == 0; ++i) {
    RunAsWorker(engine, promoted, spec, 0.5, 1.0);
    promoted = Next(engine, "w1");
  }
  ASSERT_EQ(promoted.start_epoch, 1);
  const double spent = engine.SpentSeconds();
  StatusOr<EpochVerdict> v = engine.OnEpoch(promoted.trial.id, Epoch(1, 0.6, 1.0));
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("a segment that began after epoch 1"), std::string::npos)
      << v.status().message();
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), spent);  // nothing stored
  EXPECT_TRUE(engine.OnEpoch(promoted.trial.id, Epoch(2, 0.6, 1.0)).ok());
}

TEST(TimeBudget, EpochsARestartCutStillCountAfterAnotherRestart) {
  JobSpec spec = SmallSpec(6);
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/5, /*reduction_factor=*/3, /*num_rungs=*/1);
  spec.time_budget_s = 5.0;
  MemoryJournal journal;
  journal.jobs[1] = Job();
  int64_t cut_trial = 0;
  {
    JobEngine engine(Job(), spec, &journal);
    engine.SetWorkerOnline("w1", true);
    const Assignment a = Next(engine, "w1");
    cut_trial = a.trial.id;
    ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(1, 0.5, 1.5)).ok());
    ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(2, 0.5, 1.5)).ok());
  }  // the controller stops while a trains
  for (int restart = 0; restart < 2; ++restart) {
    StatusOr<std::unique_ptr<JobEngine>> restored = JobEngine::Restore(Job(), spec, &journal);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_DOUBLE_EQ((*restored)->SpentSeconds(), 3.0) << "after restart " << restart + 1;
    EXPECT_EQ(journal.trials[cut_trial].epochs_done, 0);
    EXPECT_DOUBLE_EQ(journal.trials[cut_trial].cut_s, 3.0);
  }
  StatusOr<std::unique_ptr<JobEngine>> restored = JobEngine::Restore(Job(), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  (*restored)->SetWorkerOnline("w1", true);
  const Assignment rerun = Next(**restored, "w1");
  EXPECT_EQ(rerun.start_epoch, 0);
  EXPECT_DOUBLE_EQ(rerun.max_train_s, 2.0);  // what the cut epochs left of the 5 s
}

TEST(JobEngine, RungsInSecondsEndAtTheEpochThatUsesUpTheirBudget) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(3);
  spec.asha = AshaSettings::InSeconds(/*min_seconds=*/2.0, /*reduction_factor=*/3,
                                      /*num_rungs=*/2, /*max_epochs=*/20);
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  // Slow epochs get fewer of them in the same seconds: 0.8 s epochs -> 3 (2.4 s);
  // 1.5 s -> 2 (3.0 s); 0.5 s -> 4 (2.0 s).
  const double seconds[] = {0.8, 1.5, 0.5};
  const double acc[] = {0.6, 0.3, 0.5};
  const int expected_epochs[] = {3, 2, 4};
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    Assignment a = Next(engine, "w1");
    EXPECT_EQ(a.trial.target_epochs, 20);  // the cap; the seconds end the rung
    EXPECT_DOUBLE_EQ(a.max_train_s, 2.0);
    EXPECT_EQ(RunTimedSegment(engine, a, acc[i], seconds[i]), expected_epochs[i]);
    ids.push_back(a.trial.id);
    EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kPaused)
        << journal.trials[a.trial.id].reason;
  }
  // The best of rung 0 (0.6) resumes where it stopped, for rung 1's 6 s in all.
  Assignment promoted = Next(engine, "w1");
  EXPECT_EQ(promoted.trial.id, ids[0]);
  EXPECT_EQ(promoted.start_epoch, 3);
  EXPECT_DOUBLE_EQ(promoted.max_train_s, 6.0);
  EXPECT_NEAR(promoted.trial.train_s, 2.4, 1e-12);
  EXPECT_EQ(RunTimedSegment(engine, promoted, 0.7, 0.8), 5);  // 2.4 + 5 * 0.8 = 6.4 s
  EXPECT_EQ(journal.trials[ids[0]].state, TrialState::kCompleted);
  EXPECT_EQ(journal.trials[ids[0]].epochs_done, 8);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

TEST(JobEngine, ASegmentThatEndsBeforeItsSecondsIsAFailure) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(1);
  spec.asha = AshaSettings::InSeconds(5.0, 3, 2, 20);
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  Assignment a = Next(engine, "w1");
  ASSERT_TRUE(engine.OnEpoch(a.trial.id, Epoch(1, 0.4, 1.0)).ok());
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  EXPECT_EQ(journal.trials[a.trial.id].state, TrialState::kFailed);
}

TEST(JobEngine, TheWorkerIsToldTheBoundAndItsStopCountsAsPruning) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(3);
  spec.asha = AshaSettings::InEpochs(4, 3, 1);
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  Assignment first = Next(engine, "w1");
  EXPECT_EQ(first.max_train_s, 0.0);  // no incumbent yet
  // Reaches 0.9 at epoch 2: TTA 2.0 s.
  ASSERT_TRUE(engine.OnEpoch(first.trial.id, Epoch(1, 0.5, 1.0)).ok());
  ASSERT_TRUE(engine.OnEpoch(first.trial.id, Epoch(2, 0.95, 1.0)).ok());
  ASSERT_TRUE(
      engine.OnSegmentEnded({first.trial.id, first.trial.attempt, SegmentStatus::kCompleted, ""}, 0)
          .ok());
  Assignment second = Next(engine, "w1");
  EXPECT_DOUBLE_EQ(second.max_train_s, 2.0);
  EXPECT_EQ(RunTimedSegment(engine, second, 0.5, 0.75), 3);  // 2.25 s >= 2.0 s
  EXPECT_EQ(journal.trials[second.trial.id].state, TrialState::kStopped);
  EXPECT_NE(journal.trials[second.trial.id].reason.find("bound"), std::string::npos)
      << journal.trials[second.trial.id].reason;
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

// A job of algorithm "forecast" (no rungs) of `max_trials` over learning rates from `lr_min`
// to 1, trained in segments of at least `min_epochs` up to `max_epochs`.
JobSpec ForecastSpec(int max_trials, double target, double lr_min, int min_epochs, int max_epochs) {
  JobSpec spec = SmallSpec(max_trials);
  spec.algorithm = "forecast";
  spec.target_accuracy = target;
  spec.space.lr_min = lr_min;
  spec.space.lr_max = 1.0;
  spec.asha.rungless = true;
  spec.asha.num_rungs = 1;
  spec.asha.min_epochs = min_epochs;
  spec.asha.max_epochs = max_epochs;
  return spec;
}

// A synthetic table for the forecast: configurations with a learning rate of 0.01 or more
// start fast and plateau at 0.70; the others sit at chance, then rise and reach 0.80 at
// epoch 41. With a target of 0.80 only the slow starters can win.
double SyntheticAccuracy(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.004 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (c.learning_rate >= 0.01) return 0.70 - 0.6 * std::exp(-0.5 * epoch) + wobble;
  return 0.1 + 0.8 / (1 + std::pow(epoch / 25.0, -4.0)) + wobble;
}

// Runs `engine`'s job on one worker "w1", each epoch of seconds(config) (1 s without it) at
// accuracy(config, epoch, trial id), until no assignment is left (or until() holds before a
// segment).
void RunOnOneWorker(JobEngine& engine,
                    const std::function<double(const TrialConfig&, int, int64_t)>& accuracy,
                    const std::function<double(const TrialConfig&)>& seconds = nullptr,
                    const std::function<bool()>& until = nullptr) {
  engine.SetWorkerOnline("w1", true);
  for (int round = 0; round < 2000 && engine.state() != JobState::kCompleted; ++round) {
    if (until && until()) return;
    StatusOr<std::optional<Assignment>> next = engine.NextAssignment("w1", 0);
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    const Assignment& a = **next;
    for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
      CurvePoint p;
      p.epoch = e;
      p.val_accuracy = accuracy(a.trial.config, e, a.trial.id);
      p.compute_s = seconds ? seconds(a.trial.config) : 1.0;
      StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, p);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      if (v->stop) break;
    }
    ASSERT_TRUE(
        engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0)
            .ok());
  }
}

TEST(Forecast, ATimeBudgetEndsTheJobWithWhatItHasAndNoTrialLeftWaiting) {
  // The slow starters reach the target at epoch 41, 1 s an epoch: a budget of 30 s in all
  // ends the job first, with trials paused by the forecast among those it stops.
  MemoryJournal journal;
  JobSpec spec = ForecastSpec(/*max_trials=*/10, /*target=*/0.8, /*lr_min=*/1e-4,
                              /*min_epochs=*/3, /*max_epochs=*/60);
  spec.time_budget_s = 30;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  for (int round = 0; round < 200; ++round) {
    StatusOr<std::optional<Assignment>> next = engine.NextAssignment("w1", 0);
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    const Assignment& a = **next;
    ASSERT_GT(a.max_train_s, 0.0);
    double trained = a.trial.train_s;
    for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
      CurvePoint p;
      p.epoch = e;
      p.val_accuracy = SyntheticAccuracy(a.trial.config, e, a.trial.id);
      p.compute_s = 1.0;
      StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, p);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      trained += 1.0;
      if (v->stop || ReachedSeconds(trained, a.max_train_s)) break;
    }
    ASSERT_TRUE(
        engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0)
            .ok());
  }
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 30.0);
  int by_budget = 0;
  for (const auto& [id, t] : journal.trials) {
    EXPECT_TRUE(IsTerminal(t.state)) << t.reason;
    EXPECT_FALSE(t.reached_target);
    by_budget += t.reason.find("time budget") != std::string::npos;
  }
  EXPECT_GE(by_budget, 2);  // the one running, and at least one that waited
}

TEST(Forecast, ASlowStarterThatWinsIsNotStoppedWhileTheFastStarterThatPlateausIs) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/10, /*target=*/0.8, /*lr_min=*/1e-4,
                                    /*min_epochs=*/3, /*max_epochs=*/60);
  JobEngine engine(Job(), spec, &journal);
  RunOnOneWorker(engine, SyntheticAccuracy);
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  int slow = 0, slow_reached = 0, fast = 0, fast_epochs = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.config.learning_rate >= 0.01) {
      ++fast;
      fast_epochs += t.epochs_done;
      EXPECT_FALSE(t.reached_target) << t.reason;
    } else {
      ++slow;
      if (t.reached_target) ++slow_reached;
    }
  }
  ASSERT_GT(slow, 0);
  ASSERT_GT(fast, 0);
  // A slow starter reached the target at epoch 41: nothing stopped it at chance level.
  EXPECT_GE(slow_reached, 1);
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_NEAR(*engine.IncumbentTta(), 41.0, 1.0);
  // The fast starters were stopped long before the 60-epoch limit.
  EXPECT_LT(fast_epochs, fast * 30) << fast << " fast starters trained " << fast_epochs;
  // Each trial the forecast stopped keeps what it predicted: a chance of winning under the
  // 1% floor (or none, once its training exceeded the incumbent's TTA), and the reason says
  // the same.
  int forecast_stopped = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.state != TrialState::kStopped || t.reason.rfind("forecast:", 0) != 0) continue;
    ++forecast_stopped;
    ASSERT_TRUE(t.forecast.has_value()) << t.reason;
    EXPECT_LT(t.forecast->p_win, 0.01) << t.reason;
    EXPECT_GE(t.forecast->p_reach, 0.0);
    EXPECT_LE(t.forecast->lo_s, t.forecast->tta_s);
    EXPECT_LE(t.forecast->tta_s, t.forecast->hi_s);
    char p_win[32];
    std::snprintf(p_win, sizeof(p_win), "= %.3f;", t.forecast->p_win);
    EXPECT_NE(t.reason.find(p_win), std::string::npos) << t.reason;
  }
  EXPECT_GT(forecast_stopped, 0);
}

// A late-target table in small: learning rates under 10^-2 never leave chance, those from
// 10^-2 to 10^-0.5 plateau at 0.4, and the rest reach 0.8 at epoch 32 or 33.
double FlatPlateauOrLateWin(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.003 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (c.learning_rate < 1e-2) return 0.1 + wobble;
  if (c.learning_rate < std::pow(10.0, -0.5)) return 0.4 - 0.3 * std::exp(-epoch / 2.0) + wobble;
  return 0.85 - 0.75 * std::exp(-epoch / 12.0) + wobble;
}

TEST(Forecast, TheSamplerObservesATrialStoppedAtChanceBelowThePlateaus) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/30, /*target=*/0.8, /*lr_min=*/1e-5,
                                    /*min_epochs=*/4, /*max_epochs=*/60);
  JobEngine engine(Job(), spec, &journal);
  RunOnOneWorker(engine, FlatPlateauOrLateWin);
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  std::map<int64_t, double> observed;  // the sampler's last observation of each trial
  for (const SamplerEvent& e : journal.sampler_events[Job().id]) {
    if (e.kind == SamplerEvent::Kind::kObserve) observed[e.trial_id] = e.observation.score;
  }
  double plateau_min = 1.0;
  for (const auto& [id, t] : journal.trials) {
    const double lr = t.config.learning_rate;
    if (lr >= 1e-2 && lr < std::pow(10.0, -0.5)) plateau_min = std::min(plateau_min, observed[id]);
  }
  // A trial the forecast stopped at chance after 28 epochs: the generous forecast that
  // ranks it among the job's trials still gives it a chance near 0.3 of taking off, and
  // so a score above the plateaus (0.4) that the sampler would learn too; but the job's
  // other flat curves sat at chance that long and never left it, and the sampler learns
  // that instead.
  int flat_stopped = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.config.learning_rate >= 1e-2 || !t.forecast.has_value()) continue;
    ++flat_stopped;
    std::printf("[ forecast ] stopped at chance after %d epochs: ranked by %.3f, observed %.3f\n",
                t.epochs_done, t.forecast->score, observed[id]);
    EXPECT_GT(t.forecast->score, plateau_min) << t.reason;
    EXPECT_LT(observed[id], plateau_min) << t.reason;
  }
  EXPECT_GE(flat_stopped, 1);
}

// On the same table, a trial too unlikely to win to go on, but not so unlikely as to be
// stopped, waits while new configurations are proposed, and the sampler observes it
// before it ends (it is observed again when it does); the late winners still win.
TEST(Forecast, ATrialUnlikelyToWinWaitsAndTheSamplerObservesItMeanwhile) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/30, /*target=*/0.8, /*lr_min=*/1e-5,
                                    /*min_epochs=*/4, /*max_epochs=*/60);
  JobEngine engine(Job(), spec, &journal);
  RunOnOneWorker(engine, FlatPlateauOrLateWin);
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  std::map<int64_t, int> observations;
  for (const SamplerEvent& e : journal.sampler_events[Job().id]) {
    if (e.kind == SamplerEvent::Kind::kObserve) ++observations[e.trial_id];
  }
  int waited = 0, late_reached = 0;
  for (const auto& [id, t] : journal.trials) {
    EXPECT_GE(observations[id], 1) << "trial " << t.number << " never observed";
    waited += observations[id] >= 2;
    late_reached += t.reached_target;
  }
  std::printf("[ forecast ] %d of %zu trials observed while they waited\n", waited,
              journal.trials.size());
  EXPECT_GE(waited, 1);
  EXPECT_GE(late_reached, 1);
}

// Curves that rise fast to a plateau just under a high target, as on MNIST at 0.95: each
// forecast stays unsure, so trials wait paused, neither stopped nor resumed. Only a learning
// rate near 10^-2.5 reaches the target.
double NearTargetAccuracy(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.003 * std::sin(13.0 * epoch + 7.0 * trial_id);
  const double plateau = 0.96 - 0.06 * std::abs(std::log10(c.learning_rate) + 2.5);
  return std::min(1.0, 0.1 + (plateau - 0.1) * (1.0 - std::exp(-epoch / 3.0)) + wobble);
}

TEST(Forecast, TheSamplerHasObservedHalfOfItsProposalsBeforeItProposesAgain) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/40, /*target=*/0.95, /*lr_min=*/1e-4,
                                    /*min_epochs=*/1, /*max_epochs=*/12);
  JobEngine engine(Job(), spec, &journal);
  RunOnOneWorker(engine, NearTargetAccuracy);
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  // Past TPE's random start (10 proposals), a proposal comes only once the trials observed
  // (ended) are at least half of those proposed.
  std::set<int64_t> observed;
  int proposals = 0, least_share_pct = 100;
  for (const SamplerEvent& e : journal.sampler_events[Job().id]) {
    if (e.kind == SamplerEvent::Kind::kObserve) {
      observed.insert(e.trial_id);
      continue;
    }
    if (proposals >= 10) {
      EXPECT_GE(2 * static_cast<int>(observed.size()), proposals)
          << "proposal " << proposals << " after " << observed.size() << " observed trials";
      least_share_pct =
          std::min(least_share_pct, 100 * static_cast<int>(observed.size()) / proposals);
    }
    ++proposals;
  }
  EXPECT_EQ(proposals, spec.max_trials);
  std::printf("[ forecast ] least share of proposals observed past the 10th: %d%%\n",
              least_share_pct);
}

// A short job's table: learning rates under 10^-1.5 never leave chance; the others learn at
// once and reach 0.8 at epoch 4.
double ChanceOrFastLearner(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.004 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (c.learning_rate < std::pow(10.0, -1.5)) return 0.1 + wobble;
  return 0.1 + 0.8 * (1.0 - std::exp(-epoch / 1.5)) + wobble;
}

// With segments of 1 epoch, a curve of 1 or 2 epochs is too short for the curve model, whose
// forecast is then the same at chance as for a learner. Ranked at its epoch instead, a trial
// at chance waits while configurations are left to propose, and the sampler meanwhile
// observes it by its accuracy; the learners go on and one reaches the target.
TEST(Forecast, WhileACurveIsTooShortToFitATrialAtChanceWaitsAndALearnerGoesOn) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/30, /*target=*/0.8, /*lr_min=*/1e-5,
                                    /*min_epochs=*/1, /*max_epochs=*/12);
  ASSERT_EQ(spec.asha.SegmentEpochs(), 1);
  ASSERT_EQ(CurveModel::FewestEpochsToFit(), 3);
  JobEngine engine(Job(), spec, &journal);
  std::set<int64_t> started;
  std::map<int64_t, int> proposals_before_second;  // trial at chance -> trials started then
  RunOnOneWorker(engine, [&](const TrialConfig& c, int epoch, int64_t id) {
    if (epoch == 1) started.insert(id);
    if (epoch == 2 && c.learning_rate < std::pow(10.0, -1.5)) {
      proposals_before_second[id] = static_cast<int>(started.size());
    }
    return ChanceOrFastLearner(c, epoch, id);
  });
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_NEAR(*engine.IncumbentTta(), 4.0, 1e-9);
  int at_chance = 0, early_second = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.config.learning_rate >= std::pow(10.0, -1.5)) continue;
    ++at_chance;
    auto it = proposals_before_second.find(id);
    early_second += it != proposals_before_second.end() && it->second < spec.max_trials;
  }
  std::printf(
      "[ forecast ] %d of %d trials at chance got a second epoch before the last "
      "proposal\n",
      early_second, at_chance);
  ASSERT_GE(at_chance, 10);
  EXPECT_LE(4 * early_second, at_chance);
  // Each trial at chance was first observed by its accuracy after one epoch.
  std::map<int64_t, double> first_score;
  for (const SamplerEvent& e : journal.sampler_events[Job().id]) {
    if (e.kind == SamplerEvent::Kind::kObserve)
      first_score.emplace(e.trial_id, e.observation.score);
  }
  for (const auto& [id, t] : journal.trials) {
    if (t.config.learning_rate >= std::pow(10.0, -1.5) || proposals_before_second.count(id)) {
      continue;
    }
    ASSERT_TRUE(first_score.count(id)) << "trial " << t.number << " never observed";
    EXPECT_NEAR(first_score[id], ChanceOrFastLearner(t.config, 1, id), 1e-9) << t.number;
  }
}

// Batch 64 trains an epoch in 0.1 s and never leaves chance; batches 16 and 32 train one in
// 1 s and reach 0.8 at epoch 9.
double LearnerOrFastAtChance(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.004 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (c.batch_size >= 64) return 0.1 + wobble;
  return 0.1 + 0.8 * (1.0 - std::exp(-epoch / 4.0)) + wobble;
}

// Before any trial reaches the target, a learner is measured against the best predicted
// time-to-accuracy of the others, and a trial at chance on 0.1 s epochs predicts, from the
// take-off prior, a median that no learner on 1 s epochs can beat. Half of that forecast
// never reaches the target, so it is no evidence against the learner: the learner is not
// stopped for good but reprieved (it waits until nothing is left to propose, across a
// controller restart), and then one reaches the target. Without the reprieve every
// learner was stopped after its first epoch, and no trial reached the target.
TEST(Forecast, AnUninformedForecastDoesNotStopALearnerForGood) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/20, /*target=*/0.8, /*lr_min=*/1e-4,
                                    /*min_epochs=*/1, /*max_epochs=*/12);
  const auto seconds = [](const TrialConfig& c) { return c.batch_size >= 64 ? 0.1 : 1.0; };
  const auto reprieved = [&] {
    for (const auto& [id, t] : journal.trials) {
      if (t.state == TrialState::kPaused && t.forecast.has_value()) return true;
    }
    return false;
  };
  {
    JobEngine engine(Job(), spec, &journal);
    RunOnOneWorker(engine, LearnerOrFastAtChance, seconds, reprieved);
    ASSERT_TRUE(reprieved()) << "no trial was reprieved";
  }
  int waiting = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.state != TrialState::kPaused || !t.forecast.has_value()) continue;
    ++waiting;
    EXPECT_LT(t.config.batch_size, 64) << "trial " << t.number;
    EXPECT_NE(t.reason.find("waits until nothing is left to propose"), std::string::npos)
        << t.reason;
    EXPECT_LT(t.forecast->p_win, 0.01);
  }
  StatusOr<std::unique_ptr<JobEngine>> restored = JobEngine::Restore(Job(), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  RunOnOneWorker(**restored, LearnerOrFastAtChance, seconds);
  ASSERT_EQ((*restored)->state(), JobState::kCompleted);
  int learners = 0, against_the_median = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.config.batch_size >= 64) continue;
    ++learners;
    against_the_median += t.state == TrialState::kStopped &&
                          t.reason.find("best predicted trial") != std::string::npos;
  }
  std::printf(
      "[ forecast ] %d learners, %d reprieved before the restart, %d stopped against "
      "the best predicted trial\n",
      learners, waiting, against_the_median);
  ASSERT_GE(learners, 2);
  EXPECT_EQ(against_the_median, 0);
  ASSERT_TRUE((*restored)->IncumbentTta().has_value());
  EXPECT_NEAR(*(*restored)->IncumbentTta(), 9.0, 1e-9);
}

// Learning rates in [10^-2.5, 10^-1.5) rise slowly and reach 0.8 at epoch 32; the others never
// leave chance (their accuracy still moves, so none is stuck).
bool LateLearner(const TrialConfig& c) {
  return c.learning_rate >= std::pow(10.0, -2.5) && c.learning_rate < std::pow(10.0, -1.5);
}
double ChanceOrLateLearner(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.004 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (!LateLearner(c)) return 0.1 + wobble;
  return 0.1 + 0.75 * (1.0 - std::exp(-epoch / 11.5)) + wobble;
}

// The trials the sampler has observed so far.
std::set<int64_t> ObservedTrials(MemoryJournal& journal) {
  std::set<int64_t> observed;
  for (const SamplerEvent& e : journal.sampler_events[Job().id]) {
    if (e.kind == SamplerEvent::Kind::kObserve) observed.insert(e.trial_id);
  }
  return observed;
}

// Before any trial reaches the target, a trial still at chance past sqrt(max_epochs) (the
// take-off prior's median, 8 epochs on a 60-epoch job) waits while configurations are left
// to propose, observed by the sampler. Without the wait the take-off prior kept such trials
// training, one for 44 epochs before the last proposal here. (The wobble, at most 0.008,
// stays within 3 noise floors, so the curves never count as having moved.)
TEST(Forecast, WithNoTrialAtTheTargetATrialStillAtChanceWaitsPastTheTakeOffPriorsMedian) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/24, /*target=*/0.8, /*lr_min=*/1e-5,
                                    /*min_epochs=*/4, /*max_epochs=*/60);
  ASSERT_EQ(spec.asha.SegmentEpochs(), 4);
  JobEngine engine(Job(), spec, &journal);
  int started = 0;
  bool reached = false;
  std::map<int64_t, int> epochs_before_last;  // trial at chance -> epochs trained meanwhile
  int waiting_at_last = 0;
  std::vector<std::string> faults;
  RunOnOneWorker(engine, [&](const TrialConfig& c, int epoch, int64_t id) {
    if (epoch == 1 && ++started == spec.max_trials && !reached) {
      // The last proposal: each trial at chance is still paused, and each that waits at 8
      // epochs has been observed.
      const std::set<int64_t> observed = ObservedTrials(journal);
      for (const auto& [tid, t] : journal.trials) {
        if (LateLearner(t.config) || tid == id) continue;
        const std::string name = "trial " + std::to_string(t.number);
        if (t.state != TrialState::kPaused) faults.push_back(name + " ended: " + t.reason);
        if (t.epochs_done < 8) continue;
        ++waiting_at_last;
        if (!observed.count(tid)) faults.push_back(name + " waits unobserved");
      }
    }
    const double accuracy = ChanceOrLateLearner(c, epoch, id);
    if (!LateLearner(c) && started < spec.max_trials && !reached) {
      epochs_before_last[id] = epoch;
    }
    reached = reached || accuracy >= spec.target_accuracy;
    return accuracy;
  });
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  ASSERT_GE(epochs_before_last.size(), 5u);
  int most = 0;
  for (const auto& [id, epochs] : epochs_before_last) most = std::max(most, epochs);
  std::printf(
      "[ forecast ] %zu trials at chance, at most %d epochs each before the last proposal, "
      "%d waiting then\n",
      epochs_before_last.size(), most, waiting_at_last);
  EXPECT_LE(most, 8);
  EXPECT_GE(waiting_at_last, 3);
  EXPECT_TRUE(faults.empty()) << faults.front();
}

// Learning rates of 10^-4 or more rise at once to a plateau of 0.7; the others level off at
// 0.35 over their first segment (4 epochs), then climb to 0.8 by epoch 9.
double PlateauOrLateClimb(const TrialConfig& c, int epoch, int64_t trial_id) {
  const double wobble = 0.003 * std::sin(13.0 * epoch + 7.0 * trial_id);
  if (c.learning_rate >= 1e-4) return 0.7 - 0.6 * std::exp(-0.8 * epoch) + wobble;
  if (epoch <= 4) return 0.1 + 0.25 * (1.0 - std::exp(-3.0 * (epoch - 1))) + wobble;
  return std::min(0.9, 0.35 + 0.09 * (epoch - 4)) + wobble;
}

// Before any trial reaches the target, a trial's forecast after one segment rests on a fit of
// a few epochs, and one that levels off there says it never reaches the target. Such a trial
// is reprieved, not stopped: paused and observed by the sampler, it waits until nothing is
// left to propose. Without the reprieve no trial here reached the target.
TEST(Forecast, AfterOneSegmentATrialBelowTheBarIsReprievedNotStopped) {
  MemoryJournal journal;
  const JobSpec spec = ForecastSpec(/*max_trials=*/16, /*target=*/0.8, /*lr_min=*/1e-5,
                                    /*min_epochs=*/4, /*max_epochs=*/40);
  ASSERT_EQ(spec.asha.SegmentEpochs(), 4);
  JobEngine engine(Job(), spec, &journal);
  int started = 0;
  std::set<int64_t> reprieved;
  std::vector<std::string> faults;
  RunOnOneWorker(engine, [&](const TrialConfig& c, int epoch, int64_t id) {
    if (epoch == 1) ++started;
    const std::set<int64_t> observed = ObservedTrials(journal);
    for (const auto& [tid, t] : journal.trials) {
      if (t.state == TrialState::kPaused && t.epochs_done == 4 &&
          t.reason.find("after one segment (4 epochs): waits until nothing is left to propose") !=
              std::string::npos) {
        reprieved.insert(tid);
      }
      if (!reprieved.count(tid) || started >= spec.max_trials) continue;
      // While configurations are left to propose, a reprieved trial is neither stopped nor
      // resumed, and the sampler has observed it.
      const std::string name = "trial " + std::to_string(t.number);
      if (t.state != TrialState::kPaused) faults.push_back(name + " ended: " + t.reason);
      if (tid == id) faults.push_back(name + " resumed at epoch " + std::to_string(epoch));
      if (!observed.count(tid)) faults.push_back(name + " waits unobserved");
    }
    return PlateauOrLateClimb(c, epoch, id);
  });
  ASSERT_EQ(engine.state(), JobState::kCompleted);
  std::printf("[ forecast ] %zu trials reprieved after one segment\n", reprieved.size());
  EXPECT_GE(reprieved.size(), 1u);
  EXPECT_TRUE(faults.empty()) << faults.front();
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_NEAR(*engine.IncumbentTta(), 9.0, 1.0 + 1e-9);
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

// A placement of one worker whose seconds count x `scale` on the job's reference class.
Placement ScaledPlacement(const std::string& worker, const JobSpec& spec, double scale) {
  Placement p;
  p.workers = {worker};
  for (Optimizer o : spec.space.optimizers) {
    for (int b : spec.space.batch_sizes) p.time_scale[o][b] = scale;
  }
  return p;
}

TEST(Placement, ATrialsTimeScaleIsItsOptimizersAtItsBatchOrOne) {
  Placement p;
  p.time_scale[Optimizer::kSgd] = {{32, 4.0}, {64, std::nan("")}};
  p.time_scale[Optimizer::kAdam] = {{32, 3.5}};
  EXPECT_DOUBLE_EQ(p.TimeScaleOf({32, 0.1, Optimizer::kSgd}), 4.0);
  EXPECT_DOUBLE_EQ(p.TimeScaleOf({32, 0.1, Optimizer::kAdam}), 3.5);
  EXPECT_DOUBLE_EQ(p.TimeScaleOf({64, 0.1, Optimizer::kSgd}), 1.0);   // not finite
  EXPECT_DOUBLE_EQ(p.TimeScaleOf({64, 0.1, Optimizer::kAdam}), 1.0);  // none at 64
  EXPECT_DOUBLE_EQ(Placement{}.TimeScaleOf({32, 0.1, Optimizer::kSgd}), 1.0);
}

TEST(JobEngine, SecondsCountOnTheReferenceClassWhicheverDeviceTrains) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(3);
  spec.reference_class = "edge";
  spec.asha = AshaSettings::InSeconds(/*min_seconds=*/2.0, /*reduction_factor=*/3,
                                      /*num_rungs=*/2, /*max_epochs=*/20);
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("edge-1", true);
  engine.SetWorkerOnline("cloud-1", true);
  // A cloud step takes a quarter of an edge step: its 0.25 s epochs count 1 s each.
  Placement on_cloud = ScaledPlacement("cloud-1", spec, 4.0);
  on_cloud.device_class = "cloud";
  StatusOr<std::optional<Assignment>> cloud = engine.NextAssignment(on_cloud, 0);
  ASSERT_TRUE(cloud.ok() && cloud->has_value());
  EXPECT_DOUBLE_EQ((*cloud)->max_train_s, 2.0);                       // the rung, edge seconds
  EXPECT_DOUBLE_EQ(MakeSegmentSpec(**cloud, spec).max_train_s, 0.5);  // the cloud's own
  EXPECT_EQ(RunAsWorker(engine, **cloud, spec, 0.5, 0.25), 2);
  const int64_t cloud_id = (*cloud)->trial.id;
  EXPECT_DOUBLE_EQ(journal.trials[cloud_id].train_s, 2.0);
  ASSERT_EQ(journal.points.size(), 2u);
  const CurvePoint& first = journal.points.at({cloud_id, 1});
  EXPECT_DOUBLE_EQ(first.compute_s, 0.25);  // as measured
  EXPECT_DOUBLE_EQ(first.reference_s, 1.0);
  EXPECT_EQ(first.device_class, "cloud");  // the placement's, the controller's word
  // On the edge itself, seconds count as measured: 1 s epochs, 2 of them in the rung.
  for (double accuracy : {0.4, 0.3}) {
    StatusOr<std::optional<Assignment>> edge =
        engine.NextAssignment(ScaledPlacement("edge-1", spec, 1.0), 0);
    ASSERT_TRUE(edge.ok() && edge->has_value());
    EXPECT_EQ(RunAsWorker(engine, **edge, spec, accuracy, 1.0), 2);
  }
  // A rebuilt engine counts the stored edge seconds, not the cloud's: the cloud trial,
  // best of the rung, resumes with 2 s done of the next rung's 6 s.
  StatusOr<std::unique_ptr<JobEngine>> restored = JobEngine::Restore(Job(), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  (*restored)->SetWorkerOnline("cloud-1", true);
  StatusOr<std::optional<Assignment>> more =
      (*restored)->NextAssignment(ScaledPlacement("cloud-1", spec, 4.0), 0);
  ASSERT_TRUE(more.ok() && more->has_value());
  if ((*more)->trial.id == cloud_id) {
    EXPECT_DOUBLE_EQ((*more)->trial.train_s, 2.0);
    EXPECT_DOUBLE_EQ((*more)->max_train_s, 6.0);
    const SegmentSpec s = MakeSegmentSpec(**more, spec);
    EXPECT_DOUBLE_EQ(s.train_s_before, 0.5);
    EXPECT_DOUBLE_EQ(s.max_train_s, 1.5);
  } else {
    ADD_FAILURE() << "expected the cloud trial to be promoted, got trial " << (*more)->trial.id;
  }
}

TEST(TimeBudget, CountsSecondsOnTheReferenceClass) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(6);
  spec.reference_class = "edge";
  spec.time_budget_s = 3.0;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true);
  // A cloud step takes a quarter of an edge step: its 0.25 s epochs count 1 s each, so the
  // budget's 3 edge seconds are 3 of its epochs, 0.75 s of its own.
  Placement on_cloud = ScaledPlacement("cloud-1", spec, 4.0);
  on_cloud.device_class = "cloud";
  int epochs = 0;
  for (int round = 0; round < 10; ++round) {
    StatusOr<std::optional<Assignment>> next = engine.NextAssignment(on_cloud, 0);
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    if (round == 0) {
      EXPECT_DOUBLE_EQ((*next)->max_train_s, 3.0);                        // edge seconds
      EXPECT_DOUBLE_EQ(MakeSegmentSpec(**next, spec).max_train_s, 0.75);  // the cloud's own
    }
    epochs += RunAsWorker(engine, **next, spec, 0.5, 0.25);
  }
  EXPECT_EQ(epochs, 3);
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 3.0);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

TEST(JobEngine, TheBoundComparesSecondsOnTheReferenceClass) {
  MemoryJournal journal;
  JobSpec spec = SmallSpec(3);
  spec.reference_class = "edge";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/12, /*reduction_factor=*/3, /*num_rungs=*/1);
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("edge-1", true);
  engine.SetWorkerOnline("cloud-1", true);
  // The edge reaches the target at its epoch 3: 3 s of edge time.
  StatusOr<std::optional<Assignment>> edge =
      engine.NextAssignment(ScaledPlacement("edge-1", spec, 1.0), 0);
  ASSERT_TRUE(edge.ok() && edge->has_value());
  ASSERT_TRUE(engine.OnEpoch((*edge)->trial.id, Epoch(1, 0.5, 1.0)).ok());
  ASSERT_TRUE(engine.OnEpoch((*edge)->trial.id, Epoch(2, 0.6, 1.0)).ok());
  ASSERT_TRUE(engine.OnEpoch((*edge)->trial.id, Epoch(3, 0.95, 1.0)).ok());
  ASSERT_TRUE(engine
                  .OnSegmentEnded(
                      {(*edge)->trial.id, (*edge)->trial.attempt, SegmentStatus::kCompleted, ""}, 0)
                  .ok());
  ASSERT_EQ(engine.IncumbentTta(), 3.0);
  // A cloud trial's 0.25 s epochs count 1 s each: it is out of the race after 3 of them,
  // not after the 12 its raw seconds would allow.
  StatusOr<std::optional<Assignment>> cloud =
      engine.NextAssignment(ScaledPlacement("cloud-1", spec, 4.0), 0);
  ASSERT_TRUE(cloud.ok() && cloud->has_value());
  EXPECT_DOUBLE_EQ(MakeSegmentSpec(**cloud, spec).max_train_s, 0.75);
  EXPECT_EQ(RunAsWorker(engine, **cloud, spec, 0.5, 0.25), 3);
  EXPECT_EQ(journal.trials[(*cloud)->trial.id].state, TrialState::kStopped);
  EXPECT_NE(journal.trials[(*cloud)->trial.id].reason.find("bound"), std::string::npos);
}

}  // namespace
}  // namespace topotune

namespace topotune {
namespace {

Placement ClassPlacement(const std::string& worker, const std::string& device_class,
                         const JobSpec& spec, double scale) {
  Placement p = ScaledPlacement(worker, spec, scale);
  p.device_class = device_class;
  return p;
}

// Trains `a` for epochs of `seconds` at `accuracy[i]` until the verdict says stop or its
// target_epochs; then ends the segment.
void RunCurve(JobEngine& engine, const Assignment& a, const std::vector<double>& accuracy,
              double seconds) {
  for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
    const double acc = accuracy[std::min(accuracy.size(), static_cast<size_t>(e)) - 1];
    StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, Epoch(e, acc, seconds));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    if (v->stop) break;
  }
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
}

JobSpec ConfirmingSpec() {
  JobSpec spec = SmallSpec(2);
  spec.reference_class = "edge";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/4, /*reduction_factor=*/3, /*num_rungs=*/1);
  return spec;
}

// Two trials on the cloud reach the target, the second sooner (so the first bound does
// not stop it); their seconds count on the edge x 4: 3.0 s and 2.0 s.
std::vector<Assignment> TwoCloudWinners(JobEngine& engine, const JobSpec& spec) {
  std::vector<Assignment> done;
  for (int epochs_to_target : {3, 2}) {
    StatusOr<std::optional<Assignment>> a =
        engine.NextAssignment(ClassPlacement("cloud-1", "cloud", spec, 4.0), 0);
    EXPECT_TRUE(a.ok() && a->has_value());
    if (!a.ok() || !a->has_value()) return done;
    std::vector<double> curve(static_cast<size_t>(epochs_to_target), 0.5);
    curve.back() = 0.95;
    RunCurve(engine, **a, curve, 0.25);
    done.push_back(**a);
  }
  return done;
}

TEST(JobEngine, TheBestTrialsCountedFromAnotherClassAreConfirmedOnTheReferenceClass) {
  MemoryJournal journal;
  const JobSpec spec = ConfirmingSpec();
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  engine.SetWorkerOnline("edge-1", true, "edge");
  const std::vector<Assignment> winners = TwoCloudWinners(engine, spec);
  ASSERT_EQ(winners.size(), 2u);
  EXPECT_DOUBLE_EQ(journal.trials[winners[1].trial.id].tta_s, 2.0);  // 2 x 0.25 s x 4
  // The sampler's trials are spent, but the edge is online: the job waits for it, and the
  // cloud gets nothing.
  EXPECT_EQ(engine.state(), JobState::kRunning);
  StatusOr<std::optional<Assignment>> none =
      engine.NextAssignment(ClassPlacement("cloud-1", "cloud", spec, 4.0), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  StatusOr<std::optional<Assignment>> first =
      engine.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
  ASSERT_TRUE(first.ok() && first->has_value());
  const Assignment c0 = **first;
  EXPECT_EQ(c0.trial.confirms, winners[1].trial.number);  // the best first
  EXPECT_EQ(c0.trial.number, spec.max_trials);
  EXPECT_EQ(c0.trial.config.batch_size, winners[1].trial.config.batch_size);
  EXPECT_EQ(c0.trial.config.learning_rate, winners[1].trial.config.learning_rate);
  EXPECT_EQ(c0.trial.config.optimizer, winners[1].trial.config.optimizer);
  EXPECT_EQ(c0.trial.seed, winners[1].trial.seed);
  EXPECT_DOUBLE_EQ(c0.max_train_s, JobEngine::kConfirmLimit * 2.0);

  // A controller restart cuts it; the restored engine gives it back to the edge only.
  ASSERT_TRUE(engine.OnEpoch(c0.trial.id, Epoch(1, 0.5, 1.2)).ok());
  StatusOr<std::unique_ptr<JobEngine>> restored = JobEngine::Restore(Job(), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  JobEngine& again = **restored;
  again.SetWorkerOnline("cloud-1", true, "cloud");
  again.SetWorkerOnline("edge-1", true, "edge");
  none = again.NextAssignment(ClassPlacement("cloud-1", "cloud", spec, 4.0), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  StatusOr<std::optional<Assignment>> rerun =
      again.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
  ASSERT_TRUE(rerun.ok() && rerun->has_value());
  EXPECT_EQ((*rerun)->trial.id, c0.trial.id);
  EXPECT_EQ((*rerun)->start_epoch, 0);
  // Measured on the edge: 2 epochs of 1.2 s, against the 2.0 s counted from the cloud.
  RunCurve(again, **rerun, {0.5, 0.95}, 1.2);
  const TrialRecord& measured = journal.trials[c0.trial.id];
  EXPECT_EQ(measured.state, TrialState::kCompleted);
  EXPECT_DOUBLE_EQ(measured.tta_s, 2.4);
  EXPECT_NE(measured.reason.find("measured TTA 2.40 s (counted 2.00 s)"), std::string::npos)
      << measured.reason;

  // The other winner's confirmation does not reach the target within its epochs.
  StatusOr<std::optional<Assignment>> second =
      again.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->trial.confirms, winners[0].trial.number);
  EXPECT_DOUBLE_EQ((*second)->max_train_s, JobEngine::kConfirmLimit * 3.0);
  RunCurve(again, **second, {0.5}, 1.0);
  EXPECT_EQ(journal.trials[(*second)->trial.id].state, TrialState::kStopped);
  EXPECT_EQ(again.state(), JobState::kCompleted);
  // Neither went through the sampler: its history holds the two proposals alone.
  const std::vector<SamplerEvent>& events = journal.sampler_events[Job().id];
  EXPECT_EQ(
      std::count_if(events.begin(), events.end(),
                    [](const SamplerEvent& e) { return e.kind == SamplerEvent::Kind::kPropose; }),
      2);
}

// The two best counts are confirmed and the edge measures both about twice as slow as
// counted (a probe that read the cloud too slow, so every cloud trial counted too fast). A
// third trial's count, 3.2 s, is then below the best the edge measured, 3.8 s: it is
// confirmed too, and its 3.6 s measured is the answer. Without it the report's best would
// be the 3.2 s counted, which nothing measured.
TEST(JobEngine, ACountBelowWhatTheConfirmationsMeasuredIsConfirmedToo) {
  MemoryJournal journal;
  JobSpec spec = ConfirmingSpec();
  spec.max_trials = 3;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  engine.SetWorkerOnline("edge-1", true, "edge");
  // Counted on the edge (x 4): 4 epochs of 0.2 s = 3.2 s, 3 of 0.25 s = 3.0 s, 2 of 0.25 s
  // = 2.0 s (each under the bound the one before set).
  std::vector<Assignment> cloud;
  for (const auto& [epochs, seconds] :
       std::vector<std::pair<int, double>>{{4, 0.2}, {3, 0.25}, {2, 0.25}}) {
    StatusOr<std::optional<Assignment>> a =
        engine.NextAssignment(ClassPlacement("cloud-1", "cloud", spec, 4.0), 0);
    ASSERT_TRUE(a.ok() && a->has_value());
    std::vector<double> curve(static_cast<size_t>(epochs), 0.5);
    curve.back() = 0.95;
    RunCurve(engine, **a, curve, seconds);
    cloud.push_back(**a);
  }
  ASSERT_DOUBLE_EQ(journal.trials[cloud[0].trial.id].tta_s, 3.2);
  ASSERT_DOUBLE_EQ(journal.trials[cloud[1].trial.id].tta_s, 3.0);
  ASSERT_DOUBLE_EQ(journal.trials[cloud[2].trial.id].tta_s, 2.0);

  // Edge epochs of 1.9 s: the 2.0 s count measures 3.8 s, the 3.0 s one 5.7 s.
  const auto confirm_next = [&](int confirms, const std::vector<double>& curve, double seconds) {
    StatusOr<std::optional<Assignment>> c =
        engine.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
    ASSERT_TRUE(c.ok() && c->has_value());
    EXPECT_EQ((*c)->trial.confirms, confirms);
    RunCurve(engine, **c, curve, seconds);
  };
  confirm_next(cloud[2].trial.number, {0.5, 0.95}, 1.9);
  EXPECT_EQ(engine.state(), JobState::kRunning);
  confirm_next(cloud[1].trial.number, {0.5, 0.5, 0.95}, 1.9);
  EXPECT_EQ(engine.BestMeasuredTta(), 3.8);
  // The 3.2 s count is below 3.8 s measured: the job goes on to confirm it.
  EXPECT_EQ(engine.state(), JobState::kRunning);
  StatusOr<std::optional<Assignment>> none =
      engine.NextAssignment(ClassPlacement("cloud-1", "cloud", spec, 4.0), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  confirm_next(cloud[0].trial.number, {0.5, 0.5, 0.5, 0.95}, 0.9);
  EXPECT_EQ(engine.state(), JobState::kCompleted);

  std::vector<TrialRecord> trials;
  for (const auto& [id, t] : journal.trials) trials.push_back(t);
  ASSERT_EQ(trials.size(), 6u);
  const Report r = BuildReport(Job(), spec, trials, {});
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->confirms, cloud[0].trial.number);
  EXPECT_DOUBLE_EQ(r.best->tta_s, 3.6);
}

TEST(TimeBudget, AConfirmationStartsOnlyWhereTheBudgetLeftCoversItsLimit) {
  // The two cloud winners spend 5 counted seconds; confirming the best (2.0 s counted)
  // may take twice that, 4.0 s, and the other 6.0 s.
  for (double budget : {8.0, 9.5}) {
    SCOPED_TRACE(budget);
    MemoryJournal journal;
    JobSpec spec = ConfirmingSpec();
    spec.time_budget_s = budget;
    JobEngine engine(Job(), spec, &journal);
    engine.SetWorkerOnline("cloud-1", true, "cloud");
    engine.SetWorkerOnline("edge-1", true, "edge");
    ASSERT_EQ(TwoCloudWinners(engine, spec).size(), 2u);
    StatusOr<std::optional<Assignment>> c =
        engine.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
    ASSERT_TRUE(c.ok());
    if (budget == 8.0) {
      // 3 s left: neither fits, and the job does not wait for them.
      EXPECT_FALSE(c->has_value());
      EXPECT_EQ(engine.state(), JobState::kCompleted);
    } else {
      // 4.5 s left: the best's confirmation fits, and is sent its own limit.
      ASSERT_TRUE(c->has_value());
      EXPECT_DOUBLE_EQ((*c)->max_train_s, JobEngine::kConfirmLimit * 2.0);
    }
  }
}

TEST(TimeBudget, AConfirmationCutWhereTheBudgetLeftNoLongerCoversItIsNotRerun) {
  MemoryJournal journal;
  JobSpec spec = ConfirmingSpec();
  spec.time_budget_s = 9.5;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  engine.SetWorkerOnline("edge-1", true, "edge");
  engine.SetWorkerOnline("edge-2", true, "edge");
  ASSERT_EQ(TwoCloudWinners(engine, spec).size(), 2u);  // 5 s spent
  StatusOr<std::optional<Assignment>> c =
      engine.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_DOUBLE_EQ((*c)->max_train_s, 4.0);  // fits the 4.5 s left
  ASSERT_TRUE(engine.OnEpoch((*c)->trial.id, Epoch(1, 0.5, 1.5)).ok());
  ASSERT_TRUE(engine.OnEpoch((*c)->trial.id, Epoch(2, 0.5, 1.5)).ok());
  // Its worker is lost: its 3 s stay spent, and the 1.5 s left do not cover a rerun.
  ASSERT_TRUE(engine.OnWorkerLost("edge-1", 0).ok());
  EXPECT_DOUBLE_EQ(engine.SpentSeconds(), 8.0);
  StatusOr<std::optional<Assignment>> rerun =
      engine.NextAssignment(ClassPlacement("edge-2", "edge", spec, 1.0), 0);
  ASSERT_TRUE(rerun.ok());
  EXPECT_FALSE(rerun->has_value());
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  const TrialRecord& cut = journal.trials[(*c)->trial.id];
  EXPECT_EQ(cut.state, TrialState::kStopped);
  EXPECT_NE(cut.reason.find("1.50 s left of the job's 9.50 s do not cover a rerun"),
            std::string::npos)
      << cut.reason;
}

TEST(JobEngine, AConfirmationNoReferenceWorkerCanHoldDoesNotKeepTheJobOpen) {
  MemoryJournal journal;
  const JobSpec spec = ConfirmingSpec();
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  engine.SetWorkerOnline("edge-1", true, "edge");
  ASSERT_EQ(TwoCloudWinners(engine, spec).size(), 2u);
  EXPECT_EQ(engine.state(), JobState::kRunning);  // the edge has not said what it holds
  Placement small = ClassPlacement("edge-1", "edge", spec, 1.0);
  small.max_batch_size = 8;  // below every batch size of the space
  StatusOr<std::optional<Assignment>> none = engine.NextAssignment(small, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

// One edge device cannot measure 4 of them data-parallel: with that target, nothing is
// confirmed though an edge worker is online.
TEST(JobEngine, ADataParallelTargetIsNotConfirmedOnOneDeviceOfItsClass) {
  MemoryJournal journal;
  JobSpec spec = ConfirmingSpec();
  spec.reference_target.kind = Target::Kind::kDataParallel;
  spec.reference_target.device_class = spec.reference_class;
  spec.reference_target.devices = 4;
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  engine.SetWorkerOnline("edge-1", true, "edge");
  ASSERT_EQ(TwoCloudWinners(engine, spec).size(), 2u);
  StatusOr<std::optional<Assignment>> none =
      engine.NextAssignment(ClassPlacement("edge-1", "edge", spec, 1.0), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_EQ(journal.trials.size(), 2u);
}

TEST(JobEngine, WithoutAWorkerOfTheReferenceClassTheJobEndsUnconfirmed) {
  MemoryJournal journal;
  const JobSpec spec = ConfirmingSpec();
  JobEngine engine(Job(), spec, &journal);
  engine.SetWorkerOnline("cloud-1", true, "cloud");
  ASSERT_EQ(TwoCloudWinners(engine, spec).size(), 2u);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  EXPECT_EQ(journal.trials.size(), 2u);
}

}  // namespace
}  // namespace topotune
