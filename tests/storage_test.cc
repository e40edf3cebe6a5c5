#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/migrations.h"
#include "storage/store.h"
#include "tests/job_script.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test for the database file, removed with everything in it.
class TempDatabase {
 public:
  TempDatabase() {
    std::string pattern = (fs::path(::testing::TempDir()) / "storage_test.XXXXXX").string();
    const char* dir = mkdtemp(pattern.data());
    EXPECT_NE(dir, nullptr) << "mkdtemp " << pattern;
    if (dir != nullptr) dir_ = dir;
  }
  ~TempDatabase() {
    std::error_code error;
    fs::remove_all(dir_, error);
  }
  TempDatabase(const TempDatabase&) = delete;
  TempDatabase& operator=(const TempDatabase&) = delete;

  std::string path() const { return (dir_ / "topotune.db").string(); }

 private:
  fs::path dir_;
};

std::unique_ptr<Store> OpenOrDie(const std::string& path) {
  StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) return nullptr;
  return std::move(store).value();
}

JobRecord MakeJob(const std::string& name) {
  JobRecord job;
  job.name = name;
  job.spec_json = R"({"name":")" + name + R"(","model":"lenet"})";
  job.state = JobState::kRunning;
  job.message = "message of " + name;
  job.created_at = 1700000000.125;
  job.finished_at = 0.0;
  return job;
}

TrialRecord MakeTrial(int64_t job_id, int number) {
  TrialRecord trial;
  trial.job_id = job_id;
  trial.number = number;
  trial.config.batch_size = 64 << number;
  trial.config.learning_rate = 0.1 / (number + 3);
  trial.config.optimizer = number % 2 == 0 ? Optimizer::kSgd : Optimizer::kAdam;
  trial.seed = 0xfedcba9876543210ULL + number;  // above INT64_MAX: checks the bit round-trip
  trial.state = TrialState::kPaused;
  trial.rung = 1;
  trial.bracket = number % 3;
  trial.rung_start_epoch = 2;
  trial.attempt = number + 1;
  trial.epochs_done = 3;
  trial.target_epochs = 9;
  trial.cut_s = 0.25 * number;  // epochs cut and trained again (migration 17)
  trial.worker = "worker-" + std::to_string(number);
  trial.reason = "finished rung 1";
  trial.reached_target = true;
  trial.tta_s = 12.345678901234567;
  trial.train_s = 98.76543210987654;
  trial.best_accuracy = 0.6180339887498949;
  return trial;
}

CurvePoint MakePoint(int64_t trial_id, int epoch) {
  CurvePoint point;
  point.trial_id = trial_id;
  point.epoch = epoch;
  point.samples_seen = int64_t{50000} * epoch;
  point.train_loss = 2.302585092994046 / epoch;
  point.val_accuracy = 0.1 * epoch;
  point.compute_s = 10.5 * epoch;
  point.comm_s = 0.25;
  point.eval_s = 1.75;
  point.wall_s = 12.5 * epoch;
  point.step_ms_p50 = 3.125;
  point.step_ms_p95 = 4.875;
  point.peak_memory_bytes = int64_t{3} << 32;  // above INT32_MAX
  point.data_s = 0.5 * epoch;
  point.forward_s = 3.5 * epoch;
  point.backward_s = 5.25 * epoch;
  point.optimizer_s = 1.25 * epoch;
  point.reference_s = 4.5 * epoch;
  point.device_class = "edge";
  return point;
}

void ExpectSameJob(const JobRecord& a, const JobRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.spec_json, b.spec_json);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.finished_at, b.finished_at);
}

void ExpectSameTrial(const TrialRecord& a, const TrialRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.job_id, b.job_id);
  EXPECT_EQ(a.number, b.number);
  EXPECT_EQ(a.config.batch_size, b.config.batch_size);
  EXPECT_EQ(a.config.learning_rate, b.config.learning_rate);
  EXPECT_EQ(a.config.optimizer, b.config.optimizer);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.rung, b.rung);
  EXPECT_EQ(a.bracket, b.bracket);
  EXPECT_EQ(a.rung_start_epoch, b.rung_start_epoch);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.epochs_done, b.epochs_done);
  EXPECT_EQ(a.target_epochs, b.target_epochs);
  EXPECT_EQ(a.worker, b.worker);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.reached_target, b.reached_target);
  EXPECT_EQ(a.tta_s, b.tta_s);
  EXPECT_EQ(a.train_s, b.train_s);
  EXPECT_EQ(a.cut_s, b.cut_s);
  EXPECT_EQ(a.best_accuracy, b.best_accuracy);
  EXPECT_EQ(a.confirms, b.confirms);
  EXPECT_EQ(a.repeats, b.repeats);
  ASSERT_EQ(a.forecast.has_value(), b.forecast.has_value());
  if (a.forecast) {
    EXPECT_EQ(a.forecast->tta_s, b.forecast->tta_s);
    EXPECT_EQ(a.forecast->lo_s, b.forecast->lo_s);
    EXPECT_EQ(a.forecast->hi_s, b.forecast->hi_s);
    EXPECT_EQ(a.forecast->p_win, b.forecast->p_win);
    EXPECT_EQ(a.forecast->p_reach, b.forecast->p_reach);
    EXPECT_EQ(a.forecast->score, b.forecast->score);
  }
}

