#include "tuner/dispatcher.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <utility>

#include "tests/memory_journal.h"
#include "tuner/report.h"

namespace topotune {
namespace {

// Records what the dispatcher sends.
class FakeChannel : public WorkerChannel {
 public:
  void SendSegment(const std::string& worker_id, const SegmentSpec& a,
                   const std::string& checkpoint_file) override {
    assignments.emplace_back(worker_id, a);
    checkpoint_files.push_back(checkpoint_file);
  }
  void SendStop(const std::string& worker_id, int64_t trial_id, const std::string&) override {
    stops.emplace_back(worker_id, trial_id);
  }
  void SendProbe(const std::string& worker_id, const std::string& key, const std::string&,
                 const DatasetSpec&, const std::vector<int>& batch_sizes) override {
    probes.push_back({worker_id, key, batch_sizes});
  }
  struct Probe {
    std::string worker_id;
    std::string key;
    std::vector<int> batch_sizes;
  };
  std::vector<std::pair<std::string, SegmentSpec>> assignments;
  std::vector<std::string> checkpoint_files;  // sent ahead of each assignment ("": none)
  std::vector<std::pair<std::string, int64_t>> stops;
  std::vector<Probe> probes;
};

// A journal whose worker and trial writes fail on demand, as SQLite's do when the disk is
// full.
class FailingJournal : public MemoryJournal {
 public:
  Status UpsertWorker(const WorkerRecord& worker) override {
    if (fail_workers) return Status::IOError("disk full");
    return MemoryJournal::UpsertWorker(worker);
  }
  Status UpdateTrial(const TrialRecord& trial) override {
    if (fail_trials) return Status::IOError("disk full");
    return MemoryJournal::UpdateTrial(trial);
  }
  bool fail_workers = false;
  bool fail_trials = false;
};

JobSpec Spec() {
  JobSpec spec;
  spec.model = "resnet8";
  spec.dataset.path = "data/shapes";
  spec.space.batch_sizes = {16, 32, 64, 128, 256, 512};
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.target_accuracy = 0.99;
  spec.max_trials = 40;
  spec.asha = AshaSettings::InEpochs(1, 3, 1);
  return spec;
}

WorkerRecord Worker(const std::string& id) {
  WorkerRecord w;
  w.id = id;
  return w;
}

DeviceProbe ProbeUpTo(int max_fit) {
  DeviceProbe p;
  p.model = "resnet8";
  p.input = "3x32x32";
  for (int b = 16; b <= 512; b *= 2) p.batches.push_back({b, b <= max_fit, 1.0, 0, ""});
  return p;
}

WorkerRecord ClassWorker(const std::string& id, const std::string& device_class) {
  WorkerRecord w = Worker(id);
  w.device.device_class = device_class;
  return w;
}

// Every size up to 512 fits, each stepping in `step_ms`.
DeviceProbe ProbeWithStep(double step_ms) {
  DeviceProbe probe = ProbeUpTo(512);
  for (BatchProbe& b : probe.batches) b.step_ms = step_ms;
  return probe;
}

// A job that counts seconds on class "edge", in rungs of 2 edge seconds.
JobSpec CountedOnEdgeSpec() {
  JobSpec spec = Spec();
  spec.reference_class = "edge";
  spec.asha = AshaSettings::InSeconds(/*min_seconds=*/2.0, /*reduction_factor=*/3,
                                      /*num_rungs=*/1, /*max_epochs=*/20);
  return spec;
}

CurvePoint Epoch1() {
  CurvePoint p;
  p.epoch = 1;
  p.val_accuracy = 0.5;
  p.compute_s = 1.0;
  return p;
}

TEST(Dispatcher, ProbesAWorkerFirstAndNeverSendsItABatchThatDoesNotFit) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, Spec()).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("small")).ok());
  ASSERT_EQ(channel.probes.size(), 1u);
  EXPECT_TRUE(channel.assignments.empty());  // no trial before the probe answers
  EXPECT_EQ(channel.probes[0].batch_sizes, Spec().space.batch_sizes);

  ASSERT_TRUE(dispatcher.OnProbeResult("small", channel.probes[0].key, ProbeUpTo(64)).ok());
  ASSERT_EQ(journal.probes.size(), 1u);
  EXPECT_EQ(journal.probes[0].worker_id, "small");
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(channel.assignments.size(), static_cast<size_t>(i + 1));
    const SegmentSpec& a = channel.assignments.back().second;
    EXPECT_LE(a.config.batch_size, 64);
    ASSERT_TRUE(dispatcher.OnEpoch("small", a.trial_id, a.attempt, Epoch1()).ok());
    ASSERT_TRUE(
        dispatcher.OnSegmentEnded("small", {a.trial_id, a.attempt, SegmentStatus::kCompleted, ""})
            .ok());
  }
}

