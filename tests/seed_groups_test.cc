// Reruns on other seeds (tuner/seed_groups.h): a job names a configuration by its mean
// time-to-accuracy over seeds, not by one lucky seed.
#include "tuner/seed_groups.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <vector>

#include "tests/memory_journal.h"
#include "tuner/job_engine.h"
#include "tuner/report.h"

namespace topotune {
namespace {

TrialRecord SeedRun(int number, int confirms, uint64_t seed, bool reached, double tta_s,
                    TrialState state = TrialState::kCompleted) {
  TrialRecord t;
  t.id = number + 1;
  t.number = number;
  t.confirms = confirms;
  t.seed = seed;
  t.state = state;
  t.reached_target = reached;
  t.tta_s = reached ? tta_s : 0.0;
  t.train_s = tta_s;
  t.epochs_done = 1;
  return t;
}

std::vector<const TrialRecord*> Pointers(const std::vector<TrialRecord>& trials) {
  std::vector<const TrialRecord*> p;
  for (const TrialRecord& t : trials) p.push_back(&t);
  return p;
}

TEST(SeedGroups, TheLeastMeanIsNamedNotTheLeastSingleRun) {
  // Trial 0 reached in 1 s on its seed and in 5 and 6 s on the next two (mean 4); trial 1 in
  // 3 s on each of its three.
  const std::vector<TrialRecord> trials = {
      SeedRun(0, -1, 100, true, 1.0), SeedRun(1, -1, 200, true, 3.0),
      SeedRun(10, 0, 101, true, 5.0), SeedRun(11, 0, 102, true, 6.0),
      SeedRun(12, 1, 201, true, 3.0), SeedRun(13, 1, 202, true, 3.0)};
  const std::map<int, SeedGroup> groups = GroupBySeed(Pointers(trials));
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups.at(0).runs, 3);
  EXPECT_DOUBLE_EQ(groups.at(0).MeanTta(), 4.0);
  const SeedGroup* named = NamedGroup(groups, 3);
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->first->number, 1);
  EXPECT_DOUBLE_EQ(named->MeanTta(), 3.0);
  EXPECT_EQ(named->tta_s, (std::vector<double>{3.0, 3.0, 3.0}));
}

TEST(SeedGroups, AGroupIsNotNamedWhileARerunRunsOrOnceOneMissedTheTarget) {
  std::vector<TrialRecord> trials = {SeedRun(0, -1, 100, true, 1.0), SeedRun(10, 0, 101, true, 1.5),
                                     SeedRun(11, 0, 102, false, 0.5, TrialState::kRunning)};
  EXPECT_EQ(NamedGroup(GroupBySeed(Pointers(trials)), 3), nullptr);  // running
  // Trained to its cap without reaching the target: a miss.
  trials[2] = SeedRun(11, 0, 102, false, 2.0, TrialState::kCompleted);
  const std::map<int, SeedGroup> missed = GroupBySeed(Pointers(trials));
  EXPECT_TRUE(missed.at(0).missed);
  EXPECT_EQ(NamedGroup(missed, 3), nullptr);
  // Stopped by a cancel before it measured anything: not a miss, but the group cannot
  // settle.
  trials[2] = SeedRun(11, 0, 102, false, 0.5, TrialState::kStopped);
  const std::map<int, SeedGroup> cut_short = GroupBySeed(Pointers(trials));
  EXPECT_FALSE(cut_short.at(0).missed);
  EXPECT_TRUE(cut_short.at(0).incomplete);
  EXPECT_EQ(NamedGroup(cut_short, 3), nullptr);
  trials.pop_back();  // two runs of three
  EXPECT_EQ(NamedGroup(GroupBySeed(Pointers(trials)), 3), nullptr);
  EXPECT_NE(NamedGroup(GroupBySeed(Pointers(trials)), 2), nullptr);
}

TEST(SeedGroups, ARepeatedCurveSettlesTheGroupWithTheRunsItHas) {
  std::vector<TrialRecord> trials = {SeedRun(0, -1, 100, true, 2.0),
                                     SeedRun(10, 0, 101, false, 0.6, TrialState::kStopped)};
  trials[1].repeats = 0;
  const std::map<int, SeedGroup> groups = GroupBySeed(Pointers(trials));
  EXPECT_TRUE(groups.at(0).seed_free);
  EXPECT_FALSE(groups.at(0).missed);
  const SeedGroup* named = NamedGroup(groups, 3);
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->runs, 1);
  EXPECT_DOUBLE_EQ(named->MeanTta(), 2.0);
}