void ExpectSamePoint(const CurvePoint& a, const CurvePoint& b) {
  EXPECT_EQ(a.trial_id, b.trial_id);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.samples_seen, b.samples_seen);
  EXPECT_EQ(a.train_loss, b.train_loss);
  EXPECT_EQ(a.val_accuracy, b.val_accuracy);
  EXPECT_EQ(a.compute_s, b.compute_s);
  EXPECT_EQ(a.comm_s, b.comm_s);
  EXPECT_EQ(a.eval_s, b.eval_s);
  EXPECT_EQ(a.wall_s, b.wall_s);
  EXPECT_EQ(a.step_ms_p50, b.step_ms_p50);
  EXPECT_EQ(a.step_ms_p95, b.step_ms_p95);
  EXPECT_EQ(a.peak_memory_bytes, b.peak_memory_bytes);
  EXPECT_EQ(a.data_s, b.data_s);
  EXPECT_EQ(a.forward_s, b.forward_s);
  EXPECT_EQ(a.backward_s, b.backward_s);
  EXPECT_EQ(a.optimizer_s, b.optimizer_s);
  EXPECT_EQ(a.reference_s, b.reference_s);
  EXPECT_EQ(a.device_class, b.device_class);
}

TEST(Storage, OpenCreatesSchemaAtLatestVersion) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::exists(db.path()));
  ASSERT_FALSE(Migrations().empty());
  EXPECT_EQ(store->SchemaVersion(), static_cast<int>(Migrations().size()));
  EXPECT_EQ(store->SchemaVersion(), Migrations().back().version);

  // Every table is there and empty.
  StatusOr<std::vector<JobRecord>> jobs = store->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_TRUE(jobs->empty());
  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(1);
  ASSERT_TRUE(trials.ok()) << trials.status().ToString();
  EXPECT_TRUE(trials->empty());
  StatusOr<std::vector<CurvePoint>> points = store->ListCurvePoints(1);
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  EXPECT_TRUE(points->empty());
  StatusOr<std::vector<WorkerRecord>> workers = store->ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status().ToString();
  EXPECT_TRUE(workers->empty());
}

TEST(Storage, ReopenKeepsDataAndDoesNotReapplyMigrations) {
  TempDatabase db;
  int64_t job_id = 0;
  int64_t trial_id = 0;
  {
    std::unique_ptr<Store> store = OpenOrDie(db.path());
    ASSERT_NE(store, nullptr);
    StatusOr<int64_t> job = store->CreateJob(MakeJob("first"));
    ASSERT_TRUE(job.ok()) << job.status().ToString();
    job_id = *job;
    StatusOr<int64_t> trial = store->CreateTrial(MakeTrial(job_id, 0));
    ASSERT_TRUE(trial.ok()) << trial.status().ToString();
    trial_id = *trial;
    ASSERT_TRUE(store->AppendCurvePoint(MakePoint(trial_id, 1)).ok());
  }
  // Migration 1 creates its tables without IF NOT EXISTS: applying it again would fail
  // the open, and would not keep the rows.
  for (int reopen = 0; reopen < 2; ++reopen) {
    std::unique_ptr<Store> store = OpenOrDie(db.path());
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->SchemaVersion(), static_cast<int>(Migrations().size()));
    StatusOr<JobRecord> job = store->GetJob(job_id);
    ASSERT_TRUE(job.ok()) << job.status().ToString();
    EXPECT_EQ(job->name, "first");
    StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(job_id);
    ASSERT_TRUE(trials.ok()) << trials.status().ToString();
    ASSERT_EQ(trials->size(), 1u);
    EXPECT_EQ((*trials)[0].id, trial_id);
    StatusOr<std::vector<CurvePoint>> points = store->ListCurvePoints(job_id);
    ASSERT_TRUE(points.ok()) << points.status().ToString();
    ASSERT_EQ(points->size(), 1u);
    ExpectSamePoint((*points)[0], MakePoint(trial_id, 1));
  }
}

TEST(Storage, JobsRoundTripAllFieldsInIdOrder) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);

  std::vector<JobRecord> created;
  const JobState states[] = {JobState::kQueued, JobState::kRunning, JobState::kCompleted,
                             JobState::kCancelled, JobState::kFailed};
  for (int i = 0; i < 5; ++i) {
    JobRecord job = MakeJob("job-" + std::to_string(i) + " with 'quotes'; DROP TABLE jobs;--");
    job.id = 999;  // ignored
    job.state = states[i];
    job.created_at = 1700000000.5 + i;
    job.finished_at = i == 0 ? 0.0 : 1700000100.0625 + i;
    StatusOr<int64_t> id = store->CreateJob(job);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    if (!created.empty()) {
      EXPECT_GT(*id, created.back().id);
    }
    job.id = *id;
    created.push_back(job);
  }

  for (const JobRecord& job : created) {
    StatusOr<JobRecord> read = store->GetJob(job.id);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    ExpectSameJob(*read, job);
  }
  StatusOr<std::vector<JobRecord>> jobs = store->ListJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  ASSERT_EQ(jobs->size(), created.size());
  for (size_t i = 0; i < created.size(); ++i) ExpectSameJob((*jobs)[i], created[i]);
}

TEST(Storage, GetJobOfMissingIdIsNotFound) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<JobRecord> job = store->GetJob(42);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), Status::Code::kNotFound);
  EXPECT_EQ(job.status().message(), "job 42 not found");
}

TEST(Storage, SetJobStateStoresStateMessageAndFinishTime) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  JobRecord job = MakeJob("stateful");
  job.state = JobState::kQueued;
  job.message = "";
  StatusOr<int64_t> id = store->CreateJob(job);
  ASSERT_TRUE(id.ok()) << id.status().ToString();

  ASSERT_TRUE(store->SetJobState(*id, JobState::kRunning, "", 1700000001.0).ok());
  StatusOr<JobRecord> running = store->GetJob(*id);
  ASSERT_TRUE(running.ok()) << running.status().ToString();
  EXPECT_EQ(running->state, JobState::kRunning);
  EXPECT_EQ(running->finished_at, 0.0);  // not finished yet
  EXPECT_EQ(running->created_at, job.created_at);

  ASSERT_TRUE(store->SetJobState(*id, JobState::kFailed, "worker lost", 1700000002.5).ok());
  StatusOr<JobRecord> failed = store->GetJob(*id);
  ASSERT_TRUE(failed.ok()) << failed.status().ToString();
  EXPECT_EQ(failed->state, JobState::kFailed);
  EXPECT_EQ(failed->message, "worker lost");
  EXPECT_EQ(failed->finished_at, 1700000002.5);
  EXPECT_EQ(failed->name, "stateful");

  Status missing = store->SetJobState(*id + 1, JobState::kCancelled, "", 1.0);
  EXPECT_EQ(missing.code(), Status::Code::kNotFound) << missing.ToString();
}