// The worker's probe found batch 128 and up fit with SGD's state but not with Adam's: a job
// that searches Adam too keeps to 64, one of SGD alone does not.
TEST(Dispatcher, AJobThatSearchesAdamKeepsToTheBatchesWhereAdamsStateFits) {
  for (const bool with_adam : {true, false}) {
    MemoryJournal journal;
    FakeChannel channel;
    Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
    JobRecord job;
    job.id = 1;
    JobSpec spec = Spec();
    if (!with_adam) spec.space.optimizers = {Optimizer::kSgd};
    ASSERT_TRUE(dispatcher.AddJob(job, spec).ok());
    ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w")).ok());
    DeviceProbe probe = ProbeUpTo(512);
    for (BatchProbe& b : probe.batches) b.adam_does_not_fit = b.batch_size >= 128;
    ASSERT_TRUE(dispatcher.OnProbeResult("w", channel.probes[0].key, probe).ok());
    int largest = 0;
    for (int i = 0; i < 40; ++i) {
      ASSERT_EQ(channel.assignments.size(), static_cast<size_t>(i + 1)) << with_adam;
      const SegmentSpec& a = channel.assignments.back().second;
      largest = std::max(largest, a.config.batch_size);
      ASSERT_TRUE(dispatcher.OnEpoch("w", a.trial_id, a.attempt, Epoch1()).ok());
      ASSERT_TRUE(
          dispatcher.OnSegmentEnded("w", {a.trial_id, a.attempt, SegmentStatus::kCompleted, ""})
              .ok());
    }
    if (with_adam) {
      EXPECT_LE(largest, 64);
    } else {
      EXPECT_GT(largest, 64);
    }
  }
}

// A job that counts seconds on the edge sends a cloud worker, whose steps take a quarter
// of the edge's (from their probes), a quarter of the rung's edge seconds; and gives it
// nothing while the edge, connected, has not probed yet.
TEST(Dispatcher, AWorkerIsSentItsOwnSecondsOfAJobCountedOnAnotherClass) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, CountedOnEdgeSpec()).ok());
  for (const WorkerRecord& w : {ClassWorker("edge-1", "edge"), ClassWorker("cloud-1", "cloud")}) {
    ASSERT_TRUE(journal.UpsertWorker(w).ok());
    ASSERT_TRUE(dispatcher.WorkerConnected(w).ok());
  }
  ASSERT_EQ(channel.probes.size(), 2u);
  ASSERT_TRUE(dispatcher.OnProbeResult("cloud-1", channel.probes[1].key, ProbeWithStep(2.0)).ok());
  EXPECT_TRUE(channel.assignments.empty());  // the cloud waits for the edge's probe
  ASSERT_TRUE(dispatcher.OnProbeResult("edge-1", channel.probes[0].key, ProbeWithStep(8.0)).ok());
  ASSERT_EQ(channel.assignments.size(), 2u);
  for (const auto& [worker, segment] : channel.assignments) {
    EXPECT_DOUBLE_EQ(segment.max_train_s, worker == "edge-1" ? 2.0 : 0.5) << worker;
  }
}