TEST(SeedGroups, AConfirmationOnTheSameSeedIsNotARerun) {
  const std::vector<TrialRecord> trials = {SeedRun(0, -1, 100, true, 2.0),
                                           SeedRun(10, 0, 100, true, 9.0)};
  EXPECT_FALSE(IsRerunOf(trials[1], trials[0]));
  const std::map<int, SeedGroup> groups = GroupBySeed(Pointers(trials));
  EXPECT_TRUE(groups.at(0).reruns.empty());
  const SeedGroup* named = NamedGroup(groups, 1);
  ASSERT_NE(named, nullptr);
  EXPECT_DOUBLE_EQ(named->MeanTta(), 2.0);  // the confirmation's 9 s is not in its mean
}

JobSpec SeedsSpec(int incumbent_seeds) {
  JobSpec spec;
  spec.model = "lenet";
  spec.algorithm = "forecast";
  spec.space.batch_sizes = {16, 32, 64};
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.space.lr_min = 1e-3;
  spec.space.lr_max = 1.0;
  spec.target_accuracy = 0.8;
  spec.max_trials = 12;
  spec.asha.rungless = true;
  spec.asha.num_rungs = 1;
  spec.asha.min_epochs = 1;
  spec.asha.max_epochs = 30;
  spec.seed = 5;
  spec.incumbent_seeds = incumbent_seeds;
  return spec;
}

using Accuracy = std::function<double(const TrialRecord&, int)>;
using Seconds = std::function<double(const TrialRecord&)>;

// Runs the job to its end on one worker, every epoch of seconds(trial) (1 s without it) at
// accuracy(trial, epoch).
void RunJob(JobEngine& engine, const Accuracy& accuracy, const Seconds& seconds = nullptr) {
  engine.SetWorkerOnline("w1", true);
  for (int round = 0; round < 2000 && engine.state() != JobState::kCompleted; ++round) {
    StatusOr<std::optional<Assignment>> next = engine.NextAssignment("w1", 0);
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    const Assignment& a = **next;
    for (int e = a.start_epoch + 1; e <= a.trial.target_epochs; ++e) {
      CurvePoint p;
      p.epoch = e;
      p.val_accuracy = accuracy(a.trial, e);
      p.compute_s = seconds ? seconds(a.trial) : 1.0;
      p.wall_s = p.compute_s;
      StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, p);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      if (v->stop) break;
    }
    ASSERT_TRUE(
        engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0)
            .ok());
  }
  ASSERT_EQ(engine.state(), JobState::kCompleted);
}

Report ReportOf(MemoryJournal& journal, const JobSpec& spec) {
  std::vector<TrialRecord> trials;
  for (const auto& [id, t] : journal.trials) trials.push_back(t);
  std::vector<CurvePoint> points;
  for (const auto& [key, p] : journal.points) points.push_back(p);
  return BuildReport(*journal.GetJob(1), spec, trials, points);
}

JobRecord StoredJob(MemoryJournal& journal) {
  JobRecord job;
  job.state = JobState::kQueued;
  job.id = *journal.CreateJob(job);
  return job;
}

// Learning rates of 0.1 and more reach the target at epoch 2 on the seed the sampler gave
// them, and at epoch 20 on any other; the rest reach it at epoch 6 on every seed (their
// curves differ a little from seed to seed).
double LuckyOrSteady(const TrialRecord& t, int epoch) {
  const bool lucky = t.config.learning_rate >= 0.1;
  const int reach = !lucky ? 6 : t.confirms < 0 ? 2 : 20;
  const double wobble = 0.001 * static_cast<double>(t.seed % 7);
  return epoch >= reach ? 0.85 : 0.1 + 0.6 * epoch / reach + wobble;
}