TEST(Storage, AJobsCountedLinksAreUnsetUntilFixedThenReadBack) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> id = store->CreateJob(MakeJob("links"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  StatusOr<JobRecord> before = store->GetJob(*id);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE(before->counted_links.has_value());

  const CountedLinks links{{1.25e6, 0.002}, {3.5e5, 0.04}, "inter_node measured by a link test"};
  ASSERT_TRUE(store->FixCountedLinks(*id, links).ok());
  StatusOr<std::vector<JobRecord>> all = store->ListJobs();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 1u);
  ASSERT_TRUE((*all)[0].counted_links.has_value());
  const CountedLinks& got = *(*all)[0].counted_links;
  EXPECT_EQ(got.inter_node.bandwidth_bytes_s, 1.25e6);
  EXPECT_EQ(got.inter_node.latency_s, 0.002);
  EXPECT_EQ(got.edge_cloud.bandwidth_bytes_s, 3.5e5);
  EXPECT_EQ(got.edge_cloud.latency_s, 0.04);
  EXPECT_EQ(got.how, links.how);

  // Fixed as declared: set, with no "how".
  StatusOr<int64_t> other = store->CreateJob(MakeJob("declared"));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(store->FixCountedLinks(*other, CountedLinks{}).ok());
  StatusOr<JobRecord> declared = store->GetJob(*other);
  ASSERT_TRUE(declared.ok() && declared->counted_links.has_value());
  EXPECT_EQ(declared->counted_links->how, "");

  Status missing = store->FixCountedLinks(*other + 1, links);
  EXPECT_EQ(missing.code(), Status::Code::kNotFound) << missing.ToString();
}

TEST(Storage, TrialsRoundTripAllFieldsByNumber) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  StatusOr<int64_t> other_job = store->CreateJob(MakeJob("b"));
  ASSERT_TRUE(job.ok() && other_job.ok());

  // Created out of order; listed by number. One trial per state.
  const TrialState states[] = {
      TrialState::kPending, TrialState::kRunning,    TrialState::kPaused, TrialState::kCompleted,
      TrialState::kStopped, TrialState::kInfeasible, TrialState::kFailed};
  std::vector<TrialRecord> expected(7);
  for (int number : {3, 0, 6, 1, 5, 2, 4}) {
    TrialRecord trial = MakeTrial(*job, number);
    trial.id = 12345;  // ignored
    trial.state = states[number];
    trial.reached_target = number % 2 == 1;
    StatusOr<int64_t> id = store->CreateTrial(trial);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    trial.id = *id;
    expected[number] = trial;
  }
  ASSERT_TRUE(store->CreateTrial(MakeTrial(*other_job, 0)).ok());

  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(*job);
  ASSERT_TRUE(trials.ok()) << trials.status().ToString();
  ASSERT_EQ(trials->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) ExpectSameTrial((*trials)[i], expected[i]);

  StatusOr<std::vector<TrialRecord>> other = store->ListTrials(*other_job);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ((*other)[0].job_id, *other_job);
}

TEST(Storage, CreateTrialRejectsDuplicateNumberAndMissingJob) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(store->CreateTrial(MakeTrial(*job, 0)).ok());

  StatusOr<int64_t> duplicate = store->CreateTrial(MakeTrial(*job, 0));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.status().code(), Status::Code::kIOError);
  EXPECT_NE(duplicate.status().message().find("UNIQUE"), std::string::npos)
      << duplicate.status().message();

  // Foreign keys are enforced.
  StatusOr<int64_t> orphan = store->CreateTrial(MakeTrial(*job + 100, 0));
  ASSERT_FALSE(orphan.ok());
  EXPECT_NE(orphan.status().message().find("FOREIGN KEY"), std::string::npos)
      << orphan.status().message();

  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(*job);
  ASSERT_TRUE(trials.ok());
  EXPECT_EQ(trials->size(), 1u);
}

TEST(Storage, UpdateTrialOverwritesEveryField) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  ASSERT_TRUE(job.ok());
  StatusOr<int64_t> id = store->CreateTrial(MakeTrial(*job, 0));
  ASSERT_TRUE(id.ok()) << id.status().ToString();

  TrialRecord updated = MakeTrial(*job, 7);
  updated.id = *id;
  updated.config.batch_size = 512;
  updated.config.learning_rate = 3.0e-4;
  updated.config.optimizer = Optimizer::kAdam;
  updated.seed = 1;
  updated.state = TrialState::kCompleted;
  updated.rung = 2;
  updated.bracket = 4;
  updated.rung_start_epoch = 9;
  updated.attempt = 5;
  updated.epochs_done = 27;
  updated.target_epochs = 27;
  updated.worker = "gpu-0";
  updated.reason = "reached the target";
  updated.reached_target = true;
  updated.tta_s = 1.0 / 3.0;
  updated.train_s = 2.0 / 3.0;
  updated.best_accuracy = 0.99;
  updated.confirms = 3;
  updated.repeats = 2;
  // A stopped trial's forecast, "never" included: infinite seconds survive the file.
  updated.forecast =
      TrialForecast{12.5, 7.25, std::numeric_limits<double>::infinity(), 0.004, 0.35, 0.61};
  Status status = store->UpdateTrial(updated);
  ASSERT_TRUE(status.ok()) << status.ToString();

  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(*job);
  ASSERT_TRUE(trials.ok()) << trials.status().ToString();
  ASSERT_EQ(trials->size(), 1u);
  ExpectSameTrial((*trials)[0], updated);
  // And it is cleared again: NULL, not zeros.
  updated.forecast.reset();
  ASSERT_TRUE(store->UpdateTrial(updated).ok());
  trials = store->ListTrials(*job);
  ASSERT_TRUE(trials.ok()) << trials.status().ToString();
  ExpectSameTrial((*trials)[0], updated);

  TrialRecord missing = updated;
  missing.id = *id + 100;
  Status not_found = store->UpdateTrial(missing);
  EXPECT_EQ(not_found.code(), Status::Code::kNotFound) << not_found.ToString();
}

