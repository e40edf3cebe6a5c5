#include "storage/migrations.h"

#include <sqlite3.h>

#include <string>

namespace topotune {
namespace {

// The bookkeeping table exists before any migration, so it is created outside them.
constexpr const char* kCreateSchemaMigrations = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  applied_at REAL NOT NULL  -- seconds since the Unix epoch
);
)sql";

// No IF NOT EXISTS: a migration that ran twice must fail loudly.
// Enum columns hold their names (JobStateName, TrialStateName, OptimizerName). Trials by
// job are served by the index behind UNIQUE (job_id, number); curve points by trial by
// their primary key.
constexpr const char* kInitialSchema = R"sql(
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  created_at REAL NOT NULL,
  finished_at REAL NOT NULL DEFAULT 0
);

CREATE TABLE trials (
  id INTEGER PRIMARY KEY,
  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  number INTEGER NOT NULL,
  batch_size INTEGER NOT NULL,
  learning_rate REAL NOT NULL,
  optimizer TEXT NOT NULL,
  seed INTEGER NOT NULL,  -- the uint64 seed's bits as int64
  state TEXT NOT NULL,
  rung INTEGER NOT NULL,
  epochs_done INTEGER NOT NULL,
  target_epochs INTEGER NOT NULL,
  worker TEXT NOT NULL,
  reason TEXT NOT NULL,
  reached_target INTEGER NOT NULL,
  tta_s REAL NOT NULL,
  train_s REAL NOT NULL,
  best_accuracy REAL NOT NULL,
  UNIQUE (job_id, number)
);

CREATE TABLE curve_points (
  trial_id INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
  epoch INTEGER NOT NULL,
  samples_seen INTEGER NOT NULL,
  train_loss REAL NOT NULL,
  val_accuracy REAL NOT NULL,
  compute_s REAL NOT NULL,
  comm_s REAL NOT NULL,
  eval_s REAL NOT NULL,
  wall_s REAL NOT NULL,
  step_ms_p50 REAL NOT NULL,
  step_ms_p95 REAL NOT NULL,
  peak_memory_bytes INTEGER NOT NULL,
  PRIMARY KEY (trial_id, epoch)
);

CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  device_kind TEXT NOT NULL,
  device_name TEXT NOT NULL,
  cores INTEGER NOT NULL,
  memory_bytes INTEGER NOT NULL,
  state TEXT NOT NULL,
  connected_at REAL NOT NULL,
  last_heartbeat REAL NOT NULL
);
)sql";

// Per-phase training times of an epoch, and what devices measured per batch size.
constexpr const char* kPhasesAndDeviceProfiles = R"sql(
ALTER TABLE curve_points ADD COLUMN data_s REAL NOT NULL DEFAULT 0;
ALTER TABLE curve_points ADD COLUMN forward_s REAL NOT NULL DEFAULT 0;
ALTER TABLE curve_points ADD COLUMN backward_s REAL NOT NULL DEFAULT 0;
ALTER TABLE curve_points ADD COLUMN optimizer_s REAL NOT NULL DEFAULT 0;

CREATE TABLE device_profiles (
  worker_id TEXT NOT NULL,
  model TEXT NOT NULL,
  input TEXT NOT NULL,  -- "CxHxW"
  batch_size INTEGER NOT NULL,
  fits INTEGER NOT NULL,
  step_ms REAL NOT NULL,
  peak_memory_bytes INTEGER NOT NULL,
  error TEXT NOT NULL,
  measured_at REAL NOT NULL,
  PRIMARY KEY (worker_id, model, input, batch_size)
);
)sql";

// The segment count of a trial: reports carry (trial, attempt), and a report of an attempt
// that is not the trial's current one is ignored.
constexpr const char* kTrialAttempts = R"sql(
ALTER TABLE trials ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
)sql";

// Bearer tokens of the REST API and the worker gateway. hash_hex is the SHA-256 of the
// secret (of the whole text for an operator-provided external admin token), never the
// secret; role is a RoleName; revoked_at and last_used_at are 0 until set.
constexpr const char* kApiTokens = R"sql(
CREATE TABLE api_tokens (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash_hex TEXT NOT NULL,
  external INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  revoked_at REAL NOT NULL DEFAULT 0,
  last_used_at REAL NOT NULL DEFAULT 0
);

CREATE INDEX api_tokens_external_hash ON api_tokens (hash_hex) WHERE external = 1;
)sql";

