// A restored engine makes the same decisions as the one whose journal it was rebuilt from.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/job_script.h"
#include "tests/memory_journal.h"
#include "tuner/controller_service.h"
#include "tuner/job_engine.h"

namespace topotune {
namespace {

JobRecord StoreJob(MemoryJournal& journal) {
  JobRecord job;
  job.name = "scripted";
  job.state = JobState::kQueued;
  job.id = *journal.CreateJob(job);
  return job;
}

void ExpectSameTrialState(const TrialRecord& a, const TrialRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.number, b.number);
  EXPECT_EQ(a.config.batch_size, b.config.batch_size);
  EXPECT_EQ(a.config.learning_rate, b.config.learning_rate);
  EXPECT_EQ(a.config.optimizer, b.config.optimizer);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.state, b.state) << "trial " << a.id << ": " << a.reason << " / " << b.reason;
  EXPECT_EQ(a.rung, b.rung);
  EXPECT_EQ(a.bracket, b.bracket);
  EXPECT_EQ(a.rung_start_epoch, b.rung_start_epoch);
  EXPECT_EQ(a.epochs_done, b.epochs_done);
  EXPECT_EQ(a.target_epochs, b.target_epochs);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.worker, b.worker);
  EXPECT_EQ(a.reached_target, b.reached_target);
  EXPECT_EQ(a.tta_s, b.tta_s);
  EXPECT_EQ(a.train_s, b.train_s);
  EXPECT_EQ(a.cut_s, b.cut_s);
  EXPECT_EQ(a.best_accuracy, b.best_accuracy);
}

// The same (trial, epoch) keys with the same values, and each trial's points are exactly
// its epochs done.
void ExpectSamePoints(const MemoryJournal& a, const MemoryJournal& b) {
  ASSERT_EQ(a.points.size(), b.points.size());
  for (const auto& [key, p] : a.points) {
    auto it = b.points.find(key);
    ASSERT_NE(it, b.points.end()) << "trial " << key.first << " epoch " << key.second;
    EXPECT_EQ(p.val_accuracy, it->second.val_accuracy);
    EXPECT_EQ(p.compute_s, it->second.compute_s);
  }
  for (const MemoryJournal* j : {&a, &b}) {
    for (const auto& [id, t] : j->trials) {
      int epochs = 0;
      for (const auto& [key, p] : j->points) epochs += key.first == id;
      EXPECT_EQ(epochs, t.epochs_done) << "trial " << id;
    }
  }
}

// Everything the engine stored, but the reasons in words (a lost worker and a restart say
// different things about the same rerun).
void ExpectSameStores(const MemoryJournal& a, const MemoryJournal& b) {
  ASSERT_EQ(a.trials.size(), b.trials.size());
  for (const auto& [id, t] : a.trials) ExpectSameTrialState(t, b.trials.at(id));
  ExpectSamePoints(a, b);
  ASSERT_EQ(a.rung_results.size(), b.rung_results.size());
  for (size_t i = 0; i < a.rung_results.size(); ++i) {
    const RungResultRecord& x = a.rung_results[i];
    const RungResultRecord& y = b.rung_results[i];
    EXPECT_EQ(x.rung, y.rung);
    EXPECT_EQ(x.promoted, y.promoted) << "trial " << x.result.trial_id;
    EXPECT_EQ(x.result.trial_id, y.result.trial_id);
    EXPECT_EQ(x.result.reached_target, y.result.reached_target);
    EXPECT_EQ(x.result.tta_s, y.result.tta_s);
    EXPECT_EQ(x.result.accuracy, y.result.accuracy);
  }
  ASSERT_EQ(a.sampler_events.size(), b.sampler_events.size());
  for (const auto& [job, events] : a.sampler_events) {
    const std::vector<SamplerEvent>& other = b.sampler_events.at(job);
    ASSERT_EQ(events.size(), other.size());
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].kind, other[i].kind);
      EXPECT_EQ(events[i].trial_id, other[i].trial_id);
      EXPECT_EQ(events[i].max_batch_size, other[i].max_batch_size);
      EXPECT_EQ(events[i].observation.score, other[i].observation.score);
    }
  }
}