TEST(SeedGroups, ALuckySeedDoesNotNameItsConfiguration) {
  // One seed each: the job names a lucky configuration, at 2 s.
  MemoryJournal one;
  const JobSpec spec1 = SeedsSpec(1);
  JobEngine engine1(StoredJob(one), spec1, &one);
  RunJob(engine1, LuckyOrSteady);
  const Report r1 = ReportOf(one, spec1);
  ASSERT_TRUE(r1.best.has_value());
  ASSERT_GE(r1.best->config.learning_rate, 0.1);
  ASSERT_DOUBLE_EQ(r1.best->tta_s, 2.0);

  // Three: each lucky configuration is rerun, misses the target within its cap, and the
  // job names a steady one by its mean over three seeds.
  MemoryJournal three;
  const JobSpec spec3 = SeedsSpec(3);
  JobEngine engine3(StoredJob(three), spec3, &three);
  RunJob(engine3, LuckyOrSteady);
  const Report r3 = ReportOf(three, spec3);
  ASSERT_TRUE(r3.best.has_value());
  EXPECT_LT(r3.best->config.learning_rate, 0.1);
  EXPECT_DOUBLE_EQ(r3.best->tta_s, 6.0);
  EXPECT_EQ(r3.best_seed_tta_s, (std::vector<double>{6.0, 6.0, 6.0}));
  ASSERT_TRUE(engine3.IncumbentTta().has_value());
  EXPECT_DOUBLE_EQ(*engine3.IncumbentTta(), 6.0);
  int lucky_firsts = 0;
  for (const auto& [id, t] : three.trials) {
    if (t.confirms >= 0 || !t.reached_target || t.config.learning_rate < 0.1) continue;
    ++lucky_firsts;
    int reruns = 0;
    for (const auto& [other_id, r] : three.trials) {
      if (r.confirms != t.number) continue;
      ++reruns;
      EXPECT_NE(r.seed, t.seed);
      EXPECT_FALSE(r.reached_target) << r.reason;
      EXPECT_EQ(r.state, TrialState::kCompleted);  // trained to its cap: a measurement
      // Capped at twice the lucky run's TTA (at most; less once a steady mean is named).
      EXPECT_LE(r.train_s, 4.0) << r.reason;
      EXPECT_NE(r.reason.find("cannot win"), std::string::npos) << r.reason;
    }
    EXPECT_EQ(reruns, 1) << "trial " << t.number << ": one rerun that misses ends its group";
  }
  EXPECT_GE(lucky_firsts, 1);
}

// The trial seed changes nothing: a rerun stops once its first three epochs repeat the
// first run's, and the job names what a one-seed job names.
double SeedFree(const TrialRecord& t, int epoch) {
  const double speed = 1.0 + std::abs(std::log10(t.config.learning_rate) + 1.5);
  return std::min(0.9, 0.1 + 0.1 * epoch / speed);
}

TEST(SeedGroups, ARerunWhoseCurveRepeatsStopsAfterThreeEpochsAndChangesNoAnswer) {
  MemoryJournal one;
  const JobSpec spec1 = SeedsSpec(1);
  JobEngine engine1(StoredJob(one), spec1, &one);
  RunJob(engine1, SeedFree);
  MemoryJournal three;
  const JobSpec spec3 = SeedsSpec(3);
  JobEngine engine3(StoredJob(three), spec3, &three);
  RunJob(engine3, SeedFree);
  const Report r1 = ReportOf(one, spec1);
  const Report r3 = ReportOf(three, spec3);
  ASSERT_TRUE(r1.best.has_value() && r1.best->reached_target);
  ASSERT_TRUE(r3.best.has_value());
  EXPECT_EQ(r3.best->number, r1.best->number);
  EXPECT_DOUBLE_EQ(r3.best->tta_s, r1.best->tta_s);
  int reruns = 0;
  std::map<int, int> per_first;
  for (const auto& [id, r] : three.trials) {
    if (r.confirms < 0) continue;
    ++reruns;
    ++per_first[r.confirms];
    EXPECT_EQ(r.repeats, r.confirms);
    EXPECT_EQ(r.state, TrialState::kStopped);
    EXPECT_EQ(r.epochs_done, 3) << r.reason;
    EXPECT_NE(r.reason.find("does not change"), std::string::npos) << r.reason;
  }
  EXPECT_GE(reruns, 1);
  for (const auto& [first, n] : per_first) EXPECT_EQ(n, 1) << "trial " << first;
}