TEST(Storage, CurvePointsRoundTripAndDuplicateEpochIsReplaced) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  StatusOr<int64_t> other_job = store->CreateJob(MakeJob("b"));
  ASSERT_TRUE(job.ok() && other_job.ok());
  StatusOr<int64_t> t0 = store->CreateTrial(MakeTrial(*job, 0));
  StatusOr<int64_t> t1 = store->CreateTrial(MakeTrial(*job, 1));
  StatusOr<int64_t> t_other = store->CreateTrial(MakeTrial(*other_job, 0));
  ASSERT_TRUE(t0.ok() && t1.ok() && t_other.ok());

  // Out of order, across trials; the listing is by (trial id, epoch).
  for (auto [trial, epoch] : std::vector<std::pair<int64_t, int>>{
           {*t1, 2}, {*t0, 2}, {*t1, 1}, {*t0, 1}, {*t0, 3}, {*t_other, 1}}) {
    Status status = store->AppendCurvePoint(MakePoint(trial, epoch));
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  // The same epoch again, with other numbers: stored once, the latest wins.
  CurvePoint again = MakePoint(*t0, 2);
  again.val_accuracy = 0.875;
  again.train_loss = 0.5;
  ASSERT_TRUE(store->AppendCurvePoint(again).ok());
  ASSERT_TRUE(store->AppendCurvePoint(again).ok());

  StatusOr<std::vector<CurvePoint>> points = store->ListCurvePoints(*job);
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  const std::vector<CurvePoint> expected = {MakePoint(*t0, 1), again, MakePoint(*t0, 3),
                                            MakePoint(*t1, 1), MakePoint(*t1, 2)};
  ASSERT_EQ(points->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) ExpectSamePoint((*points)[i], expected[i]);

  // A point for a trial that does not exist is refused.
  EXPECT_FALSE(store->AppendCurvePoint(MakePoint(*t_other + 100, 1)).ok());
}

TEST(Storage, RecordEpochWritesPointAndTrialTogether) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  ASSERT_TRUE(job.ok());
  TrialRecord trial = MakeTrial(*job, 0);
  trial.state = TrialState::kRunning;
  trial.epochs_done = 0;
  StatusOr<int64_t> id = store->CreateTrial(trial);
  StatusOr<int64_t> sibling = store->CreateTrial(MakeTrial(*job, 1));
  ASSERT_TRUE(id.ok() && sibling.ok());
  trial.id = *id;

  trial.epochs_done = 1;
  trial.best_accuracy = 0.42;
  Status status = store->RecordEpoch(MakePoint(*id, 1), trial);
  ASSERT_TRUE(status.ok()) << status.ToString();
  StatusOr<std::vector<CurvePoint>> points = store->ListCurvePoints(*job);
  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(*job);
  ASSERT_TRUE(points.ok() && trials.ok());
  ASSERT_EQ(points->size(), 1u);
  ExpectSamePoint((*points)[0], MakePoint(*id, 1));
  ExpectSameTrial((*trials)[0], trial);

  // The trial update fails (its number collides with the sibling's): the point of the
  // same transaction must not be stored either.
  TrialRecord bad = trial;
  bad.epochs_done = 2;
  bad.number = 1;
  Status failed = store->RecordEpoch(MakePoint(*id, 2), bad);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.code(), Status::Code::kIOError) << failed.ToString();
  points = store->ListCurvePoints(*job);
  trials = store->ListTrials(*job);
  ASSERT_TRUE(points.ok() && trials.ok());
  EXPECT_EQ(points->size(), 1u);
  ExpectSameTrial((*trials)[0], trial);

  // A trial that does not exist: NotFound, and nothing stored.
  TrialRecord gone = trial;
  gone.id = *sibling + 100;
  CurvePoint gone_point = MakePoint(gone.id, 1);
  EXPECT_FALSE(store->RecordEpoch(gone_point, gone).ok());
  // A point of another trial than the record is refused.
  EXPECT_EQ(store->RecordEpoch(MakePoint(*sibling, 1), trial).code(),
            Status::Code::kInvalidArgument);
  points = store->ListCurvePoints(*job);
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(points->size(), 1u);
}