struct RestoreCounts {
  int compared = 0;     // restores whose every later decision was compared
  int mid_segment = 0;  // of those, restores while a worker was in a segment
  int skipped = 0;      // the original finished on losing its workers
  int calls_after = 0;  // decisions compared, over all restores
};

// Runs the scripted job for `crash_at` calls; then the controller "dies": an engine is
// restored from a copy of the journal, as a restarted controller finds it, and the
// original loses its workers' segments, as the restarted one has. From there both run in
// lockstep to the end and every decision must be the same.
void CheckRestoreAt(const std::string& algorithm, const std::vector<ScriptWorker>& workers,
                    int crash_at, RestoreCounts* counts) {
  SCOPED_TRACE(algorithm + " on " + std::to_string(workers.size()) +
               " worker(s), restored after call " + std::to_string(crash_at));
  const JobSpec spec = ScriptSpec(algorithm);
  MemoryJournal journal;
  const JobRecord job = StoreJob(journal);
  JobEngine original(job, spec, &journal);
  JobScript script(&original, workers);
  for (int i = 0; i < crash_at; ++i) {
    if (script.Step().empty()) return;  // the job was over before
  }

  MemoryJournal copy = journal;  // what the killed controller left on disk
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*copy.GetJob(job.id), spec, &copy);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  const bool mid_segment = script.Busy();
  for (const std::string& worker : script.BusyWorkersByTrial()) {
    ASSERT_TRUE(original.OnWorkerLost(worker, crash_at).ok());
  }
  script.DropSegments();
  if (IsTerminal(original.state())) {
    // It stopped what waited for the lost workers and finished; a restart waits for them.
    ++counts->skipped;
    return;
  }
  script.Reconnect();
  // Neither store keeps an epoch of a cut segment.
  ExpectSamePoints(journal, copy);

  JobScript restored_script = script;
  restored_script.set_engine(restored->get());
  for (int call = 0;; ++call) {
    const std::string expected = script.Step();
    const std::string got = restored_script.Step();
    ASSERT_EQ(got, expected) << "call " << call << " after the restore";
    if (expected.empty()) break;
    ASSERT_LT(call, 5000) << "the job does not end";
    ++counts->calls_after;
  }
  EXPECT_EQ(original.state(), JobState::kCompleted);
  EXPECT_EQ((*restored)->state(), JobState::kCompleted);
  ExpectSameStores(journal, copy);
  ++counts->compared;
  counts->mid_segment += mid_segment;
}

class RestoreDeterminism : public ::testing::TestWithParam<std::string> {};