// A job counted on the edge, with no edge worker connected, gives a cloud worker none of
// its trials for kReferenceProbeGraceS from its start. An edge that connects and probes in
// that time has the cloud's seconds scaled from its first trial; without one, the cloud's
// seconds count as measured once the wait is over.
TEST(Dispatcher, AJobWaitsAWhileForItsReferenceClassToProbeBeforeCountingSecondsAsMeasured) {
  for (const bool edge_comes : {true, false}) {
    SCOPED_TRACE(edge_comes ? "the edge comes within the wait" : "no edge comes");
    MemoryJournal journal;
    FakeChannel channel;
    double now = 1000.0;
    Dispatcher dispatcher(&journal, &channel, [&now] { return now; });
    JobRecord job;
    job.id = 1;
    ASSERT_TRUE(dispatcher.AddJob(job, CountedOnEdgeSpec()).ok());
    const WorkerRecord cloud = ClassWorker("cloud-1", "cloud");
    ASSERT_TRUE(journal.UpsertWorker(cloud).ok());
    ASSERT_TRUE(dispatcher.WorkerConnected(cloud).ok());
    ASSERT_EQ(channel.probes.size(), 1u);
    ASSERT_TRUE(
        dispatcher.OnProbeResult("cloud-1", channel.probes[0].key, ProbeWithStep(2.0)).ok());
    EXPECT_TRUE(channel.assignments.empty());  // no edge probe yet: the cloud waits
    now += 30;
    ASSERT_TRUE(dispatcher.WorkerHeartbeat("cloud-1").ok());
    EXPECT_TRUE(channel.assignments.empty());
    if (edge_comes) {
      const WorkerRecord edge = ClassWorker("edge-1", "edge");
      ASSERT_TRUE(journal.UpsertWorker(edge).ok());
      ASSERT_TRUE(dispatcher.WorkerConnected(edge).ok());
      ASSERT_EQ(channel.probes.size(), 2u);
      ASSERT_TRUE(
          dispatcher.OnProbeResult("edge-1", channel.probes[1].key, ProbeWithStep(8.0)).ok());
      ASSERT_EQ(channel.assignments.size(), 2u);
      for (const auto& [worker, segment] : channel.assignments) {
        EXPECT_DOUBLE_EQ(segment.max_train_s, worker == "edge-1" ? 2.0 : 0.5) << worker;
      }
      continue;
    }
    now = 1000.0 + Dispatcher::kReferenceProbeGraceS - 1;
    ASSERT_TRUE(dispatcher.WorkerHeartbeat("cloud-1").ok());
    EXPECT_TRUE(channel.assignments.empty());
    now = 1000.0 + Dispatcher::kReferenceProbeGraceS + 1;
    ASSERT_TRUE(dispatcher.WorkerHeartbeat("cloud-1").ok());
    ASSERT_EQ(channel.assignments.size(), 1u);
    EXPECT_EQ(channel.assignments[0].first, "cloud-1");
    EXPECT_DOUBLE_EQ(channel.assignments[0].second.max_train_s, 2.0);  // as measured
    // Its epoch is stored with the class it ran on, and the report names it.
    const SegmentSpec& a = channel.assignments[0].second;
    ASSERT_TRUE(dispatcher.OnEpoch("cloud-1", a.trial_id, a.attempt, Epoch1()).ok());
    const CurvePoint& stored = journal.points.at({a.trial_id, 1});
    EXPECT_EQ(stored.device_class, "cloud");
    EXPECT_DOUBLE_EQ(stored.reference_s, 1.0);
    std::vector<TrialRecord> trials;
    for (const auto& [id, t] : journal.trials) trials.push_back(t);
    const Report report = BuildReport(job, CountedOnEdgeSpec(), trials, {stored});
    EXPECT_EQ(report.unscaled_epochs_total, 1);
    EXPECT_EQ(report.unscaled_epochs.count(a.trial_id), 1u);
  }
}

// A job counted on 4 edge devices data-parallel, on 4 nodes joined by a declared 1 MB/s
// link, at batch 64 with rungs of 2 target seconds; its model is 8000 bytes, so the ring
// synchronises in 2 x 3/4 x 8000 / 1e6 s = 12 ms.
JobSpec DataParallelSpec() {
  JobSpec spec = Spec();
  spec.space.batch_sizes = {64};
  spec.reference_class = "edge";
  spec.reference_target.kind = Target::Kind::kDataParallel;
  spec.reference_target.device_class = "edge";
  spec.reference_target.devices = 4;
  spec.reference_target.nodes = 4;
  spec.reference_target.inter_node = {1e6, 0.0};
  spec.workload.model_bytes = 8000;
  spec.asha = AshaSettings::InSeconds(/*min_seconds=*/2.0, /*reduction_factor=*/3,
                                      /*num_rungs=*/1, /*max_epochs=*/20);
  return spec;
}

WorkerRecord EdgeWorker() {
  WorkerRecord w = Worker("edge-1");
  w.device.device_class = "edge";
  return w;
}

// The probe of an edge worker whose step takes 1 + batch / 16 ms (5 ms at 64).
DeviceProbe LinearEdgeProbe() {
  DeviceProbe probe = ProbeUpTo(512);
  for (BatchProbe& b : probe.batches) b.step_ms = 1.0 + b.batch_size / 16.0;
  return probe;
}