TEST(Storage, DeviceProbesRoundTripAndAReprobeReplacesRows) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  DeviceProbe probe;
  probe.worker_id = "jetson-1";
  probe.model = "resnet18";
  probe.input = "3x32x32";
  probe.measured_at = 100.0;
  probe.batches = {{16, true, 12.5, int64_t{1} << 30, "", 4.0, 7.5, 1.0, 1.5, false, 30.5},
                   {32, true, 23.0, int64_t{3} << 30, "", 0, 0, 0, 0, /*adam_does_not_fit=*/true},
                   {64, false, 0.0, 0, "out of memory"}};
  ASSERT_TRUE(store->UpsertDeviceProbe(probe).ok());
  DeviceProbe other = probe;
  other.model = "lenet";
  other.batches = {{512, true, 4.0, 1000, ""}};
  ASSERT_TRUE(store->UpsertDeviceProbe(other).ok());
  probe.batches[1].step_ms = 22.0;  // measured again
  probe.batches.resize(2);
  ASSERT_TRUE(store->UpsertDeviceProbe(probe).ok());

  StatusOr<std::vector<DeviceProbe>> probes = store->ListDeviceProbes();
  ASSERT_TRUE(probes.ok()) << probes.status().ToString();
  ASSERT_EQ(probes->size(), 2u);
  EXPECT_EQ((*probes)[0].model, "lenet");  // ordered by (worker, model, input)
  const DeviceProbe& got = (*probes)[1];
  ASSERT_EQ(got.batches.size(), 3u);
  EXPECT_EQ(got.batches[1].step_ms, 22.0);
  EXPECT_EQ(got.batches[1].peak_memory_bytes, int64_t{3} << 30);
  EXPECT_FALSE(got.batches[2].fits);
  EXPECT_EQ(got.batches[2].error, "out of memory");
  EXPECT_EQ(got.MaxBatchSize(), 32);
  // The step's parts (migration 8), and 0 where a probe did not split it.
  EXPECT_EQ(got.batches[0].forward_ms, 4.0);
  EXPECT_EQ(got.batches[0].backward_ms, 7.5);
  EXPECT_EQ(got.batches[0].optimizer_ms, 1.0);
  EXPECT_EQ(got.batches[1].forward_ms, 0.0);
  // Adam's optimizer part (migration 13).
  EXPECT_EQ(got.batches[0].adam_optimizer_ms, 1.5);
  EXPECT_EQ(got.batches[1].adam_optimizer_ms, 0.0);
  // Where Adam's state does not fit (migration 14).
  EXPECT_FALSE(got.batches[0].adam_does_not_fit);
  EXPECT_TRUE(got.batches[1].adam_does_not_fit);
  // The seconds each size was timed (migration 16); 0 where a probe did not say.
  EXPECT_EQ(got.batches[0].timed_s, 30.5);
  EXPECT_EQ(got.batches[1].timed_s, 0.0);
  EXPECT_EQ(got.MaxBatchSize(), 32);
  EXPECT_EQ(got.MaxBatchSize({Optimizer::kSgd, Optimizer::kAdam}), 16);
}

TEST(Storage, UpsertWorkerInsertsThenUpdates) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  WorkerRecord gpu;
  gpu.id = "worker-b";
  gpu.device = {"cuda", "NVIDIA H200", 132, int64_t{141} << 30, "h200", "cloud"};
  gpu.state = "idle";
  gpu.connected_at = 1700000000.25;
  gpu.last_heartbeat = 1700000000.25;
  WorkerRecord cpu;
  cpu.id = "worker-a";
  cpu.device = {"cpu", "Xeon", 16, int64_t{128} << 30, "", ""};  // an older worker
  cpu.state = "busy";
  cpu.connected_at = 1700000001.5;
  cpu.last_heartbeat = 1700000002.75;
  ASSERT_TRUE(store->UpsertWorker(gpu).ok());
  ASSERT_TRUE(store->UpsertWorker(cpu).ok());

  gpu.state = "busy";
  gpu.last_heartbeat = 1700000010.125;
  gpu.device.name = "NVIDIA H200 (MIG)";
  gpu.device.site = "cloud-2";
  Status status = store->UpsertWorker(gpu);
  ASSERT_TRUE(status.ok()) << status.ToString();

  StatusOr<std::vector<WorkerRecord>> workers = store->ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status().ToString();
  ASSERT_EQ(workers->size(), 2u);  // by id: worker-a, worker-b
  const WorkerRecord* expected[] = {&cpu, &gpu};
  for (int i = 0; i < 2; ++i) {
    const WorkerRecord& got = (*workers)[i];
    const WorkerRecord& want = *expected[i];
    EXPECT_EQ(got.id, want.id);
    EXPECT_EQ(got.device.kind, want.device.kind);
    EXPECT_EQ(got.device.name, want.device.name);
    EXPECT_EQ(got.device.cores, want.device.cores);
    EXPECT_EQ(got.device.memory_bytes, want.device.memory_bytes);
    EXPECT_EQ(got.device.device_class, want.device.device_class);
    EXPECT_EQ(got.device.site, want.device.site);
    EXPECT_EQ(got.state, want.state);
    EXPECT_EQ(got.connected_at, want.connected_at);
    EXPECT_EQ(got.last_heartbeat, want.last_heartbeat);
  }
}

TokenRecord MakeToken(const std::string& name, Role role, bool external) {
  TokenRecord token;
  token.name = name;
  token.role = role;
  token.hash_hex = std::string(63, 'a') + (external ? "e" : "0");
  token.external = external;
  token.created_at = 1700000000.5;
  return token;
}

TEST(Storage, TokensRoundTripAllFieldsInIdOrder) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<std::vector<TokenRecord>> empty = store->ListTokens();
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());

  const std::vector<TokenRecord> want = {
      MakeToken("ops", Role::kAdmin, false), MakeToken("alice", Role::kUser, false),
      MakeToken("admin", Role::kAdmin, true), MakeToken("board-1", Role::kWorker, false)};
  std::vector<int64_t> ids;
  for (const TokenRecord& token : want) {
    StatusOr<int64_t> id = store->CreateToken(token);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  ASSERT_TRUE(store->TouchToken(ids[1], 1700000100.25).ok());
  ASSERT_TRUE(store->RevokeToken(ids[3], 1700000200.75).ok());

  StatusOr<std::vector<TokenRecord>> got = store->ListTokens();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const TokenRecord& t = (*got)[i];
    EXPECT_EQ(t.id, ids[i]);
    EXPECT_EQ(t.name, want[i].name);
    EXPECT_EQ(t.role, want[i].role);
    EXPECT_EQ(t.hash_hex, want[i].hash_hex);
    EXPECT_EQ(t.external, want[i].external);
    EXPECT_EQ(t.created_at, want[i].created_at);
    EXPECT_EQ(t.last_used_at, i == 1 ? 1700000100.25 : 0.0);
    EXPECT_EQ(t.revoked_at, i == 3 ? 1700000200.75 : 0.0);
  }
  StatusOr<TokenRecord> one = store->GetToken(ids[2]);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->name, "admin");
  EXPECT_TRUE(one->external);

  // Only external rows are found by hash.
  StatusOr<std::vector<TokenRecord>> external = store->FindExternalTokens(want[2].hash_hex);
  ASSERT_TRUE(external.ok()) << external.status().ToString();
  ASSERT_EQ(external->size(), 1u);
  EXPECT_EQ((*external)[0].id, ids[2]);
  StatusOr<std::vector<TokenRecord>> internal = store->FindExternalTokens(want[0].hash_hex);
  ASSERT_TRUE(internal.ok()) << internal.status().ToString();
  EXPECT_TRUE(internal->empty());
}

