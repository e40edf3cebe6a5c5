// The SQLite Store. sqlite3.h stays in this file (and migrations.cc).

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "storage/migrations.h"
#include "storage/store.h"

namespace topotune {
namespace {

constexpr int kBusyTimeoutMs = 5000;

struct ConnectionCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Connection = std::unique_ptr<sqlite3, ConnectionCloser>;

Status SqliteError(sqlite3* db, const std::string& what) {
  return Status::IOError(what + ": " + sqlite3_errmsg(db));
}

// A prepared statement with positional binds. The first failure (prepare, bind or step)
// is kept and returned by Step/Run, so binds can be chained without checks.
class Statement {
 public:
  // `what` says what the statement is for, in error messages.
  Statement(sqlite3* db, const char* sql, std::string what) : db_(db), what_(std::move(what)) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) Fail();
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& BindInt(int64_t value) {
    if (status_.ok()) Check(sqlite3_bind_int64(stmt_, ++index_, value));
    return *this;
  }
  Statement& BindDouble(double value) {
    if (status_.ok()) Check(sqlite3_bind_double(stmt_, ++index_, value));
    return *this;
  }
  Statement& BindNull() {
    if (status_.ok()) Check(sqlite3_bind_null(stmt_, ++index_));
    return *this;
  }
  Statement& BindText(const std::string& value) {
    if (status_.ok()) {
      Check(sqlite3_bind_text(stmt_, ++index_, value.data(), static_cast<int>(value.size()),
                              SQLITE_TRANSIENT));
    }
    return *this;
  }

  // True when a row is ready, false when the statement is done.
  StatusOr<bool> Step() {
    if (!status_.ok()) return status_;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    Fail();
    return status_;
  }
  // Runs a statement that returns no rows.
  Status Run() {
    StatusOr<bool> row = Step();
    return row.status();
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  double Double(int column) const { return sqlite3_column_double(stmt_, column); }
  bool Null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return "";
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK) status_ = Status::IOError(what_ + ": " + sqlite3_errstr(rc));
  }
  void Fail() { status_ = SqliteError(db_, what_); }

  sqlite3* db_;
  std::string what_;
  sqlite3_stmt* stmt_ = nullptr;
  int index_ = 0;
  Status status_;
};

Status Exec(sqlite3* db, const char* sql, const std::string& what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK) return Status::OK();
  return SqliteError(db, what);
}

Status CorruptRow(const std::string& column, const std::string& value, int64_t id) {
  return Status::IOError("corrupt row: " + column + " is '" + value + "' in row " +
                         std::to_string(id));
}

// Column lists, in the order the Read* functions below expect.
constexpr const char* kSelectJobs =
    "SELECT id, name, spec_json, state, message, created_at, finished_at, counted_links_fixed, "
    "counted_inter_node_bytes_s, counted_inter_node_latency_s, counted_edge_cloud_bytes_s, "
    "counted_edge_cloud_latency_s, counted_links_how FROM jobs";
// The trial's columns after id (the order of BindTrialFields).
constexpr const char* kTrialFields =
    "job_id, number, batch_size, learning_rate, optimizer, seed, state, rung, "
    "epochs_done, target_epochs, worker, reason, reached_target, tta_s, train_s, "
    "best_accuracy, attempt, bracket, rung_start_epoch, forecast_tta_s, forecast_lo_s, "
    "forecast_hi_s, forecast_p_win, forecast_p_reach, confirms, forecast_score, cut_s, repeats";
constexpr const char* kSelectWorkers =
    "SELECT id, device_kind, device_name, cores, memory_bytes, state, connected_at, "
    "last_heartbeat, device_class, site FROM workers";

constexpr const char* kSelectTokens =
    "SELECT id, name, role, hash_hex, external, created_at, revoked_at, last_used_at "
    "FROM api_tokens";

StatusOr<JobRecord> ReadJob(const Statement& row) {
  JobRecord job;
  job.id = row.Int(0);
  job.name = row.Text(1);
  job.spec_json = row.Text(2);
  const std::string state = row.Text(3);
  std::optional<JobState> parsed = ParseJobState(state);
  if (!parsed) return CorruptRow("jobs.state", state, job.id);
  job.state = *parsed;
  job.message = row.Text(4);
  job.created_at = row.Double(5);
  job.finished_at = row.Double(6);
  if (row.Int(7) != 0) {
    job.counted_links = CountedLinks{
        {row.Double(8), row.Double(9)}, {row.Double(10), row.Double(11)}, row.Text(12)};
  }
  return job;
}