// The run of its configuration a trial is: 0 for the sampler's, k for its k-th rerun.
int RunIndex(const MemoryJournal& journal, const TrialRecord& t) {
  if (t.confirms < 0) return 0;
  for (const auto& [id, first] : journal.trials) {
    if (first.confirms < 0 && first.number == t.confirms)
      return static_cast<int>(t.seed - first.seed);
  }
  return -1;
}

TEST(SeedGroups, ARerunIsCappedWhereItsConfigurationsMeanCouldNoLongerBeatTheIncumbents) {
  // Random search, each trial trained in one segment: trial 0 and its reruns first.
  JobSpec spec = SeedsSpec(3);
  spec.algorithm = "random";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/2);
  spec.max_trials = 2;
  MemoryJournal journal;
  JobEngine engine(StoredJob(journal), spec, &journal);
  // Trial 0 reaches the target in 3 epochs of 1 s on every seed (mean 3 s). Trial 1 in one
  // epoch of 2.5 s on its own seed, in two of 1.7 s (3.4 s) on the next; on the third it
  // would need 4 (6.8 s), but 3 x 3 - 2.5 - 3.4 = 3.1 s is all it may take and still win.
  const auto reach_epoch = [&](const TrialRecord& t) {
    if (t.number == 0 || t.confirms == 0) return 3;
    return std::vector<int>{1, 2, 4}.at(static_cast<size_t>(RunIndex(journal, t)));
  };
  RunJob(
      engine,
      [&](const TrialRecord& t, int epoch) {
        const double wobble = 0.001 * static_cast<double>(RunIndex(journal, t));
        return epoch >= reach_epoch(t) ? 0.85 : 0.2 + wobble;
      },
      [&](const TrialRecord& t) {
        if (t.number == 0 || t.confirms == 0) return 1.0;
        return RunIndex(journal, t) == 0 ? 2.5 : 1.7;
      });
  std::vector<const TrialRecord*> second;
  for (const auto& [id, t] : journal.trials) {
    if (t.confirms == 1) second.push_back(&t);
  }
  ASSERT_EQ(second.size(), 2u);
  EXPECT_TRUE(second[0]->reached_target);
  EXPECT_DOUBLE_EQ(second[0]->tta_s, 3.4);
  EXPECT_FALSE(second[1]->reached_target);
  EXPECT_EQ(second[1]->state, TrialState::kCompleted);  // a measurement: not within its cap
  EXPECT_DOUBLE_EQ(second[1]->train_s, 3.4);            // stopped at the first epoch past 3.1 s
  EXPECT_NE(second[1]->reason.find("its cap 3.10 s"), std::string::npos) << second[1]->reason;
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_DOUBLE_EQ(*engine.IncumbentTta(), 3.0);
  const Report r = ReportOf(journal, spec);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->number, 0);
}