TEST(Storage, TokenErrorsSayWhichTokenAndWhy) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> id = store->CreateToken(MakeToken("u", Role::kUser, false));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  const int64_t missing = *id + 1;

  StatusOr<TokenRecord> get = store->GetToken(missing);
  EXPECT_EQ(get.status().code(), Status::Code::kNotFound) << get.status().ToString();
  Status touch = store->TouchToken(missing, 1.0);
  EXPECT_EQ(touch.code(), Status::Code::kNotFound) << touch.ToString();
  Status revoke = store->RevokeToken(missing, 1.0);
  EXPECT_EQ(revoke.code(), Status::Code::kNotFound) << revoke.ToString();
  EXPECT_NE(revoke.message().find("token " + std::to_string(missing)), std::string::npos);

  ASSERT_TRUE(store->RevokeToken(*id, 2.0).ok());
  Status twice = store->RevokeToken(*id, 3.0);
  EXPECT_EQ(twice.code(), Status::Code::kFailedPrecondition) << twice.ToString();
  StatusOr<TokenRecord> kept = store->GetToken(*id);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_EQ(kept->revoked_at, 2.0);  // the first revocation stands
}

TEST(Storage, DatabaseIsInWalMode) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateJob(MakeJob("a")).ok());
  EXPECT_TRUE(fs::exists(db.path() + "-wal"));
  EXPECT_TRUE(fs::exists(db.path() + "-shm"));
}

TEST(Storage, OpenInMissingDirectoryFails) {
  TempDatabase db;
  const std::string path = (fs::path(db.path()).parent_path() / "no" / "such" / "x.db").string();
  StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kIOError);
  EXPECT_NE(store.status().message().find(path), std::string::npos) << store.status().message();
  EXPECT_NE(store.status().message().find("unable to open"), std::string::npos)
      << store.status().message();
}

TEST(Storage, InMemoryDatabaseReadsItsOwnWrites) {
  // ":memory:" cannot use WAL; reads then share the writer connection.
  std::unique_ptr<Store> store = OpenOrDie(":memory:");
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SchemaVersion(), static_cast<int>(Migrations().size()));
  StatusOr<int64_t> id = store->CreateJob(MakeJob("memory"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  StatusOr<JobRecord> job = store->GetJob(*id);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->name, "memory");
}

TEST(Storage, ConcurrentWritesAndReadsAllLand) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kJobsPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads + 1, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobsPerThread; ++i) {
        if (!store->CreateJob(MakeJob("t" + std::to_string(t))).ok()) ++failures[t];
      }
    });
  }
  threads.emplace_back([&] {
    size_t last = 0;
    for (int i = 0; i < 50; ++i) {
      StatusOr<std::vector<JobRecord>> jobs = store->ListJobs();
      if (!jobs.ok() || jobs->size() < last) ++failures[kThreads];
      if (jobs.ok()) last = jobs->size();
    }
  });
  for (std::thread& thread : threads) thread.join();
  for (int count : failures) EXPECT_EQ(count, 0);
  StatusOr<std::vector<JobRecord>> jobs = store->ListJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), static_cast<size_t>(kThreads * kJobsPerThread));
  for (size_t i = 1; i < jobs->size(); ++i) EXPECT_LT((*jobs)[i - 1].id, (*jobs)[i].id);
}

RungResultRecord Result(int64_t trial_id, int rung, double accuracy, bool promoted) {
  RungResultRecord r;
  r.rung = rung;
  r.result = {trial_id, /*reached_target=*/accuracy > 0.9, /*tta_s=*/accuracy * 10, accuracy};
  r.promoted = promoted;
  return r;
}

Observation Observed(int rung, double score, Observation::Kind kind) {
  Observation o;
  o.rung = rung;
  o.score = score;
  o.kind = kind;
  return o;
}