StatusOr<TrialRecord> ReadTrial(const Statement& row) {
  TrialRecord trial;
  trial.id = row.Int(0);
  trial.job_id = row.Int(1);
  trial.number = static_cast<int>(row.Int(2));
  trial.config.batch_size = static_cast<int>(row.Int(3));
  trial.config.learning_rate = row.Double(4);
  const std::string optimizer = row.Text(5);
  std::optional<Optimizer> parsed_optimizer = ParseOptimizer(optimizer);
  if (!parsed_optimizer) return CorruptRow("trials.optimizer", optimizer, trial.id);
  trial.config.optimizer = *parsed_optimizer;
  trial.seed = static_cast<uint64_t>(row.Int(6));
  const std::string state = row.Text(7);
  std::optional<TrialState> parsed_state = ParseTrialState(state);
  if (!parsed_state) return CorruptRow("trials.state", state, trial.id);
  trial.state = *parsed_state;
  trial.rung = static_cast<int>(row.Int(8));
  trial.epochs_done = static_cast<int>(row.Int(9));
  trial.target_epochs = static_cast<int>(row.Int(10));
  trial.worker = row.Text(11);
  trial.reason = row.Text(12);
  trial.reached_target = row.Int(13) != 0;
  trial.tta_s = row.Double(14);
  trial.train_s = row.Double(15);
  trial.best_accuracy = row.Double(16);
  trial.attempt = static_cast<int>(row.Int(17));
  trial.bracket = static_cast<int>(row.Int(18));
  trial.rung_start_epoch = static_cast<int>(row.Int(19));
  if (!row.Null(20)) {
    trial.forecast = TrialForecast{row.Double(20), row.Double(21), row.Double(22), row.Double(23),
                                   row.Double(24)};
    trial.forecast->score =
        row.Null(26) ? std::numeric_limits<double>::quiet_NaN() : row.Double(26);
  }
  trial.confirms = static_cast<int>(row.Int(25));
  trial.cut_s = row.Double(27);
  trial.repeats = static_cast<int>(row.Int(28));
  return trial;
}

StatusOr<CurvePoint> ReadCurvePoint(const Statement& row) {
  CurvePoint point;
  point.trial_id = row.Int(0);
  point.epoch = static_cast<int>(row.Int(1));
  point.samples_seen = row.Int(2);
  point.train_loss = row.Double(3);
  point.val_accuracy = row.Double(4);
  point.compute_s = row.Double(5);
  point.comm_s = row.Double(6);
  point.eval_s = row.Double(7);
  point.wall_s = row.Double(8);
  point.step_ms_p50 = row.Double(9);
  point.step_ms_p95 = row.Double(10);
  point.peak_memory_bytes = row.Int(11);
  point.data_s = row.Double(12);
  point.forward_s = row.Double(13);
  point.backward_s = row.Double(14);
  point.optimizer_s = row.Double(15);
  point.reference_s = row.Double(16);
  point.device_class = row.Text(17);
  return point;
}

StatusOr<WorkerRecord> ReadWorker(const Statement& row) {
  WorkerRecord worker;
  worker.id = row.Text(0);
  worker.device.kind = row.Text(1);
  worker.device.name = row.Text(2);
  worker.device.cores = static_cast<int>(row.Int(3));
  worker.device.memory_bytes = row.Int(4);
  worker.state = row.Text(5);
  worker.connected_at = row.Double(6);
  worker.last_heartbeat = row.Double(7);
  worker.device.device_class = row.Text(8);
  worker.device.site = row.Text(9);
  return worker;
}

StatusOr<TokenRecord> ReadToken(const Statement& row) {
  TokenRecord token;
  token.id = row.Int(0);
  token.name = row.Text(1);
  const std::string role = row.Text(2);
  std::optional<Role> parsed = ParseRole(role);
  if (!parsed) return CorruptRow("api_tokens.role", role, token.id);
  token.role = *parsed;
  token.hash_hex = row.Text(3);
  token.external = row.Int(4) != 0;
  token.created_at = row.Double(5);
  token.revoked_at = row.Double(6);
  token.last_used_at = row.Double(7);
  return token;
}

// Every row of `stmt`, converted by `read`.
template <typename Record>
StatusOr<std::vector<Record>> ReadAll(Statement& stmt, StatusOr<Record> (*read)(const Statement&)) {
  std::vector<Record> records;
  while (true) {
    StatusOr<bool> row = stmt.Step();
    if (!row.ok()) return row.status();
    if (!*row) return records;
    StatusOr<Record> record = read(stmt);
    if (!record.ok()) return record.status();
    records.push_back(std::move(record).value());
  }
}

// Binds the trial's columns after id, in kTrialFields order.
Statement& BindTrialFields(Statement& stmt, const TrialRecord& trial) {
  stmt.BindInt(trial.job_id)
      .BindInt(trial.number)
      .BindInt(trial.config.batch_size)
      .BindDouble(trial.config.learning_rate)
      .BindText(OptimizerName(trial.config.optimizer))
      .BindInt(static_cast<int64_t>(trial.seed))
      .BindText(TrialStateName(trial.state))
      .BindInt(trial.rung)
      .BindInt(trial.epochs_done)
      .BindInt(trial.target_epochs)
      .BindText(trial.worker)
      .BindText(trial.reason)
      .BindInt(trial.reached_target ? 1 : 0)
      .BindDouble(trial.tta_s)
      .BindDouble(trial.train_s)
      .BindDouble(trial.best_accuracy)
      .BindInt(trial.attempt)
      .BindInt(trial.bracket)
      .BindInt(trial.rung_start_epoch);
  if (!trial.forecast) {
    stmt.BindNull().BindNull().BindNull().BindNull().BindNull();
  } else {
    const TrialForecast& f = *trial.forecast;
    stmt.BindDouble(f.tta_s).BindDouble(f.lo_s).BindDouble(f.hi_s).BindDouble(f.p_win).BindDouble(
        f.p_reach);
  }
  stmt.BindInt(trial.confirms);
  if (trial.forecast) {
    stmt.BindDouble(trial.forecast->score);
  } else {
    stmt.BindNull();
  }
  return stmt.BindDouble(trial.cut_s).BindInt(trial.repeats);
}