TEST(SeedGroups, AFirstRunIsMeasuredAgainstTheIncumbentsSlowestRunNotItsMean) {
  // Random search, each trial trained in one segment, every epoch 1 s. Trial 0 reaches the
  // target in 3, 4 and 6 epochs on its three seeds: mean 4.33 s, slowest 6 s. Trial 1 in 5,
  // 2 and 3: its first run is slower than trial 0's mean, but its own mean, 3.33 s, is the
  // better. Measured against the mean, trial 1 was stopped at 4.33 s and trial 0 named.
  // Trial 2 would need 8 epochs on its first seed, after every run of the configuration
  // named by then (trial 1's: 5, 2 and 3 s).
  JobSpec spec = SeedsSpec(3);
  spec.algorithm = "random";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/3);
  spec.max_trials = 3;
  MemoryJournal journal;
  JobEngine engine(StoredJob(journal), spec, &journal);
  const auto reach_epoch = [&](const TrialRecord& t) {
    const int group = t.confirms < 0 ? t.number : t.confirms;
    const std::vector<std::vector<int>> reach = {{3, 4, 6}, {5, 2, 3}, {8, 1, 1}};
    return reach.at(static_cast<size_t>(group)).at(static_cast<size_t>(RunIndex(journal, t)));
  };
  RunJob(engine, [&](const TrialRecord& t, int epoch) {
    const double wobble = 0.001 * static_cast<double>(RunIndex(journal, t));
    return epoch >= reach_epoch(t) ? 0.85 : 0.2 + wobble;
  });
  const TrialRecord* second = nullptr;
  const TrialRecord* third = nullptr;
  for (const auto& [id, t] : journal.trials) {
    if (t.number == 1) second = &t;
    if (t.number == 2) third = &t;
  }
  ASSERT_NE(second, nullptr);
  ASSERT_NE(third, nullptr);
  EXPECT_TRUE(second->reached_target) << second->reason;
  EXPECT_DOUBLE_EQ(second->tta_s, 5.0);
  int second_reruns = 0;
  for (const auto& [id, t] : journal.trials) second_reruns += t.confirms == 1;
  EXPECT_EQ(second_reruns, 2);
  // Slower than every run of the named configuration: stopped at the slowest, 5 s.
  EXPECT_FALSE(third->reached_target);
  EXPECT_EQ(third->state, TrialState::kStopped);
  EXPECT_DOUBLE_EQ(third->train_s, 5.0);
  EXPECT_NE(third->reason.find("the slowest of the incumbent's runs on 3 seeds, 5.00 s"),
            std::string::npos)
      << third->reason;
  const Report r = ReportOf(journal, spec);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->number, 1);
  EXPECT_DOUBLE_EQ(r.best->tta_s, 10.0 / 3.0);
  EXPECT_EQ(r.best_seed_tta_s, (std::vector<double>{5.0, 2.0, 3.0}));
}

TEST(SeedGroups, UnderTheForecastAFirstRunIsMeasuredAgainstTheIncumbentsSlowestRun) {
  // The runs of the test above, under the forecast, each curve rising steadily to the
  // target at its epoch. Trial 1 is paused at epoch 4 with trial 0 named (mean 4.33 s,
  // slowest run 6 s): its forecast, about 6 s, cannot beat the mean (the forecast stopped
  // it there with P(win) = 0 when the mean was the bar) but may beat the slowest run.
  JobSpec spec = SeedsSpec(3);
  spec.max_trials = 2;
  MemoryJournal journal;
  JobEngine engine(StoredJob(journal), spec, &journal);
  const auto reach_epoch = [&](const TrialRecord& t) {
    const int group = t.confirms < 0 ? t.number : t.confirms;
    const std::vector<std::vector<int>> reach = {{3, 4, 6}, {5, 2, 3}};
    return reach.at(static_cast<size_t>(group)).at(static_cast<size_t>(RunIndex(journal, t)));
  };
  RunJob(engine, [&](const TrialRecord& t, int epoch) {
    const double wobble = 0.001 * static_cast<double>(RunIndex(journal, t));
    const int reach = reach_epoch(t);
    return std::min(0.85, 0.1 + 0.75 * epoch / reach) + wobble;
  });
  const TrialRecord* second = nullptr;
  for (const auto& [id, t] : journal.trials) {
    if (t.number == 1) second = &t;
  }
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(second->reached_target) << second->reason;
  EXPECT_DOUBLE_EQ(second->tta_s, 5.0);
  const Report r = ReportOf(journal, spec);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->number, 1);
  EXPECT_EQ(r.best_seed_tta_s, (std::vector<double>{5.0, 2.0, 3.0}));
}

TEST(SeedGroups, AFlatStartThatEverySeedSharesIsNotTakenForARepeat) {
  // Every seed sits at 0.1 for 5 epochs; then the seed changes the curve. The rerun's
  // first 3 epochs equal the first run's, but it is not a repeat.
  MemoryJournal journal;
  JobSpec spec = SeedsSpec(2);
  spec.algorithm = "random";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/4);
  spec.max_trials = 4;
  JobEngine engine(StoredJob(journal), spec, &journal);
  RunJob(engine, [](const TrialRecord& t, int epoch) {
    if (epoch <= 5) return 0.1;
    return std::min(0.9, 0.1 + 0.1 * (epoch - 5) + 0.001 * static_cast<double>(t.seed % 5));
  });
  int reruns = 0;
  for (const auto& [id, t] : journal.trials) {
    if (t.confirms < 0) continue;
    ++reruns;
    EXPECT_EQ(t.repeats, -1) << t.reason;
    EXPECT_TRUE(t.reached_target) << t.reason;
  }
  EXPECT_GE(reruns, 1);
}