TEST(Storage, RungResultsAndSamplerEventsRoundTripInOrder) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  StatusOr<int64_t> other_job = store->CreateJob(MakeJob("b"));
  ASSERT_TRUE(job.ok() && other_job.ok());
  std::vector<TrialRecord> trials;
  for (int number : {0, 1, 2}) {
    TrialRecord t = MakeTrial(*job, number);
    StatusOr<int64_t> id = store->CreateProposedTrial(t, /*max_batch_size=*/64 >> number);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    t.id = *id;
    trials.push_back(t);
  }
  StatusOr<int64_t> stranger = store->CreateProposedTrial(MakeTrial(*other_job, 0), 16);
  ASSERT_TRUE(stranger.ok());

  const double score = 0.12345678901234568;  // survives only as the exact double
  trials[0].state = TrialState::kPaused;
  ASSERT_TRUE(store
                  ->RecordRungResult(trials[0], Result(trials[0].id, 0, 0.5, false),
                                     Observed(0, score, Observation::Kind::kOk))
                  .ok());
  trials[1].state = TrialState::kFailed;
  ASSERT_TRUE(store
                  ->RecordRungResult(trials[1], Result(trials[1].id, 0, -1.0, true),
                                     Observed(0, 0.0, Observation::Kind::kFailed))
                  .ok());
  trials[2].state = TrialState::kInfeasible;
  ASSERT_TRUE(store
                  ->RecordRungResult(trials[2], Result(trials[2].id, 0, -1.0, true),
                                     Observed(0, 0.0, Observation::Kind::kInfeasible))
                  .ok());
  // Promoted out of rung 0 and recorded at rung 1.
  trials[0].state = TrialState::kRunning;
  trials[0].rung = 1;
  trials[0].rung_start_epoch = 3;
  Status promoted = store->MarkPromoted(trials[0], 0);
  ASSERT_TRUE(promoted.ok()) << promoted.ToString();
  trials[0].state = TrialState::kCompleted;
  ASSERT_TRUE(store
                  ->RecordRungResult(trials[0], Result(trials[0].id, 1, 0.95, true),
                                     Observed(1, 1.5, Observation::Kind::kOk))
                  .ok());
  // A result recorded again keeps its place and its promoted mark.
  ASSERT_TRUE(store
                  ->RecordRungResult(trials[1], Result(trials[1].id, 0, 0.25, false),
                                     Observed(0, 0.25, Observation::Kind::kOk))
                  .ok());

  StatusOr<std::vector<RungResultRecord>> results = store->ListRungResults(*job);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  const std::vector<RungResultRecord> expected_results = {
      Result(trials[0].id, 0, 0.5, true), Result(trials[1].id, 0, 0.25, true),
      Result(trials[2].id, 0, -1.0, true), Result(trials[0].id, 1, 0.95, true)};
  ASSERT_EQ(results->size(), expected_results.size());
  for (size_t i = 0; i < expected_results.size(); ++i) {
    SCOPED_TRACE("result " + std::to_string(i));
    const RungResultRecord& got = (*results)[i];
    const RungResultRecord& want = expected_results[i];
    EXPECT_EQ(got.rung, want.rung);
    EXPECT_EQ(got.promoted, want.promoted);
    EXPECT_EQ(got.result.trial_id, want.result.trial_id);
    EXPECT_EQ(got.result.reached_target, want.result.reached_target);
    EXPECT_EQ(got.result.tta_s, want.result.tta_s);
    EXPECT_EQ(got.result.accuracy, want.result.accuracy);
  }

  StatusOr<std::vector<SamplerEvent>> events = store->ListSamplerEvents(*job);
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  using Kind = SamplerEvent::Kind;
  struct Expected {
    Kind kind;
    size_t trial;
    int max_batch_size;
    int rung;
    double score;
    Observation::Kind outcome;
  };
  const std::vector<Expected> expected_events = {
      {Kind::kPropose, 0, 64, 0, 0.0, Observation::Kind::kOk},
      {Kind::kPropose, 1, 32, 0, 0.0, Observation::Kind::kOk},
      {Kind::kPropose, 2, 16, 0, 0.0, Observation::Kind::kOk},
      {Kind::kObserve, 0, 0, 0, score, Observation::Kind::kOk},
      {Kind::kObserve, 1, 0, 0, 0.0, Observation::Kind::kFailed},
      {Kind::kObserve, 2, 0, 0, 0.0, Observation::Kind::kInfeasible},
      {Kind::kObserve, 0, 0, 1, 1.5, Observation::Kind::kOk},
      {Kind::kObserve, 1, 0, 0, 0.25, Observation::Kind::kOk}};
  ASSERT_EQ(events->size(), expected_events.size());
  for (size_t i = 0; i < expected_events.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    const SamplerEvent& got = (*events)[i];
    const Expected& want = expected_events[i];
    const TrialRecord& trial = trials[want.trial];
    EXPECT_EQ(got.kind, want.kind);
    EXPECT_EQ(got.trial_id, trial.id);
    if (want.kind == Kind::kPropose) {
      EXPECT_EQ(got.max_batch_size, want.max_batch_size);
      continue;
    }
    EXPECT_EQ(got.observation.rung, want.rung);
    EXPECT_EQ(got.observation.score, want.score);
    EXPECT_EQ(got.observation.kind, want.outcome);
    EXPECT_EQ(got.observation.config.batch_size, trial.config.batch_size);
    EXPECT_EQ(got.observation.config.learning_rate, trial.config.learning_rate);
    EXPECT_EQ(got.observation.config.optimizer, trial.config.optimizer);
  }
  StatusOr<std::vector<SamplerEvent>> other_events = store->ListSamplerEvents(*other_job);
  ASSERT_TRUE(other_events.ok());
  ASSERT_EQ(other_events->size(), 1u);
  EXPECT_EQ((*other_events)[0].trial_id, *stranger);

  // The trials were stored with each change.
  StatusOr<std::vector<TrialRecord>> stored = store->ListTrials(*job);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 3u);
  for (size_t i = 0; i < 3; ++i) ExpectSameTrial((*stored)[i], trials[i]);

  // No result at rung 2: NotFound, and the trial update of that call is rolled back.
  TrialRecord unpromotable = trials[2];
  unpromotable.state = TrialState::kRunning;
  EXPECT_EQ(store->MarkPromoted(unpromotable, 2).code(), Status::Code::kNotFound);
  stored = store->ListTrials(*job);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)[2].state, TrialState::kInfeasible);
}