Status UpdateTrialRow(sqlite3* db, const TrialRecord& trial) {
  Statement stmt(db,
                 "UPDATE trials SET job_id = ?, number = ?, batch_size = ?, learning_rate = ?, "
                 "optimizer = ?, seed = ?, state = ?, rung = ?, epochs_done = ?, "
                 "target_epochs = ?, worker = ?, reason = ?, reached_target = ?, tta_s = ?, "
                 "train_s = ?, best_accuracy = ?, attempt = ?, bracket = ?, "
                 "rung_start_epoch = ?, forecast_tta_s = ?, forecast_lo_s = ?, "
                 "forecast_hi_s = ?, forecast_p_win = ?, forecast_p_reach = ?, confirms = ?, "
                 "forecast_score = ?, cut_s = ?, repeats = ? "
                 "WHERE id = ?",
                 "updating trial " + std::to_string(trial.id));
  BindTrialFields(stmt, trial).BindInt(trial.id);
  TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
  if (sqlite3_changes(db) == 0) {
    return Status::NotFound("trial " + std::to_string(trial.id) + " not found");
  }
  return Status::OK();
}

// Inserts the trial and sets *id to its row id.
Status InsertTrialRow(sqlite3* db, const TrialRecord& trial, const std::string& what, int64_t* id) {
  const std::string sql = std::string("INSERT INTO trials (") + kTrialFields +
                          ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                          "?, ?, ?, ?, ?, ?, ?, ?)";
  Statement stmt(db, sql.c_str(), what);
  BindTrialFields(stmt, trial);
  TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
  *id = sqlite3_last_insert_rowid(db);
  return Status::OK();
}

Status InsertCurvePoint(sqlite3* db, const CurvePoint& point) {
  Statement stmt(db,
                 "INSERT OR REPLACE INTO curve_points (trial_id, epoch, samples_seen, "
                 "train_loss, val_accuracy, compute_s, comm_s, eval_s, wall_s, step_ms_p50, "
                 "step_ms_p95, peak_memory_bytes, data_s, forward_s, backward_s, optimizer_s, "
                 "reference_s, device_class) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 "storing epoch " + std::to_string(point.epoch) + " of trial " +
                     std::to_string(point.trial_id));
  stmt.BindInt(point.trial_id)
      .BindInt(point.epoch)
      .BindInt(point.samples_seen)
      .BindDouble(point.train_loss)
      .BindDouble(point.val_accuracy)
      .BindDouble(point.compute_s)
      .BindDouble(point.comm_s)
      .BindDouble(point.eval_s)
      .BindDouble(point.wall_s)
      .BindDouble(point.step_ms_p50)
      .BindDouble(point.step_ms_p95)
      .BindInt(point.peak_memory_bytes)
      .BindDouble(point.data_s)
      .BindDouble(point.forward_s)
      .BindDouble(point.backward_s)
      .BindDouble(point.optimizer_s)
      .BindDouble(point.reference_s)
      .BindText(point.device_class);
  return stmt.Run();
}

// Removes the trial's curve points after epoch `keep_epochs`.
Status DeletePointsAfter(sqlite3* db, int64_t trial_id, int keep_epochs) {
  Statement stmt(db, "DELETE FROM curve_points WHERE trial_id = ? AND epoch > ?",
                 "removing the points of trial " + std::to_string(trial_id) + " after epoch " +
                     std::to_string(keep_epochs));
  stmt.BindInt(trial_id).BindInt(keep_epochs);
  return stmt.Run();
}

const char* SamplerEventKindName(SamplerEvent::Kind kind) {
  return kind == SamplerEvent::Kind::kPropose ? "propose" : "observe";
}

const char* ObservationKindName(Observation::Kind kind) {
  switch (kind) {
    case Observation::Kind::kOk:
      return "ok";
    case Observation::Kind::kFailed:
      return "failed";
    case Observation::Kind::kInfeasible:
      return "infeasible";
  }
  return "ok";
}

std::optional<Observation::Kind> ParseObservationKind(const std::string& name) {
  if (name == "ok") return Observation::Kind::kOk;
  if (name == "failed") return Observation::Kind::kFailed;
  if (name == "infeasible") return Observation::Kind::kInfeasible;
  return std::nullopt;
}

// Appends an event to the sampler history of `job_id`, after its last one.
Status AppendSamplerEvent(sqlite3* db, int64_t job_id, const SamplerEvent& event) {
  Statement stmt(db,
                 "INSERT INTO sampler_events (job_id, seq, kind, trial_id, max_batch_size, "
                 "rung, score, outcome) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM "
                 "sampler_events WHERE job_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7)",
                 std::string("recording a sampler ") + SamplerEventKindName(event.kind) +
                     " of trial " + std::to_string(event.trial_id));
  stmt.BindInt(job_id)
      .BindText(SamplerEventKindName(event.kind))
      .BindInt(event.trial_id)
      .BindInt(event.max_batch_size)
      .BindInt(event.observation.rung)
      .BindDouble(event.observation.score)
      .BindText(ObservationKindName(event.observation.kind));
  return stmt.Run();
}