// A job that counts seconds on 4 edge devices data-parallel scales even an edge worker's
// seconds: the target's step is the edge's compute at a quarter of the batch plus the
// ring's synchronisation, not the edge's step at the whole batch.
TEST(Dispatcher, AWorkerOfADataParallelTargetsClassIsSentItsOwnSecondsOfTheTargetsStep) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  const JobSpec spec = DataParallelSpec();
  JobRecord job;
  StatusOr<int64_t> id = journal.CreateJob(job);
  ASSERT_TRUE(id.ok());
  job.id = *id;
  ASSERT_TRUE(dispatcher.AddJob(job, spec).ok());
  const WorkerRecord w = EdgeWorker();
  ASSERT_TRUE(journal.UpsertWorker(w).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(w).ok());
  const DeviceProbe probe = LinearEdgeProbe();
  ASSERT_TRUE(dispatcher.OnProbeResult(w.id, channel.probes[0].key, probe).ok());
  ASSERT_EQ(channel.assignments.size(), 1u);
  // The target's step: 2 ms (batch 16) + 12 ms; the worker's at 64: 5 ms. A rung of 2
  // target seconds is 2 / 2.8 of the worker's own.
  EXPECT_NEAR(channel.assignments[0].second.max_train_s, 2.0 / (14.0 / 5.0), 1e-9);
}

// The links of a target that spans sites are the link test's once one ran between those
// sites, fixed at the job's first placement: a later link test changes nothing for the
// job, and a job whose record fixed them counts over those.
TEST(Dispatcher, AJobCountsOverTheLinkTestedAtItsFirstPlacementAndKeepsIt) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobSpec spec = DataParallelSpec();
  spec.reference_target.inter_node_sites = {"edge-1", "edge-2"};
  JobRecord job;
  StatusOr<int64_t> id = journal.CreateJob(job);
  ASSERT_TRUE(id.ok());
  job.id = *id;
  const auto tested = [](double bytes_s) {
    DirectLink d;
    d.from_site = "edge-2";  // either direction joins the pair
    d.to_site = "edge-1";
    d.link = {bytes_s, 0.0};
    return std::vector<DirectLink>{d};
  };
  dispatcher.SetLinkTests(tested(2e6));  // ring 6 ms instead of the declared 12 ms
  ASSERT_TRUE(dispatcher.AddJob(job, spec).ok());
  const WorkerRecord w = EdgeWorker();
  ASSERT_TRUE(journal.UpsertWorker(w).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(w).ok());
  const DeviceProbe probe = LinearEdgeProbe();
  ASSERT_TRUE(dispatcher.OnProbeResult(w.id, channel.probes[0].key, probe).ok());
  ASSERT_EQ(channel.assignments.size(), 1u);
  // The target's step: 2 ms (batch 16) + 6 ms; the worker's at 64: 5 ms.
  const double counted = 2.0 / (8.0 / 5.0);
  EXPECT_NEAR(channel.assignments[0].second.max_train_s, counted, 1e-9);
  ASSERT_TRUE(journal.jobs.at(job.id).counted_links.has_value());
  EXPECT_DOUBLE_EQ(journal.jobs.at(job.id).counted_links->inter_node.bandwidth_bytes_s, 2e6);
  EXPECT_NE(journal.jobs.at(job.id).counted_links->how.find("inter_node measured by a link test"),
            std::string::npos);

  dispatcher.SetLinkTests(tested(4e6));  // a later test: the job keeps its links
  const SegmentSpec a = channel.assignments.back().second;
  ASSERT_TRUE(dispatcher.OnEpoch("edge-1", a.trial_id, a.attempt, Epoch1()).ok());
  ASSERT_TRUE(
      dispatcher.OnSegmentEnded("edge-1", {a.trial_id, a.attempt, SegmentStatus::kCompleted, ""})
          .ok());
  ASSERT_EQ(channel.assignments.size(), 2u);
  EXPECT_NEAR(channel.assignments[1].second.max_train_s, counted, 1e-9);

  // Another job of the same spec, whose record fixed the declared links, counts over those
  // whatever was tested since (a restored job reads its record so).
  JobRecord declared;
  ASSERT_TRUE((id = journal.CreateJob(declared)).ok());
  declared.id = *id;
  declared.counted_links = CountedLinks{{1e6, 0.0}, {}, ""};
  Dispatcher other(&journal, &channel, [] { return 0.0; });
  other.SetLinkTests(tested(4e6));
  ASSERT_TRUE(other.AddJob(declared, spec).ok());
  ASSERT_TRUE(other.WorkerConnected(w).ok());
  ASSERT_TRUE(other.OnProbeResult("edge-1", channel.probes.back().key, probe).ok());
  ASSERT_EQ(channel.assignments.size(), 3u);
  EXPECT_NEAR(channel.assignments[2].second.max_train_s, 2.0 / (14.0 / 5.0), 1e-9);
}

