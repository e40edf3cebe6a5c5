// Crash safety end to end: topotuned is killed with SIGKILL at random moments of a job and
// restarted on the same database and ports; one replay worker, never restarted by hand,
// reconnects by itself. The job must complete with the best configuration of an
// uninterrupted run of the same seed, and every curve point committed before a kill must be
// in the final database, with the same values, once.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/test_process.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The admin secret topotuned starts with (--admin-token-file); admins may do what users do.
const char kAdminToken[] = "kill-test-admin-secret-0123456789-abcdefgh";

// One REST call to the controller on `port`, with the admin token.
httplib::Result Http(int port, const std::string& method, const std::string& path,
                     const std::string& body = "") {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  const httplib::Headers headers = {{"Authorization", std::string("Bearer ") + kAdminToken}};
  if (method == "POST") return client.Post(path, headers, body, "application/json");
  return client.Get(path, headers);
}

// GET `path` as JSON; null when the controller does not answer 200.
json GetJson(int port, const std::string& path) {
  httplib::Result res = Http(port, "GET", path);
  if (!res || res->status != 200) return json();
  return json::parse(res->body);
}

// A curve point as committed to the SQLite file: the columns a worker reports.
struct StoredPoint {
  int64_t samples_seen = 0;
  double train_loss = 0.0;
  double val_accuracy = 0.0;
  double compute_s = 0.0;
  double comm_s = 0.0;
  double wall_s = 0.0;
  bool operator==(const StoredPoint& o) const {
    return std::tie(samples_seen, train_loss, val_accuracy, compute_s, comm_s, wall_s) ==
           std::tie(o.samples_seen, o.train_loss, o.val_accuracy, o.compute_s, o.comm_s, o.wall_s);
  }
};
using PointKey = std::pair<int64_t, int>;  // (trial id, epoch)

// What the database file holds, read on a read-only connection of its own.
struct Committed {
  std::map<PointKey, StoredPoint> points;
  int duplicate_rows = 0;  // (trial, epoch) pairs stored more than once
};

Committed ReadCommitted(const fs::path& db) {
  Committed out;
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> conn(raw, sqlite3_close);
  EXPECT_EQ(rc, SQLITE_OK) << sqlite3_errstr(rc);
  if (rc != SQLITE_OK) return out;
  sqlite3_busy_timeout(raw, 5000);
  // One read transaction, so both queries see the same commit.
  EXPECT_EQ(sqlite3_exec(raw, "BEGIN", nullptr, nullptr, nullptr), SQLITE_OK);
  auto query = [&](const char* sql, const std::function<void(sqlite3_stmt*)>& row) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, sql, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
    int step = 0;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) row(stmt);
    EXPECT_EQ(step, SQLITE_DONE) << sqlite3_errmsg(raw);
    sqlite3_finalize(stmt);
  };
  query(
      "SELECT trial_id, epoch, samples_seen, train_loss, val_accuracy, compute_s, comm_s, wall_s "
      "FROM curve_points",
      [&](sqlite3_stmt* s) {
        StoredPoint p;
        p.samples_seen = sqlite3_column_int64(s, 2);
        p.train_loss = sqlite3_column_double(s, 3);
        p.val_accuracy = sqlite3_column_double(s, 4);
        p.compute_s = sqlite3_column_double(s, 5);
        p.comm_s = sqlite3_column_double(s, 6);
        p.wall_s = sqlite3_column_double(s, 7);
        const PointKey key{sqlite3_column_int64(s, 0), sqlite3_column_int(s, 1)};
        if (!out.points.emplace(key, p).second) ++out.duplicate_rows;
      });
  query(
      "SELECT COUNT(*) FROM (SELECT 1 FROM curve_points GROUP BY trial_id, epoch "
      "HAVING COUNT(*) > 1)",
      [&](sqlite3_stmt* s) { out.duplicate_rows += sqlite3_column_int(s, 0); });
  sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr);
  return out;
}

// topotuned on one database, restartable on the ports of its first start.
class Controller {
 public:
  explicit Controller(const fs::path& dir) : dir_(dir) {}