// The Store on one SQLite file in WAL mode. Thread-safe. Writes are serialised on the
// writer connection, each method one BEGIN IMMEDIATE transaction. Reads use a second,
// read-only connection under its own mutex, so they run beside writes; where the file
// cannot be in WAL mode (":memory:"), reads share the writer and its mutex.
class SqliteStore final : public Store {
 public:
  SqliteStore(Connection writer, Connection reader, int schema_version)
      : writer_(std::move(writer)), reader_(std::move(reader)), schema_version_(schema_version) {}

  StatusOr<int64_t> CreateTrial(const TrialRecord& trial) override {
    int64_t id = 0;
    TOPOTUNE_RETURN_IF_ERROR(Write("creating trial " + std::to_string(trial.number) + " of job " +
                                       std::to_string(trial.job_id),
                                   [&](sqlite3* db, const std::string& what) {
                                     return InsertTrialRow(db, trial, what, &id);
                                   }));
    return id;
  }

  Status UpdateTrial(const TrialRecord& trial) override {
    return Write("updating trial " + std::to_string(trial.id),
                 [&](sqlite3* db, const std::string&) { return UpdateTrialRow(db, trial); });
  }

  Status AppendCurvePoint(const CurvePoint& point) override {
    return Write("storing a curve point",
                 [&](sqlite3* db, const std::string&) { return InsertCurvePoint(db, point); });
  }

  Status RecordEpoch(const CurvePoint& point, const TrialRecord& trial) override {
    if (point.trial_id != trial.id) {
      return Status::InvalidArgument("curve point of trial " + std::to_string(point.trial_id) +
                                     " recorded with trial " + std::to_string(trial.id));
    }
    return Write(
        "recording epoch " + std::to_string(point.epoch) + " of trial " + std::to_string(trial.id),
        [&](sqlite3* db, const std::string&) {
          TOPOTUNE_RETURN_IF_ERROR(InsertCurvePoint(db, point));
          TOPOTUNE_RETURN_IF_ERROR(DeletePointsAfter(db, point.trial_id, point.epoch));
          return UpdateTrialRow(db, trial);
        });
  }

  StatusOr<int64_t> CreateProposedTrial(const TrialRecord& trial, int max_batch_size) override {
    int64_t id = 0;
    TOPOTUNE_RETURN_IF_ERROR(Write("creating proposed trial " + std::to_string(trial.number) +
                                       " of job " + std::to_string(trial.job_id),
                                   [&](sqlite3* db, const std::string& what) {
                                     TOPOTUNE_RETURN_IF_ERROR(InsertTrialRow(db, trial, what, &id));
                                     SamplerEvent proposal;
                                     proposal.kind = SamplerEvent::Kind::kPropose;
                                     proposal.trial_id = id;
                                     proposal.max_batch_size = max_batch_size;
                                     return AppendSamplerEvent(db, trial.job_id, proposal);
                                   }));
    return id;
  }

  Status ResetTrial(const TrialRecord& trial, int keep_epochs) override {
    return Write(
        "resetting trial " + std::to_string(trial.id) + " to epoch " + std::to_string(keep_epochs),
        [&](sqlite3* db, const std::string&) {
          TOPOTUNE_RETURN_IF_ERROR(UpdateTrialRow(db, trial));
          return DeletePointsAfter(db, trial.id, keep_epochs);
        });
  }

  Status MarkPromoted(const TrialRecord& trial, int rung) override {
    const std::string what = "marking trial " + std::to_string(trial.id) +
                             " promoted out of rung " + std::to_string(rung);
    return Write(what, [&](sqlite3* db, const std::string&) -> Status {
      TOPOTUNE_RETURN_IF_ERROR(UpdateTrialRow(db, trial));
      Statement stmt(db, "UPDATE rung_results SET promoted = 1 WHERE trial_id = ? AND rung = ?",
                     what);
      stmt.BindInt(trial.id).BindInt(rung);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      if (sqlite3_changes(db) == 0) {
        return Status::NotFound("trial " + std::to_string(trial.id) + " has no result at rung " +
                                std::to_string(rung));
      }
      return Status::OK();
    });
  }

  Status RecordRungResult(const TrialRecord& trial, const RungResultRecord& rung_result,
                          const Observation& observation) override {
    const RungResult& r = rung_result.result;
    if (r.trial_id != trial.id) {
      return Status::InvalidArgument("rung result of trial " + std::to_string(r.trial_id) +
                                     " recorded with trial " + std::to_string(trial.id));
    }
    const std::string what = "recording the result of trial " + std::to_string(trial.id) +
                             " at rung " + std::to_string(rung_result.rung);
    return Write(what, [&](sqlite3* db, const std::string&) -> Status {
      TOPOTUNE_RETURN_IF_ERROR(UpdateTrialRow(db, trial));
      Statement stmt(db,
                     "INSERT INTO rung_results (trial_id, rung, seq, reached_target, tta_s, "
                     "accuracy, promoted) VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM "
                     "rung_results), ?, ?, ?, ?) ON CONFLICT (trial_id, rung) DO UPDATE SET "
                     "reached_target = excluded.reached_target, tta_s = excluded.tta_s, "
                     "accuracy = excluded.accuracy, "
                     "promoted = MAX(promoted, excluded.promoted)",
                     what);
      stmt.BindInt(trial.id)
          .BindInt(rung_result.rung)
          .BindInt(r.reached_target ? 1 : 0)
          .BindDouble(r.tta_s)
          .BindDouble(r.accuracy)
          .BindInt(rung_result.promoted ? 1 : 0);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      SamplerEvent event;
      event.kind = SamplerEvent::Kind::kObserve;
      event.trial_id = trial.id;
      event.observation = observation;
      return AppendSamplerEvent(db, trial.job_id, event);
    });
  }