// Everything the job engine decides from, so a restarted controller rebuilds its engines
// (JobEngine::Restore): each trial's bracket and the epoch its current rung began, the
// rung results of the brackets with their promoted marks, and each job's sampler history
// (proposals with the batch limit they were asked with, observations), in order. seq is
// the order of arrival: per job for sampler events, over the database for rung results.
constexpr const char* kRestorableJobs = R"sql(
ALTER TABLE trials ADD COLUMN bracket INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN rung_start_epoch INTEGER NOT NULL DEFAULT 0;

CREATE TABLE rung_results (
  trial_id INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
  rung INTEGER NOT NULL,
  seq INTEGER NOT NULL UNIQUE,
  reached_target INTEGER NOT NULL,
  tta_s REAL NOT NULL,
  accuracy REAL NOT NULL,
  promoted INTEGER NOT NULL,
  PRIMARY KEY (trial_id, rung)
);

CREATE TABLE sampler_events (
  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,  -- 'propose' or 'observe'
  trial_id INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
  max_batch_size INTEGER NOT NULL,  -- propose: the limit it was asked with
  rung INTEGER NOT NULL,            -- observe: the observation's fields
  score REAL NOT NULL,
  outcome TEXT NOT NULL,            -- observe: 'ok', 'failed' or 'infeasible'
  PRIMARY KEY (job_id, seq)
);
)sql";

// Algorithm "forecast": what the learning-curve model said of a trial it stopped (NULL for
// the rest). Infinite seconds: not reached within the epoch limit.
constexpr const char* kTrialForecasts = R"sql(
ALTER TABLE trials ADD COLUMN forecast_tta_s REAL;
ALTER TABLE trials ADD COLUMN forecast_lo_s REAL;
ALTER TABLE trials ADD COLUMN forecast_hi_s REAL;
ALTER TABLE trials ADD COLUMN forecast_p_win REAL;
ALTER TABLE trials ADD COLUMN forecast_p_reach REAL;
)sql";

// The device class and site a worker says it is (--class, --site); '' for older workers.
constexpr const char* kWorkerClassAndSite = R"sql(
ALTER TABLE workers ADD COLUMN device_class TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN site TEXT NOT NULL DEFAULT '';
)sql";

// A probe's step split into forward, backward and optimizer (0 = not split: older workers).
constexpr const char* kProbeStepParts = R"sql(
ALTER TABLE device_profiles ADD COLUMN forward_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE device_profiles ADD COLUMN backward_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE device_profiles ADD COLUMN optimizer_ms REAL NOT NULL DEFAULT 0;
)sql";

// An epoch's training seconds as its job counts them: on the job's reference class
// (JobSpec::reference_class). Points stored before are counted as measured.
constexpr const char* kReferenceSeconds = R"sql(
ALTER TABLE curve_points ADD COLUMN reference_s REAL NOT NULL DEFAULT 0;
UPDATE curve_points SET reference_s = compute_s + comm_s;
)sql";

// A trial that measures another's configuration on the job's reference class (>= 0: that
// trial's number), rather than one the sampler proposed (-1).
constexpr const char* kConfirmations = R"sql(
ALTER TABLE trials ADD COLUMN confirms INTEGER NOT NULL DEFAULT -1;
)sql";

// Algorithm "forecast": the sampler score expected over the forecast of a trial it stopped
// (TrialForecast::score; NULL where not recorded).
constexpr const char* kForecastScores = R"sql(
ALTER TABLE trials ADD COLUMN forecast_score REAL;
)sql";

// The links a job's seconds count over, fixed at its first placement
// (JobRecord::counted_links; counted_links_fixed 0: not yet).
constexpr const char* kCountedLinks = R"sql(
ALTER TABLE jobs ADD COLUMN counted_links_fixed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN counted_inter_node_bytes_s REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN counted_inter_node_latency_s REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN counted_edge_cloud_bytes_s REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN counted_edge_cloud_latency_s REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN counted_links_how TEXT NOT NULL DEFAULT '';
)sql";

// A probe's optimizer part with Adam in place of momentum SGD (0 = not measured: older
// workers).
constexpr const char* kAdamOptimizerPart = R"sql(
ALTER TABLE device_profiles ADD COLUMN adam_optimizer_ms REAL NOT NULL DEFAULT 0;
)sql";

// A batch size that fits with momentum SGD but not with Adam's state (0: fits, or not
// checked: older workers).
constexpr const char* kAdamDoesNotFit = R"sql(
ALTER TABLE device_profiles ADD COLUMN adam_does_not_fit INTEGER NOT NULL DEFAULT 0;
)sql";

// The class of the device each epoch ran on ('': stored before this migration).
constexpr const char* kPointDeviceClass = R"sql(
ALTER TABLE curve_points ADD COLUMN device_class TEXT NOT NULL DEFAULT '';
)sql";