  // Starts topotuned (ports 0 the first time, the same ports after); false if it did
  // not come up.
  bool Start() {
    const fs::path ports = dir_ / "ports.json";
    std::ofstream(dir_ / "admin.token") << kAdminToken << "\n";
    for (int attempt = 0; attempt < 20; ++attempt) {
      fs::remove(ports);
      process_ = std::make_unique<Process>(
          std::vector<std::string>{TOPOTUNED_BIN, "--db", db().string(), "--http",
                                   "127.0.0.1:" + std::to_string(http_port_), "--workers",
                                   "127.0.0.1:" + std::to_string(worker_port_), "--ports-file",
                                   ports.string(), "--admin-token-file",
                                   (dir_ / "admin.token").string()},
          (dir_ / "topotuned.log").string());
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (!fs::exists(ports) && process_->Running() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (fs::exists(ports)) {
        const json p = json::parse(ReadFile(ports));
        http_port_ = p["http"].get<int>();
        worker_port_ = p["workers"].get<int>();
        ++starts_;
        return true;
      }
      process_.reset();  // could not bind yet (the old sockets): try again
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }
  void Kill() { process_->Kill(); }
  void Stop() { process_.reset(); }

  fs::path db() const { return dir_ / "topotune.db"; }
  int http_port() const { return http_port_; }
  int worker_port() const { return worker_port_; }
  int starts() const { return starts_; }
  std::string Log() const { return ReadFile(dir_ / "topotuned.log"); }

 private:
  fs::path dir_;
  std::unique_ptr<Process> process_;
  int http_port_ = 0;
  int worker_port_ = 0;
  int starts_ = 0;
};

// A folder per run, removed unless the test failed.
fs::path MakeDir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("topotune-kill-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Replay time: 1 simulated second is 1/kSpeedup s, so the table's epochs (0.5-2.5 s on the
// recording CPU) take tens of milliseconds.
constexpr double kSpeedup = 20;

// Starts the replay worker with a worker token issued through the REST API on `http_port`.
std::unique_ptr<Process> StartWorker(const fs::path& dir, int http_port, int worker_port) {
  httplib::Result res = Http(http_port, "POST", "/v1/tokens", R"({"role": "worker"})");
  if (!res || res->status != 201) {
    ADD_FAILURE() << "cannot issue a worker token: " << (res ? res->body : "no answer");
    return nullptr;
  }
  std::ofstream(dir / "worker.token") << json::parse(res->body)["token"].get<std::string>() << "\n";
  return std::make_unique<Process>(
      std::vector<std::string>{
          TOPOTUNE_WORKER_BIN, "--controller", "127.0.0.1:" + std::to_string(worker_port), "--name",
          "w1", "--replay", TOPOTUNE_REPLAY_TABLE, "--speedup", std::to_string(kSpeedup),
          "--data-root", dir.string(), "--checkpoint-dir", (dir / "checkpoints").string(),
          "--token-file", (dir / "worker.token").string(), "--connect-timeout", "60"},
      (dir / "w1.log").string());
}

json KillJob() {
  return json::parse(R"({
    "name": "kill", "model": "lenet",
    "dataset": {"format": "cifar10-bin", "path": "data/shapes"},
    "target_accuracy": 0.8,
    "search_space": {"batch_size": {"min": 16, "max": 256},
                     "learning_rate": {"min": 1e-4, "max": 1.0},
                     "optimizer": ["sgd", "adam"]},
    "scheduler": {"algorithm": "tpe", "min_epochs": 1, "reduction_factor": 3, "rungs": 3},
    "max_trials": 90, "seed": 17})");
}

int64_t Submit(int port) {
  httplib::Result res = Http(port, "POST", "/v1/jobs", KillJob().dump());
  if (!res || res->status != 201) {
    ADD_FAILURE() << "submit failed: " << (res ? res->body : "no response");
    return -1;
  }
  return json::parse(res->body)["id"].get<int64_t>();
}

std::string JobState(int port, int64_t id) {
  const json job = GetJson(port, "/v1/jobs/" + std::to_string(id));
  return job.is_null() ? "" : job["state"].get<std::string>();
}

// Waits until the job ends; returns its state ("" if it did not end in time).
std::string WaitForJob(int port, int64_t id, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    const std::string state = JobState(port, id);
    if (state == "completed" || state == "failed" || state == "cancelled") return state;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return "";
}

// What a finished job ended with: its report and its trials (with curves).
struct Outcome {
  json report;
  json trials;
  double seconds = 0.0;
};

Outcome Finished(int port, int64_t id) {
  Outcome o;
  o.report = GetJson(port, "/v1/jobs/" + std::to_string(id) + "/report");
  const json trials = GetJson(port, "/v1/jobs/" + std::to_string(id) + "/trials");
  o.trials = trials.is_null() ? json::array() : trials["trials"];
  return o;
}

TEST(Kill, AJobKilledAtRandomMomentsCompletesAsAnUninterruptedOneAndLosesNoPoint) {
  // The same job without a kill, on a fresh database.
  Outcome reference;
  {
    const fs::path dir = MakeDir("reference");
    Controller controller(dir);
    ASSERT_TRUE(controller.Start()) << controller.Log();
    std::unique_ptr<Process> worker =
        StartWorker(dir, controller.http_port(), controller.worker_port());
    const auto start = Clock::now();
    const int64_t id = Submit(controller.http_port());
    ASSERT_GE(id, 0);
    ASSERT_EQ(WaitForJob(controller.http_port(), id, 300), "completed") << controller.Log();
    reference = Finished(controller.http_port(), id);
    reference.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    worker.reset();
    controller.Stop();
    if (!HasFailure()) fs::remove_all(dir);
  }
  ASSERT_FALSE(reference.report["best"].is_null()) << reference.report.dump();

  const fs::path dir = MakeDir("killed");
  Controller controller(dir);
  ASSERT_TRUE(controller.Start()) << controller.Log();
  std::unique_ptr<Process> worker =
      StartWorker(dir, controller.http_port(), controller.worker_port());
  const auto start = Clock::now();
  const int64_t id = Submit(controller.http_port());
  ASSERT_GE(id, 0);

  // Kill at a random moment 0.2-1.6 s after each start (the worker takes up to 0.5 s to
  // reconnect), after logging what the file holds; then restart on the same ports.
  constexpr int kKills = 16;  // at most: the job may end first, but not before 10
  std::mt19937_64 rng(20240611);
  std::uniform_int_distribution<int> delay_ms(200, 1600);
  std::map<PointKey, StoredPoint> logged;
  int changed_before_final = 0;  // a logged point seen later with other values
  std::ofstream log(dir / "logged_points.csv");
  log << "kill,trial_id,epoch,val_accuracy,compute_s\n";
  int kills = 0;
  while (kills < kKills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    if (JobState(controller.http_port(), id) == "completed") break;
    const Committed committed = ReadCommitted(controller.db());
    for (const auto& [key, p] : committed.points) {
      auto [it, inserted] = logged.emplace(key, p);
      if (!inserted && !(it->second == p)) ++changed_before_final;
      log << kills + 1 << "," << key.first << "," << key.second << "," << p.val_accuracy << ","
          << p.compute_s << "\n";
    }
    controller.Kill();
    ++kills;
    std::printf("[ kill     ] kill %d: %zu points committed\n", kills, committed.points.size());
    ASSERT_TRUE(controller.Start()) << "restart " << kills << "\n" << controller.Log();
  }
  log.close();
  const std::string state = WaitForJob(controller.http_port(), id, 300);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_EQ(state, "completed") << controller.Log() << ReadFile(dir / "w1.log");
  const Outcome outcome = Finished(controller.http_port(), id);
  const Committed final_points = ReadCommitted(controller.db());

  int lost = 0;
  for (const auto& [key, p] : logged) {
    auto it = final_points.points.find(key);
    if (it == final_points.points.end() || !(it->second == p)) {
      ++lost;
      ADD_FAILURE() << "trial " << key.first << " epoch " << key.second
                    << (it == final_points.points.end() ? " is gone" : " changed");
    }
  }
  int epochs_done = 0;
  for (const json& t : outcome.trials) {
    epochs_done += t["epochs_done"].get<int>();
    // Gap-free curves: the points of a trial are exactly its epochs 1..epochs_done.
    ASSERT_EQ(t["curve"].size(), t["epochs_done"].get<size_t>()) << t.dump();
    for (size_t e = 0; e < t["curve"].size(); ++e) {
      EXPECT_EQ(t["curve"][e]["epoch"].get<size_t>(), e + 1) << t.dump();
    }
  }
  const int stored = static_cast<int>(final_points.points.size());
  const int reported = outcome.report["epochs_trained"].get<int>();
  std::printf(
      "[ kill     ] uninterrupted: %.1f s, %d epochs; killed run: %.1f s, %d kills (%d starts), "
      "%zu points logged before kills, %d lost, %d stored twice, %d stored, report %d epochs, "
      "trials %d epochs done\n",
      reference.seconds, reference.report["epochs_trained"].get<int>(), seconds, kills,
      controller.starts(), logged.size(), lost + changed_before_final, final_points.duplicate_rows,
      stored, reported, epochs_done);

  EXPECT_GE(kills, 10) << "the job ended before 10 kills: make it longer";
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(changed_before_final, 0);
  EXPECT_EQ(final_points.duplicate_rows, 0);
  EXPECT_EQ(reported, stored);
  EXPECT_EQ(epochs_done, stored);
  EXPECT_EQ(outcome.report["best"]["config"], reference.report["best"]["config"])
      << outcome.report["best"].dump() << "\n"
      << reference.report["best"].dump();
  EXPECT_EQ(outcome.report["best"]["number"], reference.report["best"]["number"]);
  EXPECT_EQ(outcome.report["best"]["tta_s"], reference.report["best"]["tta_s"]);
  // The same trials, configurations and fates as without a kill: the sampler and the
  // brackets were rebuilt to the same state every time.
  ASSERT_EQ(outcome.trials.size(), reference.trials.size());
  for (size_t i = 0; i < outcome.trials.size(); ++i) {
    const json& a = outcome.trials[i];
    const json& b = reference.trials[i];
    EXPECT_EQ(a["config"], b["config"]) << "trial " << i;
    EXPECT_EQ(a["state"], b["state"]) << "trial " << i << ": " << a.dump() << "\n" << b.dump();
    EXPECT_EQ(a["epochs_done"], b["epochs_done"]) << "trial " << i;
  }
  EXPECT_NE(controller.Log().find("resumed 1 unfinished job"), std::string::npos);

  worker.reset();
  controller.Stop();
  if (!HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace topotune