  // finished_at becomes `at` for a terminal state, 0 otherwise.
  Status SetJobState(int64_t job_id, JobState state, const std::string& message,
                     double at) override {
    const std::string job = "job " + std::to_string(job_id);
    return Write("setting the state of " + job, [&](sqlite3* db, const std::string& what) {
      Statement stmt(db, "UPDATE jobs SET state = ?, message = ?, finished_at = ? WHERE id = ?",
                     what);
      stmt.BindText(JobStateName(state))
          .BindText(message)
          .BindDouble(IsTerminal(state) ? at : 0.0)
          .BindInt(job_id);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      if (sqlite3_changes(db) == 0) return Status::NotFound(job + " not found");
      return Status::OK();
    });
  }

  Status FixCountedLinks(int64_t job_id, const CountedLinks& links) override {
    const std::string job = "job " + std::to_string(job_id);
    return Write("fixing the counted links of " + job, [&](sqlite3* db, const std::string& what) {
      Statement stmt(db,
                     "UPDATE jobs SET counted_links_fixed = 1, counted_inter_node_bytes_s = ?, "
                     "counted_inter_node_latency_s = ?, counted_edge_cloud_bytes_s = ?, "
                     "counted_edge_cloud_latency_s = ?, counted_links_how = ? WHERE id = ?",
                     what);
      stmt.BindDouble(links.inter_node.bandwidth_bytes_s)
          .BindDouble(links.inter_node.latency_s)
          .BindDouble(links.edge_cloud.bandwidth_bytes_s)
          .BindDouble(links.edge_cloud.latency_s)
          .BindText(links.how)
          .BindInt(job_id);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      if (sqlite3_changes(db) == 0) return Status::NotFound(job + " not found");
      return Status::OK();
    });
  }

  Status UpsertWorker(const WorkerRecord& worker) override {
    return Write("storing worker '" + worker.id + "'", [&](sqlite3* db, const std::string& what) {
      Statement stmt(db,
                     "INSERT INTO workers (id, device_kind, device_name, cores, memory_bytes, "
                     "state, connected_at, last_heartbeat, device_class, site) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET device_kind = excluded.device_kind, "
                     "device_name = excluded.device_name, cores = excluded.cores, "
                     "memory_bytes = excluded.memory_bytes, state = excluded.state, "
                     "connected_at = excluded.connected_at, "
                     "last_heartbeat = excluded.last_heartbeat, "
                     "device_class = excluded.device_class, site = excluded.site",
                     what);
      stmt.BindText(worker.id)
          .BindText(worker.device.kind)
          .BindText(worker.device.name)
          .BindInt(worker.device.cores)
          .BindInt(worker.device.memory_bytes)
          .BindText(worker.state)
          .BindDouble(worker.connected_at)
          .BindDouble(worker.last_heartbeat)
          .BindText(worker.device.device_class)
          .BindText(worker.device.site);
      return stmt.Run();
    });
  }