TEST_P(RestoreDeterminism, ARestoredEngineDecidesAsTheOriginalAtEveryPointTried) {
  const std::string algorithm = GetParam();
  const auto start = std::chrono::steady_clock::now();
  RestoreCounts counts;
  int tried = 0;
  // Two workers (segments overlap, proposals are asked with different batch limits) and
  // one (the job often waits between segments, with nothing running).
  const std::vector<ScriptWorker> two = ScriptWorkers();
  // GP proposals cost milliseconds each, and every restore replays them all.
  const int spread = algorithm == "gp" ? 3 : 1;
  for (const std::vector<ScriptWorker>& workers : {two, std::vector<ScriptWorker>{two[0]}}) {
    // The whole job once, to know its length and when nothing runs.
    MemoryJournal journal;
    JobEngine engine(StoreJob(journal), ScriptSpec(algorithm), &journal);
    JobScript script(&engine, workers);
    std::vector<int> idle_after;  // calls after which no worker has a segment
    while (!script.Step().empty()) {
      if (!script.Busy()) idle_after.push_back(script.steps());
      ASSERT_LT(script.steps(), 5000) << "the job does not end";
    }
    ASSERT_EQ(engine.state(), JobState::kCompleted);
    // The seeds variants rerun configurations on other seeds, some of them to the target.
    if (ScriptSpec(algorithm).incumbent_seeds > 1) {
      int reruns = 0, reached = 0;
      for (const auto& [id, t] : journal.trials) {
        if (t.confirms < 0) continue;
        ++reruns;
        reached += t.reached_target;
      }
      ASSERT_GE(reruns, 2);
      ASSERT_GE(reached, 1);
    }
    // The budget variants end by their budget, not by running out of trials.
    if (ScriptSpec(algorithm).time_budget_s > 0) {
      ASSERT_TRUE(engine.BudgetSpent());
    }
    const int total = script.steps();
    ASSERT_GT(total, 60);
    // Points spread over the whole job, shifted per algorithm so they land at different
    // phases (before a segment, inside one, between its last epoch and its result), and
    // points spread over the moments when nothing runs.
    std::vector<int> crash_at;
    const int points = (workers.size() == 2 ? 60 : 40) / spread;
    for (int i = 0; i < points; ++i) {
      crash_at.push_back(i * total / points + static_cast<int>(algorithm.size() + i) % 3);
    }
    const size_t idle_points = std::min<size_t>(idle_after.size(), 12 / spread);
    for (size_t i = 0; i < idle_points; ++i) {
      crash_at.push_back(idle_after[i * idle_after.size() / idle_points]);
    }
    for (int at : crash_at) {
      CheckRestoreAt(algorithm, workers, at, &counts);
      if (HasFatalFailure()) return;
      ++tried;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ restore  ] %s: %d restores, %d compared to the end (%d mid-segment, %d with "
      "nothing running), %d skipped; %d later decisions compared, %.2f s\n",
      algorithm.c_str(), tried, counts.compared, counts.mid_segment,
      counts.compared - counts.mid_segment, counts.skipped, counts.calls_after, seconds);
  EXPECT_GE(counts.compared, tried * 2 / 3);
  EXPECT_GE(counts.mid_segment, 20 / spread);
  EXPECT_GE(counts.compared - counts.mid_segment, 10 / spread);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, RestoreDeterminism,
                         ::testing::Values("asha", "sha", "hyperband", "tpe", "gp", "bohb", "grid",
                                           "random", "asha-seconds", "forecast", "asha-budget",
                                           "forecast-budget", "forecast-gp", "forecast-seeds",
                                           "asha-seeds"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

// A new scripted `algorithm` job on `journal`, run for `calls` calls.
std::unique_ptr<JobEngine> RunFor(const std::string& algorithm, int calls, MemoryJournal& journal) {
  auto engine = std::make_unique<JobEngine>(StoreJob(journal), ScriptSpec(algorithm), &journal);
  JobScript script(engine.get(), ScriptWorkers());
  for (int i = 0; i < calls; ++i) script.Step();
  return engine;
}

TEST(Restore, FailsWhenTheSamplerDoesNotReplayToTheStoredProposals) {
  MemoryJournal journal;
  std::unique_ptr<JobEngine> engine = RunFor("tpe", 120, journal);
  MemoryJournal copy = journal;
  TrialRecord& tampered = copy.trials.at(5);
  tampered.config.learning_rate *= 1.5;
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*copy.GetJob(1), ScriptSpec("tpe"), &copy);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Status::Code::kInternal);
  EXPECT_NE(restored.status().message().find("the sampler does not rebuild"), std::string::npos)
      << restored.status().message();
  EXPECT_NE(restored.status().message().find("trial 4 (id 5)"), std::string::npos)
      << restored.status().message();
}

TEST(Restore, FailsWhenTrialsHaveNoSamplerHistory) {
  MemoryJournal journal;
  std::unique_ptr<JobEngine> engine = RunFor("asha", 40, journal);
  MemoryJournal copy = journal;
  copy.sampler_events.clear();  // as a store written before the history was kept
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*copy.GetJob(1), ScriptSpec("asha"), &copy);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Status::Code::kInternal);
  EXPECT_NE(restored.status().message().find("holds 0 proposals"), std::string::npos)
      << restored.status().message();
}

TEST(Restore, FailsWhenAnEpochDoneHasNoStoredPoint) {
  MemoryJournal journal;
  std::unique_ptr<JobEngine> engine = RunFor("asha", 60, journal);
  MemoryJournal copy = journal;
  copy.points.erase(copy.points.begin());
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*copy.GetJob(1), ScriptSpec("asha"), &copy);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Status::Code::kInternal);
  EXPECT_NE(restored.status().message().find("no stored point for epoch 1"), std::string::npos)
      << restored.status().message();
}

CurvePoint Point(int epoch, double accuracy, double seconds) {
  CurvePoint p;
  p.epoch = epoch;
  p.val_accuracy = accuracy;
  p.compute_s = seconds;
  return p;
}