// The seconds a probe timed at each batch size (0: not reported, older workers).
constexpr const char* kProbeTimedSeconds = R"sql(
ALTER TABLE device_profiles ADD COLUMN timed_s REAL NOT NULL DEFAULT 0;
)sql";

// Training seconds of a trial's epochs that were cut (a lost worker, a controller restart)
// and are trained again (TrialRecord::cut_s; 0: none, or stored before this migration).
constexpr const char* kCutSeconds = R"sql(
ALTER TABLE trials ADD COLUMN cut_s REAL NOT NULL DEFAULT 0;
)sql";

// A rerun on another seed that repeated an earlier run's curve (TrialRecord::repeats: that
// run's number; -1: not one).
constexpr const char* kSeedRepeats = R"sql(
ALTER TABLE trials ADD COLUMN repeats INTEGER NOT NULL DEFAULT -1;
)sql";

Status Exec(sqlite3* db, const char* sql, const std::string& what) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) == SQLITE_OK) return Status::OK();
  std::string message = what + ": " + (error != nullptr ? error : sqlite3_errmsg(db));
  sqlite3_free(error);
  return Status::IOError(message);
}

// The highest version in schema_migrations, 0 for a new database.
StatusOr<int> CurrentVersion(sqlite3* db) {
  sqlite3_stmt* stmt = nullptr;
  const char* sql = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  int version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
  if (rc != SQLITE_ROW) {
    Status status =
        Status::IOError(std::string("reading the schema version: ") + sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return status;
  }
  sqlite3_finalize(stmt);
  return version;
}

Status RecordVersion(sqlite3* db, int version) {
  sqlite3_stmt* stmt = nullptr;
  const char* sql =
      "INSERT INTO schema_migrations (version, applied_at) "
      "VALUES (?, (julianday('now') - 2440587.5) * 86400.0)";
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_bind_int(stmt, 1, version);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  Status status = rc == SQLITE_DONE
                      ? Status::OK()
                      : Status::IOError("recording schema version " + std::to_string(version) +
                                        ": " + sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  if (!status.ok()) return status;
  // PRAGMA takes no bound parameters; `version` is one of our own constants.
  const std::string pragma = "PRAGMA user_version = " + std::to_string(version);
  return Exec(db, pragma.c_str(), "setting user_version");
}

// Runs `migration` in one transaction, unless another connection applied it first.
Status Apply(sqlite3* db, const Migration& migration) {
  const std::string what = "applying migration " + std::to_string(migration.version);
  TOPOTUNE_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", what));
  Status status = [&]() -> Status {
    StatusOr<int> version = CurrentVersion(db);
    if (!version.ok()) return version.status();
    if (*version >= migration.version) return Status::OK();
    TOPOTUNE_RETURN_IF_ERROR(Exec(db, migration.sql, what));
    return RecordVersion(db, migration.version);
  }();
  if (status.ok()) status = Exec(db, "COMMIT", what);
  if (!status.ok() && sqlite3_get_autocommit(db) == 0) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  return status;
}

}  // namespace

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, kInitialSchema},      {2, kPhasesAndDeviceProfiles},
      {3, kTrialAttempts},      {4, kApiTokens},
      {5, kRestorableJobs},     {6, kTrialForecasts},
      {7, kWorkerClassAndSite}, {8, kProbeStepParts},
      {9, kReferenceSeconds},   {10, kConfirmations},
      {11, kForecastScores},    {12, kCountedLinks},
      {13, kAdamOptimizerPart}, {14, kAdamDoesNotFit},
      {15, kPointDeviceClass},  {16, kProbeTimedSeconds},
      {17, kCutSeconds},        {18, kSeedRepeats},
  };
  return kMigrations;
}

StatusOr<int> ApplyMigrations(sqlite3* db) {
  const std::vector<Migration>& migrations = Migrations();
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i) + 1) {
      return Status::Internal("migration " + std::to_string(i) + " has version " +
                              std::to_string(migrations[i].version) + ", expected " +
                              std::to_string(i + 1));
    }
  }
  TOPOTUNE_RETURN_IF_ERROR(
      Exec(db, kCreateSchemaMigrations, "creating the schema_migrations table"));
  StatusOr<int> version = CurrentVersion(db);
  if (!version.ok()) return version.status();
  const int latest = static_cast<int>(migrations.size());
  if (*version > latest) {
    return Status::FailedPrecondition("database schema version " + std::to_string(*version) +
                                      " is newer than this build's " + std::to_string(latest));
  }
  for (const Migration& migration : migrations) {
    if (migration.version <= *version) continue;
    TOPOTUNE_RETURN_IF_ERROR(Apply(db, migration));
  }
  return CurrentVersion(db);
}

}  // namespace topotune