TEST(Dispatcher, AnOutOfMemoryTrialLowersTheWorkersLimit) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, Spec()).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w")).ok());
  ASSERT_TRUE(dispatcher.OnProbeResult("w", channel.probes[0].key, ProbeUpTo(512)).ok());
  // Trials until one uses a batch of 128 or more, which then runs out of memory.
  int oom_batch = 0;
  for (int i = 0; i < 40 && oom_batch == 0; ++i) {
    const SegmentSpec a = channel.assignments.back().second;
    const bool big = a.config.batch_size >= 128;
    if (big) oom_batch = a.config.batch_size;
    ASSERT_TRUE(dispatcher
                    .OnSegmentEnded("w", {a.trial_id, a.attempt,
                                          big ? SegmentStatus::kInfeasible : SegmentStatus::kFailed,
                                          big ? "out of memory" : "diverged"})
                    .ok());
  }
  ASSERT_GT(oom_batch, 0);
  EXPECT_EQ(
      journal.trials[channel.assignments[channel.assignments.size() - 2].second.trial_id].state,
      TrialState::kInfeasible);
  // Every later trial stays below the batch size that did not fit.
  for (int i = 0; i < 20; ++i) {
    const SegmentSpec a = channel.assignments.back().second;
    EXPECT_LT(a.config.batch_size, oom_batch);
    ASSERT_TRUE(
        dispatcher.OnSegmentEnded("w", {a.trial_id, a.attempt, SegmentStatus::kFailed, "diverged"})
            .ok());
  }
}

TEST(Dispatcher, AJobNoWorkerCanHoldFailsWithAReason) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, Spec()).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("tiny")).ok());
  ASSERT_TRUE(dispatcher.OnProbeResult("tiny", channel.probes[0].key, ProbeUpTo(8)).ok());
  EXPECT_FALSE(dispatcher.IsActive(1));
  ASSERT_FALSE(journal.job_states.empty());
  EXPECT_EQ(journal.job_states.back(), JobState::kFailed);
  EXPECT_TRUE(channel.assignments.empty());
}

TEST(Dispatcher, AProbeResultNobodyAskedForIsRejected) {
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w")).ok());
  EXPECT_FALSE(dispatcher.OnProbeResult("w", "lenet|cifar10-bin|x", ProbeUpTo(64)).ok());
}

TEST(Dispatcher, AProbeResultWhoseWorkerStateCannotBeStoredIsAnErrorButTheWorkerGetsATrial) {
  FailingJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, Spec()).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w")).ok());
  journal.fail_workers = true;
  Status s = dispatcher.OnProbeResult("w", channel.probes[0].key, ProbeUpTo(64));
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  // The worker's state is only what listings show: dispatching goes on.
  EXPECT_EQ(channel.assignments.size(), 1u);
  EXPECT_TRUE(dispatcher.IsActive(1));
}

TEST(Dispatcher, AJobThatCannotStoreTheLossOfAWorkerFails) {
  FailingJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(&journal, &channel, [] { return 0.0; });
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, Spec()).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w")).ok());
  ASSERT_TRUE(dispatcher.OnProbeResult("w", channel.probes[0].key, ProbeUpTo(64)).ok());
  ASSERT_EQ(channel.assignments.size(), 1u);
  journal.fail_trials = true;
  dispatcher.WorkerDisconnected("w");
  EXPECT_FALSE(dispatcher.IsActive(1));
  ASSERT_FALSE(journal.job_states.empty());
  EXPECT_EQ(journal.job_states.back(), JobState::kFailed);
}

// A one-chunk checkpoint upload of `segment`'s trial at `epoch`.
CheckpointChunk Upload(const SegmentSpec& segment, int epoch, const std::string& bytes) {
  CheckpointChunk c;
  c.trial_id = segment.trial_id;
  c.attempt = segment.attempt;
  c.stem = segment.checkpoint;
  c.epoch = epoch;
  c.total_bytes = static_cast<int64_t>(bytes.size());
  c.data = bytes;
  c.sha256 = Sha256Hex(bytes);
  return c;
}