JobSpec OneTrialSpec() {
  JobSpec spec = ScriptSpec("asha", /*max_trials=*/2);
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/2, /*reduction_factor=*/2, /*num_rungs=*/2);
  return spec;
}

TEST(Restore, ALostSegmentsPointsLeaveTheStoreWithItsEpochs) {
  MemoryJournal journal;
  JobSpec spec = OneTrialSpec();
  spec.max_trials = 3;  // one left to sample, so the job does not end when w1 goes
  JobEngine engine(StoreJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  StatusOr<std::optional<Assignment>> a = engine.NextAssignment("w1", 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  const int64_t id = (*a)->trial.id;
  ASSERT_TRUE(engine.OnEpoch(id, Point(1, 0.3, 1.0)).ok());
  ASSERT_TRUE(engine.OnEpoch(id, Point(2, 0.4, 1.0)).ok());
  ASSERT_TRUE(
      engine.OnSegmentEnded({id, (*a)->trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  ASSERT_EQ(journal.trials.at(id).state, TrialState::kPaused);
  // The second trial runs and ends below the first, so the first is promoted: epochs 3..4.
  a = engine.NextAssignment("w1", 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  const int64_t other = (*a)->trial.id;
  ASSERT_TRUE(engine.OnEpoch(other, Point(1, 0.1, 1.0)).ok());
  ASSERT_TRUE(engine.OnEpoch(other, Point(2, 0.2, 1.0)).ok());
  ASSERT_TRUE(
      engine.OnSegmentEnded({other, (*a)->trial.attempt, SegmentStatus::kCompleted, ""}, 0).ok());
  a = engine.NextAssignment("w1", 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_EQ((*a)->trial.id, id);
  ASSERT_EQ((*a)->start_epoch, 2);
  ASSERT_TRUE(engine.OnEpoch(id, Point(3, 0.7, 1.0)).ok());
  ASSERT_EQ(journal.points.size(), 5u);

  ASSERT_TRUE(engine.OnWorkerLost("w1", 0).ok());
  const TrialRecord& t = journal.trials.at(id);
  EXPECT_EQ(t.state, TrialState::kPending);
  EXPECT_EQ(t.epochs_done, 2);
  EXPECT_EQ(t.rung_start_epoch, 2);
  EXPECT_DOUBLE_EQ(t.train_s, 2.0);
  EXPECT_DOUBLE_EQ(t.best_accuracy, 0.4);  // epoch 3's 0.7 went with its segment
  EXPECT_EQ(journal.points.count({id, 3}), 0u);
  EXPECT_EQ(journal.points.size(), 4u);  // = the epochs done of both trials
}

TEST(Restore, ARunningTrialThatReachedTheTargetCompletesInsteadOfRerunning) {
  MemoryJournal journal;
  JobSpec spec = OneTrialSpec();
  spec.max_trials = 1;
  const JobRecord job = StoreJob(journal);
  JobEngine engine(job, spec, &journal);
  StatusOr<std::optional<Assignment>> a = engine.NextAssignment("w1", 0);
  ASSERT_TRUE(a.ok() && a->has_value());
  const int64_t id = (*a)->trial.id;
  ASSERT_TRUE(engine.OnEpoch(id, Point(1, 0.95, 2.0))->stop);
  // The controller dies before the worker's result arrives.
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*journal.GetJob(job.id), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  const TrialRecord& t = journal.trials.at(id);
  EXPECT_EQ(t.state, TrialState::kCompleted);
  EXPECT_DOUBLE_EQ(t.tta_s, 2.0);
  ASSERT_EQ(journal.rung_results.size(), 1u);
  EXPECT_TRUE(journal.rung_results[0].result.reached_target);
  // The job has nothing left; it completes once asked for work (with a worker online).
  EXPECT_EQ((*restored)->state(), JobState::kRunning);
  (*restored)->SetWorkerOnline("w1", true);
  StatusOr<std::optional<Assignment>> next = (*restored)->NextAssignment("w1", 1);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  EXPECT_EQ((*restored)->state(), JobState::kCompleted);
}

// A job of two trials whose better one was promoted and is cut by a restart in its second
// segment (epochs 3..4), on w1. Returns the promoted assignment.
Assignment CutAPromotedTrial(MemoryJournal& journal, const JobSpec& spec) {
  JobEngine engine(StoreJob(journal), spec, &journal);
  engine.SetWorkerOnline("w1", true);
  for (double accuracy : {0.5, 0.2}) {
    StatusOr<std::optional<Assignment>> a = engine.NextAssignment("w1", 0);
    EXPECT_TRUE(a.ok() && a->has_value());
    for (int e = 1; e <= 2; ++e)
      EXPECT_TRUE(engine.OnEpoch((*a)->trial.id, Point(e, accuracy, 1.0)).ok());
    EXPECT_TRUE(
        engine
            .OnSegmentEnded({(*a)->trial.id, (*a)->trial.attempt, SegmentStatus::kCompleted, ""}, 0)
            .ok());
  }
  StatusOr<std::optional<Assignment>> promoted = engine.NextAssignment("w1", 0);
  EXPECT_TRUE(promoted.ok() && promoted->has_value());
  EXPECT_EQ((*promoted)->start_epoch, 2);
  EXPECT_TRUE(engine.OnEpoch((*promoted)->trial.id, Point(3, 0.6, 1.0)).ok());
  return **promoted;
}

TEST(Restore, ACutPromotedTrialResumesFromItsRungOnTheWorkerThatHoldsItsCheckpoint) {
  MemoryJournal journal;
  const JobSpec spec = OneTrialSpec();
  const Assignment promoted = CutAPromotedTrial(journal, spec);
  StatusOr<std::unique_ptr<JobEngine>> restored =
      JobEngine::Restore(*journal.GetJob(1), spec, &journal);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  const TrialRecord& t = journal.trials.at(promoted.trial.id);
  EXPECT_EQ(t.state, TrialState::kPending);
  EXPECT_EQ(t.epochs_done, 2);
  EXPECT_EQ(journal.points.count({t.id, 3}), 0u);
  EXPECT_EQ((*restored)->CheckpointHolders(), std::set<std::string>{"w1"});
  (*restored)->SetWorkerOnline("w1", true);
  StatusOr<std::optional<Assignment>> again = (*restored)->NextAssignment("w1", 1);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->trial.id, promoted.trial.id);
  EXPECT_EQ((*again)->start_epoch, 2);
  EXPECT_EQ((*again)->trial.target_epochs, 4);
  EXPECT_EQ((*again)->trial.attempt, promoted.trial.attempt + 1);
  EXPECT_EQ((*again)->checkpoint, promoted.checkpoint);
}

// Records what the dispatcher sends.
class RecordingChannel : public WorkerChannel {
 public:
  void SendSegment(const std::string& worker_id, const SegmentSpec& segment,
                   const std::string&) override {
    segments.emplace_back(worker_id, segment);
  }
  void SendStop(const std::string&, int64_t, const std::string&) override {}
  void SendProbe(const std::string& worker_id, const std::string& key, const std::string&,
                 const DatasetSpec&, const std::vector<int>&) override {
    probes.emplace_back(worker_id, key);
  }
  std::vector<std::pair<std::string, SegmentSpec>> segments;
  std::vector<std::pair<std::string, std::string>> probes;
};

DeviceProbe FitsEverything(const JobSpec& spec) {
  DeviceProbe p;
  p.model = spec.model;
  for (int b : spec.space.batch_sizes) p.batches.push_back({b, true, 1.0, 0, ""});
  return p;
}

TEST(Restore, TheControllerResumesWhatItCanAndFailsWhatItCannot) {
  MemoryJournal journal;
  const JobSpec spec = ScriptSpec("tpe");
  // Two jobs mid-way; the second one's store is damaged.
  std::unique_ptr<JobEngine> first = RunFor("tpe", 90, journal);
  std::unique_ptr<JobEngine> second = RunFor("tpe", 90, journal);
  ASSERT_EQ(journal.jobs.size(), 2u);
  for (auto& [id, t] : journal.trials) {
    if (t.job_id == 2 && t.number == 3) t.config.batch_size = t.config.batch_size == 16 ? 32 : 16;
  }
  RecordingChannel channel;
  ControllerService service(
      &journal, &channel, [&](const std::string&) -> StatusOr<JobSpec> { return spec; },
      [] { return 100.0; });
  StatusOr<int> resumed = service.ResumeJobs();
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(*resumed, 1);
  EXPECT_EQ(journal.jobs.at(2).state, JobState::kFailed);
  EXPECT_NE(journal.jobs.at(2).message.find("could not resume after a restart"), std::string::npos);
  EXPECT_NE(journal.jobs.at(2).message.find("the sampler does not rebuild"), std::string::npos)
      << journal.jobs.at(2).message;
  EXPECT_EQ(journal.jobs.at(1).state, JobState::kRunning);

  // A worker connects: probed first, then given the resumed job's next segment.
  WorkerRecord w1;
  w1.id = "w1";
  ASSERT_TRUE(service.WorkerConnected(w1).ok());
  ASSERT_EQ(channel.probes.size(), 1u);
  ASSERT_TRUE(service.OnProbeResult("w1", channel.probes[0].second, FitsEverything(spec)).ok());
  ASSERT_EQ(channel.segments.size(), 1u);
  const SegmentSpec& segment = channel.segments[0].second;
  EXPECT_EQ(segment.job_id, 1);
  const TrialRecord& trial = journal.trials.at(segment.trial_id);
  EXPECT_EQ(trial.job_id, 1);
  EXPECT_EQ(trial.state, TrialState::kRunning);
  EXPECT_EQ(segment.start_epoch, trial.rung_start_epoch);
  EXPECT_EQ(segment.attempt, trial.attempt);
}

TEST(Restore, ARestoredJobWaitsForTheWorkerThatHoldsItsCheckpointsThenGivesUp) {
  for (bool comes_back : {true, false}) {
    SCOPED_TRACE(comes_back ? "w1 reconnects" : "w1 does not reconnect");
    MemoryJournal journal;
    const JobSpec spec = OneTrialSpec();
    const Assignment promoted = CutAPromotedTrial(journal, spec);
    double now = 1000.0;
    RecordingChannel channel;
    ControllerService service(
        &journal, &channel, [&](const std::string&) -> StatusOr<JobSpec> { return spec; },
        [&] { return now; });
    ASSERT_EQ(*service.ResumeJobs(), 1);
    // w2 is back first: it cannot take the trial (its checkpoint is on w1), and the job
    // does not end for want of w1.
    WorkerRecord w2;
    w2.id = "w2";
    ASSERT_TRUE(service.WorkerConnected(w2).ok());
    ASSERT_TRUE(
        service.OnProbeResult("w2", channel.probes.back().second, FitsEverything(spec)).ok());
    EXPECT_TRUE(channel.segments.empty());
    EXPECT_EQ(journal.jobs.at(1).state, JobState::kRunning);
    now += Dispatcher::kReconnectGraceS / 2;
    ASSERT_TRUE(service.WorkerHeartbeat("w2").ok());
    EXPECT_EQ(journal.jobs.at(1).state, JobState::kRunning);
    if (comes_back) {
      WorkerRecord w1;
      w1.id = "w1";
      ASSERT_TRUE(service.WorkerConnected(w1).ok());
      ASSERT_TRUE(
          service.OnProbeResult("w1", channel.probes.back().second, FitsEverything(spec)).ok());
      ASSERT_EQ(channel.segments.size(), 1u);
      EXPECT_EQ(channel.segments[0].first, "w1");
      EXPECT_EQ(channel.segments[0].second.trial_id, promoted.trial.id);
      EXPECT_EQ(channel.segments[0].second.start_epoch, 2);
      now += Dispatcher::kReconnectGraceS;
      ASSERT_TRUE(service.WorkerHeartbeat("w2").ok());
      EXPECT_EQ(journal.trials.at(promoted.trial.id).state, TrialState::kRunning);
    } else {
      now += Dispatcher::kReconnectGraceS;
      ASSERT_TRUE(service.WorkerHeartbeat("w2").ok());
      EXPECT_EQ(journal.jobs.at(1).state, JobState::kCompleted);
      EXPECT_EQ(journal.trials.at(promoted.trial.id).state, TrialState::kStopped);
      EXPECT_NE(journal.trials.at(promoted.trial.id).reason.find("offline"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace topotune