TEST(Storage, ResetTrialAndARewoundEpochRemoveTheLaterPoints) {
  TempDatabase db;
  std::unique_ptr<Store> store = OpenOrDie(db.path());
  ASSERT_NE(store, nullptr);
  StatusOr<int64_t> job = store->CreateJob(MakeJob("a"));
  ASSERT_TRUE(job.ok());
  TrialRecord trial = MakeTrial(*job, 0);
  StatusOr<int64_t> id = store->CreateTrial(trial);
  StatusOr<int64_t> sibling = store->CreateTrial(MakeTrial(*job, 1));
  ASSERT_TRUE(id.ok() && sibling.ok());
  trial.id = *id;
  for (int epoch = 1; epoch <= 5; ++epoch) {
    ASSERT_TRUE(store->AppendCurvePoint(MakePoint(*id, epoch)).ok());
    ASSERT_TRUE(store->AppendCurvePoint(MakePoint(*sibling, epoch)).ok());
  }
  // Cut back to epoch 3: epochs 4 and 5 leave with the trial's update, which keeps their
  // seconds (migration 17).
  trial.state = TrialState::kPending;
  trial.epochs_done = 3;
  trial.cut_s = 2.5;
  Status reset = store->ResetTrial(trial, 3);
  ASSERT_TRUE(reset.ok()) << reset.ToString();
  StatusOr<std::vector<CurvePoint>> points = store->ListCurvePoints(*job);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 8u);
  for (int e = 1; e <= 3; ++e) ExpectSamePoint((*points)[e - 1], MakePoint(*id, e));
  StatusOr<std::vector<TrialRecord>> trials = store->ListTrials(*job);
  ASSERT_TRUE(trials.ok());
  ExpectSameTrial((*trials)[0], trial);

  // An epoch reported again (a rewound segment) replaces its point and drops the later ones.
  trial.epochs_done = 2;
  ASSERT_TRUE(store->RecordEpoch(MakePoint(*id, 2), trial).ok());
  points = store->ListCurvePoints(*job);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 7u);
  EXPECT_EQ((*points)[1].epoch, 2);
  EXPECT_EQ((*points)[2].trial_id, *sibling);

  // A failed reset changes nothing.
  TrialRecord bad = trial;
  bad.number = 1;  // collides with the sibling
  EXPECT_FALSE(store->ResetTrial(bad, 0).ok());
  points = store->ListCurvePoints(*job);
  ASSERT_TRUE(points.ok());
  EXPECT_EQ(points->size(), 7u);
}

// A scripted job on a store, run for a number of calls.
struct ScriptedJob {
  ScriptedJob(Store* store, const std::string& algorithm, int calls) {
    JobRecord job;
    job.name = algorithm;
    job.state = JobState::kQueued;
    StatusOr<int64_t> id = store->CreateJob(job);
    EXPECT_TRUE(id.ok());
    job.id = *id;
    engine = std::make_unique<JobEngine>(job, ScriptSpec(algorithm), store);
    script.emplace(engine.get(), ScriptWorkers());
    for (int i = 0; i < calls; ++i) script->Step();
  }
  std::unique_ptr<JobEngine> engine;
  std::optional<JobScript> script;
};

TEST(Storage, AnEngineRestoredFromTheFileDecidesAsTheOneThatWroteIt) {
  for (const char* algorithm : {"tpe", "gp", "hyperband", "asha-seconds"}) {
    for (int calls : {37, 101}) {
      SCOPED_TRACE(std::string(algorithm) + " restored after call " + std::to_string(calls));
      // The same job twice, on two files: one keeps running, the other is closed (the
      // killed controller) and reopened.
      TempDatabase original_db, restored_db;
      std::unique_ptr<Store> original_store = OpenOrDie(original_db.path());
      std::unique_ptr<Store> killed_store = OpenOrDie(restored_db.path());
      ASSERT_TRUE(original_store && killed_store);
      ScriptedJob original(original_store.get(), algorithm, calls);
      ScriptedJob killed(killed_store.get(), algorithm, calls);
      JobScript& script = *original.script;
      JobScript killed_script = *killed.script;
      killed.engine.reset();
      killed_store.reset();

      std::unique_ptr<Store> store = OpenOrDie(restored_db.path());
      ASSERT_NE(store, nullptr);
      StatusOr<JobRecord> job = store->GetJob(1);
      ASSERT_TRUE(job.ok());
      StatusOr<std::unique_ptr<JobEngine>> restored =
          JobEngine::Restore(*job, ScriptSpec(algorithm), store.get());
      ASSERT_TRUE(restored.ok()) << restored.status().ToString();
      for (const std::string& worker : script.BusyWorkersByTrial()) {
        ASSERT_TRUE(original.engine->OnWorkerLost(worker, 0).ok());
      }
      script.DropSegments();
      ASSERT_FALSE(IsTerminal(original.engine->state()));
      script.Reconnect();
      killed_script.DropSegments();
      killed_script.set_engine(restored->get());
      for (int call = 0;; ++call) {
        const std::string expected = script.Step();
        ASSERT_EQ(killed_script.Step(), expected) << "call " << call << " after the restore";
        if (expected.empty()) break;
        ASSERT_LT(call, 5000);
      }
      // The two files hold the same job.
      StatusOr<std::vector<TrialRecord>> a = original_store->ListTrials(1);
      StatusOr<std::vector<TrialRecord>> b = store->ListTrials(1);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(a->size(), b->size());
      for (size_t i = 0; i < a->size(); ++i) {
        (*a)[i].reason = (*b)[i].reason;  // a lost worker and a restart say it differently
        ExpectSameTrial((*a)[i], (*b)[i]);
      }
      StatusOr<std::vector<CurvePoint>> pa = original_store->ListCurvePoints(1);
      StatusOr<std::vector<CurvePoint>> pb = store->ListCurvePoints(1);
      ASSERT_TRUE(pa.ok() && pb.ok());
      ASSERT_EQ(pa->size(), pb->size());
      for (size_t i = 0; i < pa->size(); ++i) ExpectSamePoint((*pa)[i], (*pb)[i]);
      StatusOr<std::vector<SamplerEvent>> ea = original_store->ListSamplerEvents(1);
      StatusOr<std::vector<SamplerEvent>> eb = store->ListSamplerEvents(1);
      ASSERT_TRUE(ea.ok() && eb.ok());
      EXPECT_EQ(ea->size(), eb->size());
    }
  }
}

}  // namespace
}  // namespace topotune