TEST(Dispatcher, AnUploadedCheckpointLetsAnotherWorkerResumeAndGoesWithItsJob) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("topotune-dispatcher-ckpt-" + std::to_string(getpid()));
  fs::remove_all(dir);
  StatusOr<std::unique_ptr<CheckpointStore>> store = CheckpointStore::Open(dir.string(), 1 << 20);
  ASSERT_TRUE(store.ok());
  MemoryJournal journal;
  FakeChannel channel;
  Dispatcher dispatcher(
      &journal, &channel, [] { return 0.0; }, store->get());
  dispatcher.CollectCheckpoints();
  JobSpec spec = Spec();
  spec.max_trials = 4;
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/2);
  JobRecord job;
  job.id = 1;
  ASSERT_TRUE(dispatcher.AddJob(job, spec).ok());
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w1")).ok());
  ASSERT_TRUE(dispatcher.OnProbeResult("w1", channel.probes[0].key, ProbeUpTo(512)).ok());
  const SegmentSpec best = channel.assignments.back().second;
  CurvePoint point = Epoch1();
  point.val_accuracy = 0.8;
  ASSERT_TRUE(dispatcher.OnEpoch("w1", best.trial_id, best.attempt, point).ok());

  // Only the checkpoint the worker's own segment writes is taken.
  CheckpointChunk wrong_trial = Upload(best, 1, "weights");
  wrong_trial.trial_id += 100;
  EXPECT_EQ(dispatcher.OnCheckpointChunk("w1", wrong_trial).code(), Status::Code::kInvalidArgument);
  Status past_end = dispatcher.OnCheckpointChunk("w1", Upload(best, 2, "weights"));
  EXPECT_EQ(past_end.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(past_end.message().find("epochs 1..1"), std::string::npos) << past_end.message();
  EXPECT_EQ(dispatcher.OnCheckpointChunk("w2", Upload(best, 1, "weights")).code(),
            Status::Code::kNotFound);
  ASSERT_TRUE(dispatcher.OnCheckpointChunk("w1", Upload(best, 1, "weights")).ok());
  EXPECT_TRUE((*store)->Has(best.checkpoint, 1));
  ASSERT_TRUE(
      dispatcher.OnSegmentEnded("w1", {best.trial_id, best.attempt, SegmentStatus::kCompleted, ""})
          .ok());

  // w1 leaves; w2 runs two more trials, then resumes the best one from the store's copy.
  const size_t w1_segments = channel.assignments.size();
  dispatcher.WorkerDisconnected("w1");
  ASSERT_TRUE(dispatcher.WorkerConnected(Worker("w2")).ok());
  ASSERT_TRUE(dispatcher.OnProbeResult("w2", channel.probes.back().key, ProbeUpTo(512)).ok());
  for (int i = 0; i < 2; ++i) {
    const SegmentSpec a = channel.assignments.back().second;
    ASSERT_NE(a.trial_id, best.trial_id);
    ASSERT_TRUE(dispatcher.OnEpoch("w2", a.trial_id, a.attempt, Epoch1()).ok());
    ASSERT_TRUE(
        dispatcher.OnSegmentEnded("w2", {a.trial_id, a.attempt, SegmentStatus::kCompleted, ""})
            .ok());
  }
  ASSERT_EQ(channel.assignments.size(), w1_segments + 3);
  const SegmentSpec resumed = channel.assignments.back().second;
  EXPECT_EQ(channel.assignments.back().first, "w2");
  EXPECT_EQ(resumed.trial_id, best.trial_id);
  EXPECT_EQ(resumed.start_epoch, 1);
  EXPECT_EQ(channel.checkpoint_files.back(), (*store)->PathOf(best.checkpoint, 1));

  // The rest of the job; once it is done, none of its checkpoints is kept.
  for (int e = 2; e <= resumed.end_epoch; ++e) {
    point.epoch = e;
    ASSERT_TRUE(dispatcher.OnEpoch("w2", resumed.trial_id, resumed.attempt, point).ok());
  }
  ASSERT_TRUE(dispatcher.OnCheckpointChunk("w2", Upload(resumed, resumed.end_epoch, "w")).ok());
  ASSERT_TRUE(
      dispatcher
          .OnSegmentEnded("w2", {resumed.trial_id, resumed.attempt, SegmentStatus::kCompleted, ""})
          .ok());
  while (dispatcher.IsActive(1)) {
    const SegmentSpec a = channel.assignments.back().second;
    ASSERT_TRUE(dispatcher.OnEpoch("w2", a.trial_id, a.attempt, Epoch1()).ok());
    ASSERT_TRUE(
        dispatcher.OnSegmentEnded("w2", {a.trial_id, a.attempt, SegmentStatus::kCompleted, ""})
            .ok());
  }
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace topotune