  Status UpsertDeviceProbe(const DeviceProbe& probe) override {
    return Write("storing the probe of " + probe.model + " on worker '" + probe.worker_id + "'",
                 [&](sqlite3* db, const std::string& what) -> Status {
                   for (const BatchProbe& b : probe.batches) {
                     Statement stmt(db,
                                    "INSERT OR REPLACE INTO device_profiles (worker_id, model, "
                                    "input, batch_size, fits, step_ms, peak_memory_bytes, error, "
                                    "measured_at, forward_ms, backward_ms, optimizer_ms, "
                                    "adam_optimizer_ms, adam_does_not_fit, timed_s) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                    what);
                     stmt.BindText(probe.worker_id)
                         .BindText(probe.model)
                         .BindText(probe.input)
                         .BindInt(b.batch_size)
                         .BindInt(b.fits ? 1 : 0)
                         .BindDouble(b.step_ms)
                         .BindInt(b.peak_memory_bytes)
                         .BindText(b.error)
                         .BindDouble(probe.measured_at)
                         .BindDouble(b.forward_ms)
                         .BindDouble(b.backward_ms)
                         .BindDouble(b.optimizer_ms)
                         .BindDouble(b.adam_optimizer_ms)
                         .BindInt(b.adam_does_not_fit ? 1 : 0)
                         .BindDouble(b.timed_s);
                     TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
                   }
                   return Status::OK();
                 });
  }

  StatusOr<std::vector<DeviceProbe>> ListDeviceProbes() override {
    return Read<std::vector<DeviceProbe>>([&](sqlite3* db) -> StatusOr<std::vector<DeviceProbe>> {
      Statement stmt(db,
                     "SELECT worker_id, model, input, batch_size, fits, step_ms, "
                     "peak_memory_bytes, error, measured_at, forward_ms, backward_ms, "
                     "optimizer_ms, adam_optimizer_ms, adam_does_not_fit, timed_s "
                     "FROM device_profiles "
                     "ORDER BY worker_id, model, input, batch_size",
                     "listing device profiles");
      std::vector<DeviceProbe> probes;
      while (true) {
        StatusOr<bool> row = stmt.Step();
        if (!row.ok()) return row.status();
        if (!*row) return probes;
        if (probes.empty() || probes.back().worker_id != stmt.Text(0) ||
            probes.back().model != stmt.Text(1) || probes.back().input != stmt.Text(2)) {
          DeviceProbe p;
          p.worker_id = stmt.Text(0);
          p.model = stmt.Text(1);
          p.input = stmt.Text(2);
          probes.push_back(p);
        }
        BatchProbe b;
        b.batch_size = static_cast<int>(stmt.Int(3));
        b.fits = stmt.Int(4) != 0;
        b.step_ms = stmt.Double(5);
        b.peak_memory_bytes = stmt.Int(6);
        b.error = stmt.Text(7);
        b.forward_ms = stmt.Double(9);
        b.backward_ms = stmt.Double(10);
        b.optimizer_ms = stmt.Double(11);
        b.adam_optimizer_ms = stmt.Double(12);
        b.adam_does_not_fit = stmt.Int(13) != 0;
        b.timed_s = stmt.Double(14);
        probes.back().measured_at = std::max(probes.back().measured_at, stmt.Double(8));
        probes.back().batches.push_back(b);
      }
    });
  }

  StatusOr<int64_t> CreateJob(const JobRecord& job) override {
    int64_t id = 0;
    TOPOTUNE_RETURN_IF_ERROR(
        Write("creating job '" + job.name + "'", [&](sqlite3* db, const std::string& what) {
          Statement stmt(db,
                         "INSERT INTO jobs (name, spec_json, state, message, created_at, "
                         "finished_at) VALUES (?, ?, ?, ?, ?, ?)",
                         what);
          stmt.BindText(job.name)
              .BindText(job.spec_json)
              .BindText(JobStateName(job.state))
              .BindText(job.message)
              .BindDouble(job.created_at)
              .BindDouble(job.finished_at);
          TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
          id = sqlite3_last_insert_rowid(db);
          return Status::OK();
        }));
    return id;
  }

  StatusOr<JobRecord> GetJob(int64_t job_id) override {
    const std::string job = "job " + std::to_string(job_id);
    return Read<JobRecord>([&](sqlite3* db) -> StatusOr<JobRecord> {
      const std::string sql = std::string(kSelectJobs) + " WHERE id = ?";
      Statement stmt(db, sql.c_str(), "reading " + job);
      stmt.BindInt(job_id);
      StatusOr<bool> row = stmt.Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::NotFound(job + " not found");
      return ReadJob(stmt);
    });
  }

  StatusOr<std::vector<JobRecord>> ListJobs() override {
    return Read<std::vector<JobRecord>>([&](sqlite3* db) {
      const std::string sql = std::string(kSelectJobs) + " ORDER BY id";
      Statement stmt(db, sql.c_str(), "listing jobs");
      return ReadAll(stmt, &ReadJob);
    });
  }

  StatusOr<std::vector<TrialRecord>> ListTrials(int64_t job_id) override {
    return Read<std::vector<TrialRecord>>([&](sqlite3* db) {
      const std::string sql = std::string("SELECT id, ") + kTrialFields +
                              " FROM trials WHERE job_id = ? ORDER BY number";
      Statement stmt(db, sql.c_str(), "listing the trials of job " + std::to_string(job_id));
      stmt.BindInt(job_id);
      return ReadAll(stmt, &ReadTrial);
    });
  }

  StatusOr<std::vector<CurvePoint>> ListCurvePoints(int64_t job_id) override {
    return Read<std::vector<CurvePoint>>([&](sqlite3* db) {
      Statement stmt(db,
                     "SELECT c.trial_id, c.epoch, c.samples_seen, c.train_loss, c.val_accuracy, "
                     "c.compute_s, c.comm_s, c.eval_s, c.wall_s, c.step_ms_p50, c.step_ms_p95, "
                     "c.peak_memory_bytes, c.data_s, c.forward_s, c.backward_s, c.optimizer_s, "
                     "c.reference_s, c.device_class FROM curve_points AS c JOIN trials AS t "
                     "ON t.id = c.trial_id WHERE t.job_id = ? ORDER BY c.trial_id, c.epoch",
                     "listing the curve points of job " + std::to_string(job_id));
      stmt.BindInt(job_id);
      return ReadAll(stmt, &ReadCurvePoint);
    });
  }

  StatusOr<std::vector<RungResultRecord>> ListRungResults(int64_t job_id) override {
    return Read<std::vector<RungResultRecord>>(
        [&](sqlite3* db) -> StatusOr<std::vector<RungResultRecord>> {
          Statement stmt(db,
                         "SELECT r.trial_id, r.rung, r.reached_target, r.tta_s, r.accuracy, "
                         "r.promoted FROM rung_results AS r JOIN trials AS t ON t.id = r.trial_id "
                         "WHERE t.job_id = ? ORDER BY r.seq",
                         "listing the rung results of job " + std::to_string(job_id));
          stmt.BindInt(job_id);
          std::vector<RungResultRecord> results;
          while (true) {
            StatusOr<bool> row = stmt.Step();
            if (!row.ok()) return row.status();
            if (!*row) return results;
            RungResultRecord r;
            r.result.trial_id = stmt.Int(0);
            r.rung = static_cast<int>(stmt.Int(1));
            r.result.reached_target = stmt.Int(2) != 0;
            r.result.tta_s = stmt.Double(3);
            r.result.accuracy = stmt.Double(4);
            r.promoted = stmt.Int(5) != 0;
            results.push_back(r);
          }
        });
  }

  StatusOr<std::vector<SamplerEvent>> ListSamplerEvents(int64_t job_id) override {
    return Read<std::vector<SamplerEvent>>([&](sqlite3* db) -> StatusOr<std::vector<SamplerEvent>> {
      Statement stmt(db,
                     "SELECT e.seq, e.kind, e.trial_id, e.max_batch_size, e.rung, e.score, "
                     "e.outcome, t.batch_size, t.learning_rate, t.optimizer FROM sampler_events "
                     "AS e JOIN trials AS t ON t.id = e.trial_id WHERE e.job_id = ? "
                     "ORDER BY e.seq",
                     "listing the sampler events of job " + std::to_string(job_id));
      stmt.BindInt(job_id);
      std::vector<SamplerEvent> events;
      while (true) {
        StatusOr<bool> row = stmt.Step();
        if (!row.ok()) return row.status();
        if (!*row) return events;
        const int64_t seq = stmt.Int(0);
        SamplerEvent e;
        const std::string kind = stmt.Text(1);
        if (kind == "propose") {
          e.kind = SamplerEvent::Kind::kPropose;
        } else if (kind == "observe") {
          e.kind = SamplerEvent::Kind::kObserve;
        } else {
          return CorruptRow("sampler_events.kind", kind, seq);
        }
        e.trial_id = stmt.Int(2);
        e.max_batch_size = static_cast<int>(stmt.Int(3));
        e.observation.rung = static_cast<int>(stmt.Int(4));
        e.observation.score = stmt.Double(5);
        const std::string outcome = stmt.Text(6);
        std::optional<Observation::Kind> parsed = ParseObservationKind(outcome);
        if (!parsed) return CorruptRow("sampler_events.outcome", outcome, seq);
        e.observation.kind = *parsed;
        e.observation.config.batch_size = static_cast<int>(stmt.Int(7));
        e.observation.config.learning_rate = stmt.Double(8);
        const std::string optimizer = stmt.Text(9);
        std::optional<Optimizer> parsed_optimizer = ParseOptimizer(optimizer);
        if (!parsed_optimizer) return CorruptRow("trials.optimizer", optimizer, e.trial_id);
        e.observation.config.optimizer = *parsed_optimizer;
        events.push_back(e);
      }
    });
  }

  StatusOr<std::vector<WorkerRecord>> ListWorkers() override {
    return Read<std::vector<WorkerRecord>>([&](sqlite3* db) {
      const std::string sql = std::string(kSelectWorkers) + " ORDER BY id";
      Statement stmt(db, sql.c_str(), "listing workers");
      return ReadAll(stmt, &ReadWorker);
    });
  }

  StatusOr<int64_t> CreateToken(const TokenRecord& token) override {
    int64_t id = 0;
    TOPOTUNE_RETURN_IF_ERROR(
        Write(std::string("creating ") + RoleName(token.role) + " token '" + token.name + "'",
              [&](sqlite3* db, const std::string& what) {
                Statement stmt(db,
                               "INSERT INTO api_tokens (name, role, hash_hex, external, "
                               "created_at, revoked_at, last_used_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               what);
                stmt.BindText(token.name)
                    .BindText(RoleName(token.role))
                    .BindText(token.hash_hex)
                    .BindInt(token.external ? 1 : 0)
                    .BindDouble(token.created_at)
                    .BindDouble(token.revoked_at)
                    .BindDouble(token.last_used_at);
                TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
                id = sqlite3_last_insert_rowid(db);
                return Status::OK();
              }));
    return id;
  }

  StatusOr<TokenRecord> GetToken(int64_t id) override {
    const std::string token = "token " + std::to_string(id);
    return Read<TokenRecord>([&](sqlite3* db) -> StatusOr<TokenRecord> {
      const std::string sql = std::string(kSelectTokens) + " WHERE id = ?";
      Statement stmt(db, sql.c_str(), "reading " + token);
      stmt.BindInt(id);
      StatusOr<bool> row = stmt.Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::NotFound(token + " not found");
      return ReadToken(stmt);
    });
  }

  StatusOr<std::vector<TokenRecord>> ListTokens() override {
    return Read<std::vector<TokenRecord>>([&](sqlite3* db) {
      const std::string sql = std::string(kSelectTokens) + " ORDER BY id";
      Statement stmt(db, sql.c_str(), "listing tokens");
      return ReadAll(stmt, &ReadToken);
    });
  }

  StatusOr<std::vector<TokenRecord>> FindExternalTokens(const std::string& hash_hex) override {
    return Read<std::vector<TokenRecord>>([&](sqlite3* db) {
      const std::string sql =
          std::string(kSelectTokens) + " WHERE external = 1 AND hash_hex = ? ORDER BY id";
      Statement stmt(db, sql.c_str(), "looking up external tokens");
      stmt.BindText(hash_hex);
      return ReadAll(stmt, &ReadToken);
    });
  }

  Status RevokeToken(int64_t id, double at) override {
    const std::string token = "token " + std::to_string(id);
    return Write("revoking " + token, [&](sqlite3* db, const std::string& what) -> Status {
      Statement stmt(db, "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0",
                     what);
      stmt.BindDouble(at).BindInt(id);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      if (sqlite3_changes(db) > 0) return Status::OK();
      Statement exists(db, "SELECT 1 FROM api_tokens WHERE id = ?", what);
      exists.BindInt(id);
      StatusOr<bool> row = exists.Step();
      if (!row.ok()) return row.status();
      if (!*row) return Status::NotFound(token + " not found");
      return Status::FailedPrecondition(token + " is already revoked");
    });
  }

  Status TouchToken(int64_t id, double at) override {
    const std::string token = "token " + std::to_string(id);
    return Write("recording the use of " + token, [&](sqlite3* db, const std::string& what) {
      Statement stmt(db, "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", what);
      stmt.BindDouble(at).BindInt(id);
      TOPOTUNE_RETURN_IF_ERROR(stmt.Run());
      if (sqlite3_changes(db) == 0) return Status::NotFound(token + " not found");
      return Status::OK();
    });
  }

  int SchemaVersion() const override { return schema_version_; }

 private:
  // Runs `body` in one BEGIN IMMEDIATE transaction on the writer; commits if it returns OK,
  // rolls back otherwise. `what` names the operation in errors and is passed to `body`.
  Status Write(const std::string& what,
               const std::function<Status(sqlite3*, const std::string&)>& body) {
    std::lock_guard<std::mutex> lock(write_mutex_);
    sqlite3* db = writer_.get();
    TOPOTUNE_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", what));
    Status status = body(db, what);
    if (status.ok()) status = Exec(db, "COMMIT", what);
    if (!status.ok() && sqlite3_get_autocommit(db) == 0) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return status;
  }

  // Runs `body` on the reader connection (or on the writer where there is no reader).
  template <typename T>
  StatusOr<T> Read(const std::function<StatusOr<T>(sqlite3*)>& body) {
    if (reader_ != nullptr) {
      std::lock_guard<std::mutex> lock(read_mutex_);
      return body(reader_.get());
    }
    std::lock_guard<std::mutex> lock(write_mutex_);
    return body(writer_.get());
  }

  std::mutex write_mutex_;
  Connection writer_;  // GUARDED_BY(write_mutex_)
  std::mutex read_mutex_;
  Connection reader_;  // GUARDED_BY(read_mutex_); null when reads use the writer
  const int schema_version_;
};

// Opens `path` with `flags` and the busy timeout; the error says what failed.
StatusOr<Connection> OpenConnection(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Connection db(raw);  // closes the handle sqlite returns even on failure
  if (rc != SQLITE_OK) {
    return Status::IOError("opening database '" + path +
                           "': " + (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  if (sqlite3_busy_timeout(db.get(), kBusyTimeoutMs) != SQLITE_OK) {
    return SqliteError(db.get(), "setting the busy timeout of '" + path + "'");
  }
  return db;
}

// Switches the file to WAL; false where SQLite keeps another mode (in-memory databases).
StatusOr<bool> EnableWal(sqlite3* db, const std::string& path) {
  Statement stmt(db, "PRAGMA journal_mode = WAL", "enabling WAL on '" + path + "'");
  StatusOr<bool> row = stmt.Step();
  if (!row.ok()) return row.status();
  return *row && stmt.Text(0) == "wal";
}

}  // namespace

StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  // NOMUTEX: each connection is used under one of the store's mutexes.
  StatusOr<Connection> writer =
      OpenConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  if (!writer.ok()) return writer.status();
  sqlite3* db = writer->get();
  StatusOr<bool> wal = EnableWal(db, path);
  if (!wal.ok()) return wal.status();
  TOPOTUNE_RETURN_IF_ERROR(
      Exec(db, "PRAGMA synchronous = NORMAL", "setting synchronous on '" + path + "'"));
  TOPOTUNE_RETURN_IF_ERROR(
      Exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys on '" + path + "'"));
  StatusOr<int> version = ApplyMigrations(db);
  if (!version.ok()) {
    return Status(version.status().code(),
                  "migrating '" + path + "': " + version.status().message());
  }

  Connection reader;
  if (*wal) {
    StatusOr<Connection> opened = OpenConnection(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
    if (!opened.ok()) return opened.status();
    reader = std::move(opened).value();
  }
  return std::unique_ptr<Store>(
      new SqliteStore(std::move(writer).value(), std::move(reader), *version));
}

}  // namespace topotune