// One configuration (max_trials 1), every run reaching the target at epoch 3 of 1 s, the
// seed moving the curve a little.
JobSpec OneConfigSpec() {
  JobSpec spec = SeedsSpec(3);
  spec.algorithm = "random";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/2);
  spec.max_trials = 1;
  return spec;
}

// Trains `a`'s segment from its start: accuracy(epoch) at 1 s an epoch, up to `epochs` of
// them or the engine's stop. Returns whether the engine said stop.
bool Train(JobEngine& engine, const Assignment& a, int epochs,
           const std::function<double(int)>& accuracy) {
  for (int e = a.start_epoch + 1; e <= std::min(epochs, a.trial.target_epochs); ++e) {
    CurvePoint p;
    p.epoch = e;
    p.val_accuracy = accuracy(e);
    p.compute_s = 1.0;
    StatusOr<EpochVerdict> v = engine.OnEpoch(a.trial.id, p);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    if (!v.ok() || v->stop) return true;
  }
  return false;
}

Assignment NextFor(JobEngine& engine) {
  StatusOr<std::optional<Assignment>> a = engine.NextAssignment("w1", 0);
  EXPECT_TRUE(a.ok() && a->has_value());
  return a.ok() && a->has_value() ? **a : Assignment{};
}

void End(JobEngine& engine, const Assignment& a) {
  ASSERT_TRUE(
      engine.OnSegmentEnded({a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
}

TEST(SeedGroups, ACancelDuringTheLastRerunLeavesTheConfigurationNamedByWhatItMeasured) {
  MemoryJournal journal;
  const JobSpec spec = OneConfigSpec();
  JobEngine engine(StoredJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  const auto rising = [](double offset) {
    return [offset](int e) { return e >= 3 ? 0.85 : 0.3 + 0.1 * e + offset; };
  };
  const Assignment first = NextFor(engine);
  EXPECT_TRUE(Train(engine, first, 9, rising(0.0)));
  End(engine, first);
  const Assignment rerun1 = NextFor(engine);
  ASSERT_EQ(rerun1.trial.confirms, 0);
  EXPECT_TRUE(Train(engine, rerun1, 9, rising(0.01)));
  End(engine, rerun1);
  const Assignment rerun2 = NextFor(engine);
  ASSERT_EQ(rerun2.trial.confirms, 0);
  EXPECT_FALSE(Train(engine, rerun2, 1, rising(0.02)));
  ASSERT_TRUE(engine.Cancel(0).ok());
  // The cancelled rerun measured nothing: the configuration is not settled, but nothing
  // counts against it either, and the report names it by its first run.
  const Report r = ReportOf(journal, spec);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_TRUE(r.target_reached);
  EXPECT_EQ(r.best->number, 0);
  EXPECT_DOUBLE_EQ(r.best->tta_s, 3.0);
  ASSERT_TRUE(engine.IncumbentTta().has_value());
  EXPECT_DOUBLE_EQ(*engine.IncumbentTta(), 3.0);
}

TEST(SeedGroups, EpochsAWorkerSendsAfterTheRepeatVerdictMeasureNothing) {
  MemoryJournal journal;
  JobSpec spec = OneConfigSpec();
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/3);
  JobEngine engine(StoredJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  const auto same = [](int e) { return e >= 5 ? 0.85 : 0.3 + 0.1 * e; };
  const Assignment first = NextFor(engine);
  EXPECT_TRUE(Train(engine, first, 9, same));
  End(engine, first);
  const Assignment rerun = NextFor(engine);
  ASSERT_EQ(rerun.trial.confirms, 0);
  // A fast worker trains on past the verdict at epoch 3, through the target at epoch 5.
  for (int e = 1; e <= 6; ++e) {
    CurvePoint p;
    p.epoch = e;
    p.val_accuracy = same(e);
    p.compute_s = 1.0;
    StatusOr<EpochVerdict> v = engine.OnEpoch(rerun.trial.id, p);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->stop, e >= 3) << "epoch " << e;
  }
  End(engine, rerun);
  const TrialRecord& r = journal.trials.at(rerun.trial.id);
  EXPECT_EQ(r.repeats, 0);
  EXPECT_FALSE(r.reached_target);
  EXPECT_EQ(r.state, TrialState::kStopped);
  EXPECT_DOUBLE_EQ(r.train_s, 6.0);  // spent all the same
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

TEST(SeedGroups, ARerunThatRepeatedItsCurveEndsWhenItsWorkerIsLostAndIsNotTrainedAgain) {
  MemoryJournal journal;
  const JobSpec spec = OneConfigSpec();
  JobEngine engine(StoredJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  const auto same = [](int e) { return e >= 3 ? 0.85 : 0.3 + 0.1 * e; };
  const Assignment first = NextFor(engine);
  EXPECT_TRUE(Train(engine, first, 9, same));
  End(engine, first);
  const Assignment rerun = NextFor(engine);
  ASSERT_EQ(rerun.trial.confirms, 0);
  EXPECT_TRUE(Train(engine, rerun, 9, same));  // stopped after 3 equal epochs
  ASSERT_TRUE(engine.OnWorkerLost("w1", 0).ok());
  const TrialRecord& r = journal.trials.at(rerun.trial.id);
  EXPECT_EQ(r.state, TrialState::kStopped) << r.reason;
  EXPECT_EQ(r.repeats, 0);
  EXPECT_NE(r.reason.find("does not change"), std::string::npos) << r.reason;
  EXPECT_EQ(engine.state(), JobState::kCompleted);
}

TEST(SeedGroups, ACutFirstRerunOfAChallengerBelowTheIncumbentsSlowestRunIsTrainedAgain) {
  // Trial 0's runs reach the target at epochs 2, 3 and 4 (mean 3 s, slowest 4 s); trial 1's
  // at 3, 2 and 2 (mean 2.33 s). Trial 1's first run, 3 s, is no faster than trial 0's mean
  // but faster than its slowest run, so it earns reruns; its first rerun's worker is lost
  // after one epoch. The cut rerun is trained again, and trial 1 is named.
  JobSpec spec = SeedsSpec(3);
  spec.algorithm = "random";
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/3);
  spec.max_trials = 2;
  MemoryJournal journal;
  JobEngine engine(StoredJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  const auto reaching = [](int reach, double offset) {
    return [=](int e) { return e >= reach ? 0.85 : 0.2 + offset + 0.01 * e; };
  };
  const std::vector<std::pair<int, int>> runs = {{0, 2}, {0, 3}, {0, 4}, {1, 3}};
  for (size_t i = 0; i < runs.size(); ++i) {
    const Assignment a = NextFor(engine);
    ASSERT_EQ(a.trial.confirms < 0 ? a.trial.number : a.trial.confirms, runs[i].first);
    EXPECT_TRUE(Train(engine, a, 9, reaching(runs[i].second, 0.001 * i)));
    End(engine, a);
  }
  const Assignment cut = NextFor(engine);
  ASSERT_EQ(cut.trial.confirms, 1);
  EXPECT_FALSE(Train(engine, cut, 1, reaching(2, 0.01)));
  ASSERT_TRUE(engine.OnWorkerLost("w1", 0).ok());
  engine.SetWorkerOnline("w1", true);
  const Assignment again = NextFor(engine);
  ASSERT_EQ(again.trial.id, cut.trial.id) << journal.trials.at(cut.trial.id).reason;
  EXPECT_TRUE(Train(engine, again, 9, reaching(2, 0.01)));
  End(engine, again);
  const Assignment last = NextFor(engine);
  ASSERT_EQ(last.trial.confirms, 1);
  EXPECT_TRUE(Train(engine, last, 9, reaching(2, 0.02)));
  End(engine, last);
  EXPECT_EQ(engine.state(), JobState::kCompleted);
  const Report r = ReportOf(journal, spec);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.best->number, 1);
  EXPECT_NEAR(r.best->tta_s, 7.0 / 3.0, 1e-9);
}

}  // namespace
}  // namespace topotune
