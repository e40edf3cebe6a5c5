// End-to-end: topotuned and two topotune-worker processes on loopback, a real SQLite file,
// real LibTorch training on a small generated dataset, driven through the REST API.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/protocol.h"
#include "tests/test_process.h"
#include "workers/dataset.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Everything one test needs: a folder, a dataset, a controller and two workers.
class Cluster {
 public:
  // Starts topotuned and one worker per entry of `worker_flags` (extra flags each).
  explicit Cluster(const std::string& lease_s = "15",
                   const std::vector<std::vector<std::string>>& worker_flags = {{}, {}},
                   const std::vector<std::string>& server_flags = {}) {
    dir_ = fs::temp_directory_path() /
           ("topotune-it-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ShapesOptions data;
    data.train_samples = 1200;
    data.test_samples = 400;
    EXPECT_TRUE(WriteShapesDataset((dir_ / "data" / "shapes").string(), data).ok());
    const fs::path ports = dir_ / "ports.json";
    admin_token_ = "integration-admin-secret-0123456789-abcdef";
    std::ofstream(dir_ / "admin.token") << admin_token_ << "\n";
    std::vector<std::string> server_argv{TOPOTUNED_BIN,
                                         "--db",
                                         db().string(),
                                         "--http",
                                         "127.0.0.1:0",
                                         "--workers",
                                         "127.0.0.1:0",
                                         "--lease",
                                         lease_s,
                                         "--ports-file",
                                         ports.string(),
                                         "--admin-token-file",
                                         (dir_ / "admin.token").string()};
    server_argv.insert(server_argv.end(), server_flags.begin(), server_flags.end());
    server_ = std::make_unique<Process>(server_argv, (dir_ / "topotuned.log").string());
    for (int i = 0; i < 100 && !fs::exists(ports); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const json p = json::parse(ReadFile(ports));
    http_port_ = p["http"].get<int>();
    worker_port_ = p["workers"].get<int>();
    // The users' and the workers' tokens, issued with the admin token as a user would.
    token_ = CreateToken("user");
    worker_token_ = CreateToken("worker");
    std::ofstream(dir_ / "worker.token") << worker_token_ << "\n";
    for (const std::vector<std::string>& flags : worker_flags) StartWorker(flags);
  }

  // Starts worker w<N> (N counts from 1) with extra `flags`: its own checkpoint folder, as
  // on its own machine.
  void StartWorker(const std::vector<std::string>& flags = {}) {
    const std::string name = "w" + std::to_string(workers_.size() + 1);
    std::vector<std::string> argv = {TOPOTUNE_WORKER_BIN, "--controller",
                                     "127.0.0.1:" + std::to_string(worker_port_), "--name", name,
                                     "--data-root", dir_.string(), "--checkpoint-dir",
                                     (dir_ / ("checkpoints-" + name)).string(), "--threads", "1",
                                     "--token-file", (dir_ / "worker.token").string(),
                                     // A test that dies must not leave workers retrying.
                                     "--connect-timeout", "60"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    workers_.push_back(std::make_unique<Process>(argv, (dir_ / (name + ".log")).string()));
  }
  ~Cluster() {
    workers_.clear();
    server_.reset();
    if (!::testing::Test::HasFailure()) fs::remove_all(dir_);
  }

  fs::path db() const { return dir_ / "topotune.db"; }
  const fs::path& dir() const { return dir_; }
  int worker_port() const { return worker_port_; }
  bool ServerRunning() { return server_->Running(); }
  Process& worker(size_t i) { return *workers_[i]; }
  std::string Log(const std::string& name) { return ReadFile(dir_ / name); }

  const std::string& token() const { return token_; }
  const std::string& admin_token() const { return admin_token_; }
  const std::string& worker_token() const { return worker_token_; }
  int http_port() const { return http_port_; }

  // Requests with the user token (or `token`; empty: none).
  httplib::Result Get(const std::string& path) { return Get(path, token_); }
  httplib::Result Get(const std::string& path, const std::string& token) {
    httplib::Client c("127.0.0.1", http_port_);
    return c.Get(path.c_str(), Auth(token));
  }
  httplib::Result Post(const std::string& path, const std::string& body) {
    return Post(path, body, token_);
  }
  httplib::Result Post(const std::string& path, const std::string& body, const std::string& token) {
    httplib::Client c("127.0.0.1", http_port_);
    return c.Post(path.c_str(), Auth(token), body, "application/json");
  }
  httplib::Result Delete(const std::string& path, const std::string& token) {
    httplib::Client c("127.0.0.1", http_port_);
    return c.Delete(path.c_str(), Auth(token));
  }

  // Issues a token of `role` with the admin token; returns its text, or "" (a failure).
  std::string CreateToken(const std::string& role) {
    auto res = Post("/v1/tokens", json{{"role", role}}.dump(), admin_token_);
    if (!res || res->status != 201) {
      ADD_FAILURE() << "token create failed: " << (res ? res->body : "no response");
      return "";
    }
    return json::parse(res->body)["token"].get<std::string>();
  }

  // Submits a job that must be accepted; returns its id, or -1 (a test failure).
  int64_t Submit(const json& spec) {
    auto submitted = Post("/v1/jobs", spec.dump());
    if (!submitted || submitted->status != 201) {
      ADD_FAILURE() << "submit failed: " << (submitted ? submitted->body : "no response");
      return -1;
    }
    return json::parse(submitted->body)["id"].get<int64_t>();
  }

  // Waits until the job is in a terminal state; returns it.
  json WaitForJob(int64_t id, int timeout_s) {
    json job;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      auto res = Get("/v1/jobs/" + std::to_string(id));
      if (res && res->status == 200) {
        job = json::parse(res->body);
        const std::string state = job["state"];
        if (state == "completed" || state == "failed" || state == "cancelled") return job;
      }
      // No worker left to finish it: say how they ended instead of waiting out the timeout.
      std::string ended;
      for (auto& worker : workers_) {
        if (worker->Running()) {
          ended.clear();
          break;
        }
        const int status = worker->exit_status();
        ended += WIFSIGNALED(status) ? " killed by signal " + std::to_string(WTERMSIG(status))
                                     : " exited " + std::to_string(WEXITSTATUS(status));
      }
      if (!ended.empty()) {
        job["every_worker_ended"] = ended;
        return job;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    return job;
  }

 private:
  static inline int counter_ = 0;
  fs::path dir_;
  std::unique_ptr<Process> server_;
  std::vector<std::unique_ptr<Process>> workers_;
  int http_port_ = 0;
  int worker_port_ = 0;
  std::string admin_token_;
  std::string token_;
  std::string worker_token_;

  static httplib::Headers Auth(const std::string& token) {
    if (token.empty()) return {};
    return {{"Authorization", "Bearer " + token}};
  }
};

json SmallJob() {
  return json::parse(R"({
    "name": "it", "model": "lenet",
    "dataset": {"format": "cifar10-bin", "path": "data/shapes"},
    "target_accuracy": 0.6,
    "search_space": {"batch_size": {"min": 16, "max": 128},
                     "learning_rate": {"min": 1e-3, "max": 0.3},
                     "optimizer": ["sgd", "adam"]},
    "scheduler": {"algorithm": "asha", "min_epochs": 1, "reduction_factor": 2, "rungs": 3},
    "max_trials": 6, "seed": 5})");
}

TEST(Integration, RunsAJobToCompletionAndTheDatabaseAgreesWithTheReport) {
  Cluster cluster;
  const int64_t id = cluster.Submit(SmallJob());
  ASSERT_GE(id, 0);

  const json job = cluster.WaitForJob(id, 400);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("topotuned.log")
                                       << cluster.Log("w1.log") << cluster.Log("w2.log");
  EXPECT_DOUBLE_EQ(job["progress"]["fraction"].get<double>(), 1.0);

  auto workers = cluster.Get("/v1/workers");
  ASSERT_TRUE(workers);
  const json worker_list = json::parse(workers->body)["workers"];
  EXPECT_EQ(worker_list.size(), 2u);
  // Each worker's probe timed every size that fits for the default second at least.
  for (const json& w : worker_list) {
    const double seconds = 1.0;
    ASSERT_EQ(w["profiles"].size(), 1u) << w.dump();
    int timed = 0;
    for (const json& b : w["profiles"][0]["batches"]) {
      if (!b["fits"].get<bool>()) continue;
      EXPECT_GE(b["timed_s"].get<double>(), seconds) << w["id"] << " " << b.dump();
      EXPECT_LT(b["timed_s"].get<double>(), seconds + 2.0) << w["id"] << " " << b.dump();
      ++timed;
    }
    EXPECT_GE(timed, 1) << w.dump();
  }

  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  const json trials = json::parse(trials_res->body)["trials"];
  ASSERT_EQ(trials.size(), 6u);
  int epochs = 0;
  std::set<std::string> used_workers;
  for (const json& t : trials) {
    const std::string state = t["state"];
    EXPECT_TRUE(state == "completed" || state == "stopped" || state == "failed") << t.dump();
    EXPECT_EQ(t["curve"].size(), t["epochs_done"].get<size_t>()) << t.dump();
    epochs += t["epochs_done"].get<int>();
    used_workers.insert(t["worker"].get<std::string>());
    for (size_t e = 0; e < t["curve"].size(); ++e) {
      EXPECT_EQ(t["curve"][e]["epoch"].get<size_t>(), e + 1);  // promotion resumed, no gap
    }
  }
  EXPECT_EQ(used_workers.size(), 2u);

  auto report_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report_res);
  const json report = json::parse(report_res->body);
  ASSERT_FALSE(report["best"].is_null());
  EXPECT_EQ(report["epochs_trained"].get<int>(), epochs);
  EXPECT_GT(report["compute_s"].get<double>(), 0.0);
  EXPECT_GT(report["grid"]["cost_s"].get<double>(), report["compute_s"].get<double>());
  EXPECT_GT(report["compute_vs_grid"].get<double>(), 0.0);
  EXPECT_LT(report["compute_vs_grid"].get<double>(), 1.0);
  if (report["target_reached"].get<bool>()) {
    EXPECT_GT(report["best"]["tta_s"].get<double>(), 0.0);
    // The best curve reaches the target at its last epoch and not before.
    const json& curve = report["best_curve"];
    EXPECT_GE(curve.back()["val_accuracy"].get<double>(), 0.6);
  }

  // The gateway timed echoes over each real worker's connection (they name no site).
  json topology;
  for (int i = 0; i < 50; ++i) {
    auto t = cluster.Get("/v1/topology");
    ASSERT_TRUE(t && t->status == 200);
    topology = json::parse(t->body);
    if (topology["sites"].size() == 1 &&
        topology["sites"][0]["link_to_controller"].value("workers_measured", 0) == 2) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(topology["sites"].size(), 1u) << topology.dump();
  const json& link = topology["sites"][0]["link_to_controller"];
  ASSERT_FALSE(link.is_null()) << topology.dump();
  EXPECT_EQ(link["workers_measured"], 2);
  EXPECT_GT(link["rtt_ms"].get<double>(), 0.0);
  EXPECT_GT(link["down_mbit_s"].get<double>(), 0.0);
  EXPECT_GT(link["up_mbit_s"].get<double>(), 0.0);

  // Trials and curve points in the SQLite file agree with the report: rebuild it from the
  // file alone with the CLI.
  const fs::path out = cluster.dir() / "offline.json";
  const std::string cmd = std::string(TOPOTUNE_CLI_BIN) + " report " + std::to_string(id) +
                          " --json --db " + cluster.db().string() + " > " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const json offline = json::parse(ReadFile(out));
  EXPECT_EQ(offline["best"], report["best"]);
  EXPECT_EQ(offline["ranking"], report["ranking"]);
  EXPECT_DOUBLE_EQ(offline["compute_s"].get<double>(), report["compute_s"].get<double>());
}

// A worker started with --probe-seconds times each batch size that long before its first
// trial; /v1/workers and /v1/devices say how long.
TEST(Integration, AWorkersProbeTimesEachBatchSizeForItsProbeSeconds) {
  Cluster cluster("15", {{"--probe-seconds", "2.5"}});
  ASSERT_GE(cluster.Submit(SmallJob()), 0);
  json profiles;
  for (int i = 0; i < 600 && profiles.empty(); ++i) {  // the probe takes about 10 s
    auto workers = cluster.Get("/v1/workers");
    ASSERT_TRUE(workers && workers->status == 200);
    profiles = json::parse(workers->body)["workers"][0]["profiles"];
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(profiles.size(), 1u) << cluster.Log("w1.log");
  int timed = 0;
  for (const json& b : profiles[0]["batches"]) {
    if (!b["fits"].get<bool>()) continue;
    EXPECT_GE(b["timed_s"].get<double>(), 2.5) << b.dump();
    EXPECT_LT(b["timed_s"].get<double>(), 4.5) << b.dump();
    ++timed;
  }
  EXPECT_GE(timed, 2) << profiles.dump();
  auto devices = cluster.Get("/v1/devices");
  ASSERT_TRUE(devices && devices->status == 200);
  const json classes = json::parse(devices->body)["classes"];
  ASSERT_EQ(classes.size(), 1u) << classes.dump();
  EXPECT_EQ(classes[0]["probes"][0]["batches"][0]["timed_s"], profiles[0]["batches"][0]["timed_s"]);
}

TEST(Integration, MalformedJobsGet400NamingTheProblemAndTheServerKeepsServing) {
  Cluster cluster;
  struct Case {
    std::string body;
    std::string expect;
  };
  std::vector<Case> cases;
  cases.push_back({"{\"model\": \"lenet\",", "not valid JSON"});
  json j = SmallJob();
  j["search_space"]["optimizer"] = {"sgd", "lion"};
  cases.push_back({j.dump(), "unknown optimizer"});
  j = SmallJob();
  j["search_space"]["learning_rate"] = {{"min", 0.5}, {"max", 0.01}};
  cases.push_back({j.dump(), "must be less than max"});
  j = SmallJob();
  j["search_space"]["batch_size"]["min"] = 0;
  cases.push_back({j.dump(), "search_space.batch_size.min"});
  j = SmallJob();
  j.erase("target_accuracy");
  cases.push_back({j.dump(), "target_accuracy is required"});
  j = SmallJob();
  j["model"] = "alexnet-9000";
  cases.push_back({j.dump(), "unknown model"});
  for (const Case& c : cases) {
    auto res = cluster.Post("/v1/jobs", c.body);
    ASSERT_TRUE(res) << c.expect;
    EXPECT_EQ(res->status, 400) << c.body;
    const json body = json::parse(res->body);
    EXPECT_EQ(body["error"]["code"], "INVALID_ARGUMENT");
    EXPECT_NE(body["error"]["message"].get<std::string>().find(c.expect), std::string::npos)
        << body.dump();
  }
  // Too large, unknown job, bad id, unknown route: clear errors too.
  auto big = cluster.Post("/v1/jobs", std::string(2 * 1024 * 1024, ' '));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto missing = cluster.Get("/v1/jobs/999");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("job 999 not found"), std::string::npos) << missing->body;
  auto bad_id = cluster.Get("/v1/jobs/abc/report");
  ASSERT_TRUE(bad_id);
  EXPECT_EQ(bad_id->status, 400);

  // A worker that sends garbage gets an error frame and is dropped; the controller lives.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(cluster.worker_port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string garbage = std::string("\x00\x00\x00\x05", 4) + "hello";
  ASSERT_EQ(write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
  unsigned char header[4];
  ASSERT_EQ(recv(fd, header, 4, MSG_WAITALL), 4);
  std::string reply(DecodeFrameLength(header), '\0');
  ASSERT_EQ(recv(fd, reply.data(), reply.size(), MSG_WAITALL), static_cast<ssize_t>(reply.size()));
  const json error = json::parse(reply);
  EXPECT_EQ(error["type"], "error");
  EXPECT_NE(error["message"].get<std::string>().find("not valid JSON"), std::string::npos);
  close(fd);

  EXPECT_TRUE(cluster.ServerRunning());
  auto ok = cluster.Post("/v1/jobs", SmallJob().dump());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201) << ok->body;
  const int64_t id = json::parse(ok->body)["id"].get<int64_t>();
  auto cancel = cluster.Post("/v1/jobs/" + std::to_string(id) + "/cancel", "");
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 200) << cancel->body;
  EXPECT_EQ(json::parse(cancel->body)["state"], "cancelled");
  auto again = cluster.Post("/v1/jobs/" + std::to_string(id) + "/cancel", "");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409);
  auto jobs = cluster.Get("/v1/jobs");
  ASSERT_TRUE(jobs);
  EXPECT_EQ(json::parse(jobs->body)["jobs"].size(), 1u);  // the malformed ones stored nothing
}

TEST(Integration, AWorkerThatGoesSilentLosesItsLeaseAndItsTrialIsRerun) {
  Cluster cluster(/*lease_s=*/"3");
  json spec = SmallJob();
  spec["max_trials"] = 4;
  spec["scheduler"]["min_epochs"] = 2;
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  // Wait until w1 runs a trial, then freeze it: its connection stays open but silent.
  int64_t frozen_trial = -1;
  for (int i = 0; i < 200 && frozen_trial < 0; ++i) {
    auto res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
    if (res && res->status == 200) {
      const json body = json::parse(res->body);
      for (const json& t : body["trials"]) {
        if (t["state"] == "running" && t["worker"] == "w1") frozen_trial = t["id"].get<int64_t>();
      }
    }
    if (frozen_trial < 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(frozen_trial, 0) << cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials")->body
                             << cluster.Log("topotuned.log") << cluster.Log("w1.log");
  cluster.worker(0).Signal(SIGSTOP);

  const json job = cluster.WaitForJob(id, 300);
  cluster.worker(0).Signal(SIGKILL);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("topotuned.log");
  EXPECT_NE(cluster.Log("topotuned.log").find("w1 silent"), std::string::npos);
  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  const json trials = json::parse(trials_res->body)["trials"];
  for (const json& t : trials) {
    if (t["id"].get<int64_t>() != frozen_trial) continue;
    // Rerun from epoch 0 on the worker that is left, with a gap-free curve.
    EXPECT_EQ(t["worker"], "w2") << t.dump();
    EXPECT_GE(t["epochs_done"].get<int>(), 1) << t.dump();
    EXPECT_EQ(t["curve"].size(), t["epochs_done"].get<size_t>());
  }
  auto workers = cluster.Get("/v1/workers");
  ASSERT_TRUE(workers);
  const json worker_list = json::parse(workers->body)["workers"];
  for (const json& w : worker_list) {
    if (w["id"] == "w1") {
      EXPECT_EQ(w["state"], "offline");
    }
  }
}

// The trial of `id`'s job with id `trial_id` as GET /v1/jobs/{id}/trials shows it (null if
// it cannot be read).
json TrialOf(Cluster& cluster, int64_t id, int64_t trial_id) {
  auto res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  if (!res || res->status != 200) return json();
  const json body = json::parse(res->body);
  for (const json& t : body["trials"]) {
    if (t["id"].get<int64_t>() == trial_id) return t;
  }
  return json();
}

TEST(Integration, AWorkerKilledMidSegmentOfAPromotedTrialIsResumedFromItsCheckpointElsewhere) {
  // One LibTorch worker first: every checkpoint is written by w1 and uploaded by it.
  Cluster cluster("15", {{}});
  json spec = SmallJob();
  spec["target_accuracy"] = 0.999;  // never reached: promoted segments run to their end
  spec["max_trials"] = 9;
  spec["scheduler"]["min_epochs"] = 2;  // rungs of 2, 6 and 18 epochs
  spec["scheduler"]["reduction_factor"] = 3;
  spec["scheduler"]["rungs"] = 3;
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);

  // Wait until w1 is in the middle of a promoted segment: it resumed a trial at epoch
  // start > 0 and has reported at least one epoch after it, but not the last.
  int64_t trial_id = -1;
  int start = 0;
  int end = 0;
  int reported = 0;       // epochs of the trial stored when w1 was killed (at least)
  double reported_s = 0;  // their training seconds
  for (int i = 0; i < 3000 && trial_id < 0; ++i) {
    auto res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
    if (res && res->status == 200) {
      const json body = json::parse(res->body);
      for (const json& t : body["trials"]) {
        const int done = t["epochs_done"].get<int>();
        const int rung_start = t["rung"].get<int>() == 1 ? 2 : 6;
        const int rung_end = t["rung"].get<int>() == 1 ? 6 : 18;
        if (t["state"] == "running" && t["rung"].get<int>() > 0 && done > rung_start &&
            done < rung_end) {
          trial_id = t["id"].get<int64_t>();
          start = rung_start;
          end = rung_end;
          reported = done;
          reported_s = t["train_s"].get<double>();
        }
      }
    }
    if (trial_id < 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(trial_id, 0) << cluster.Log("topotuned.log") << cluster.Log("w1.log");
  cluster.worker(0).Signal(SIGKILL);

  // The cut segment's points are gone with it: the trial waits at its rung's start.
  json cut;
  for (int i = 0; i < 200; ++i) {
    cut = TrialOf(cluster, id, trial_id);
    if (!cut.is_null() && cut["state"] == "pending") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(cut["state"], "pending") << cut.dump() << cluster.Log("topotuned.log");
  EXPECT_EQ(cut["epochs_done"].get<int>(), start) << cut.dump();
  EXPECT_EQ(cut["curve"].size(), static_cast<size_t>(start)) << cut.dump();
  // The cut epochs' seconds were spent: the trial keeps them apart from its kept epochs'.
  const double cut_s = cut["cut_s"].get<double>();
  EXPECT_GE(cut_s, reported_s - cut["train_s"].get<double>() - 1e-9) << cut.dump();
  EXPECT_GT(cut_s, 0.0) << cut.dump();
  const std::string checkpoint = "job" + std::to_string(id) + "-trial" +
                                 std::to_string(cut["number"].get<int>()) + "-e" +
                                 std::to_string(start) + ".pt";
  EXPECT_TRUE(fs::exists(fs::path(cluster.db().string() + ".checkpoints") / checkpoint))
      << cluster.Log("topotuned.log");

  // w2 never saw that trial: it gets the checkpoint from the controller and goes on from
  // the rung's start.
  cluster.StartWorker();
  const json job = cluster.WaitForJob(id, 500);
  ASSERT_EQ(job["state"], "completed")
      << job.dump() << cluster.Log("topotuned.log") << cluster.Log("w2.log");
  const std::string w2_log = cluster.Log("w2.log");
  EXPECT_NE(w2_log.find("received checkpoint " + checkpoint), std::string::npos) << w2_log;
  EXPECT_NE(w2_log.find("trial " + std::to_string(trial_id) + ": "), std::string::npos) << w2_log;
  EXPECT_NE(w2_log.find("epochs " + std::to_string(start + 1) + ".." + std::to_string(end)),
            std::string::npos)
      << w2_log;
  EXPECT_NE(cluster.Log("topotuned.log").find("sending checkpoint " + checkpoint + " to worker w2"),
            std::string::npos);

  // Every trial's curve is whole, from epoch 1, with one point per epoch done; the report
  // counts exactly those.
  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  int epochs = 0;
  const json trials = json::parse(trials_res->body)["trials"];
  for (const json& t : trials) {
    ASSERT_EQ(t["curve"].size(), t["epochs_done"].get<size_t>()) << t.dump();
    for (size_t e = 0; e < t["curve"].size(); ++e) {
      EXPECT_EQ(t["curve"][e]["epoch"].get<size_t>(), e + 1) << t.dump();
    }
    epochs += t["epochs_done"].get<int>();
    if (t["id"].get<int64_t>() == trial_id) {
      EXPECT_GE(t["epochs_done"].get<int>(), end) << t.dump();
      EXPECT_EQ(t["worker"], "w2");
      EXPECT_NE(t["state"], "failed") << t.dump();
    }
  }
  auto report = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report);
  EXPECT_EQ(json::parse(report->body)["epochs_trained"].get<int>(), epochs);
  EXPECT_DOUBLE_EQ(json::parse(report->body)["cut_s"].get<double>(), cut_s);
  std::printf(
      "worker kill: trial %lld killed in epochs %d..%d with >= %d epochs stored; cut back to "
      "%d; resumed on w2 from %s; job completed with %d stored points = %d report epochs\n",
      static_cast<long long>(trial_id), start + 1, end, reported, start, checkpoint.c_str(), epochs,
      json::parse(report->body)["epochs_trained"].get<int>());
  // The job is done: the controller keeps none of its checkpoints.
  for (const auto& entry : fs::directory_iterator(cluster.db().string() + ".checkpoints")) {
    ADD_FAILURE() << "left behind: " << entry.path();
  }
}

TEST(Integration, AWorkerUnderAMemoryLimitFindsItsLargestBatchAndGetsNothingLarger) {
  // One worker whose address space is capped 400 MiB above its size at start (RLIMIT_AS,
  // what `ulimit -v` sets): ResNet-8 at batch 1024 needs about 1.5 GB.
  Cluster cluster("15", {{"--memory-budget", "400"}});
  json spec = SmallJob();
  spec["model"] = "resnet8";
  spec["dataset"]["max_train_samples"] = 256;
  spec["dataset"]["max_val_samples"] = 128;
  spec["search_space"]["batch_size"] = {{"min", 16}, {"max", 1024}};
  spec["scheduler"] = {{"min_epochs", 1}, {"reduction_factor", 2}, {"rungs", 1}};
  spec["max_trials"] = 6;
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 400);
  ASSERT_EQ(job["state"], "completed")
      << job.dump() << cluster.Log("topotuned.log") << cluster.Log("w1.log");
  EXPECT_TRUE(cluster.worker(0).Running()) << cluster.Log("w1.log");

  auto workers = cluster.Get("/v1/workers");
  ASSERT_TRUE(workers);
  const json list = json::parse(workers->body)["workers"];
  ASSERT_EQ(list.size(), 1u);
  ASSERT_EQ(list[0]["profiles"].size(), 1u) << list.dump();
  const json& profile = list[0]["profiles"][0];
  EXPECT_EQ(profile["model"], "resnet8");
  EXPECT_EQ(profile["input"], "3x32x32");
  const int max_batch = profile["max_batch_size"].get<int>();
  EXPECT_GE(max_batch, 16);
  EXPECT_LT(max_batch, 1024);
  bool saw_oom = false;
  for (const json& b : profile["batches"]) {
    if (b["fits"].get<bool>()) {
      EXPECT_GT(b["step_ms"].get<double>(), 0.0);
    } else {
      saw_oom |= b["error"].get<std::string>().find("out of memory") != std::string::npos;
    }
  }
  EXPECT_TRUE(saw_oom) << profile.dump();

  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  const json trials = json::parse(trials_res->body)["trials"];
  EXPECT_EQ(trials.size(), 6u);
  for (const json& t : trials) {
    EXPECT_LE(t["config"]["batch_size"].get<int>(), max_batch) << t.dump();
    EXPECT_NE(t["state"], "infeasible") << t.dump();
  }
}

// Runs `command` through the shell; its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, output};
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(Integration, TheProbeCommandPrintsWhatFitsUnderAMemoryLimitAndNamesAnUnknownModel) {
  const fs::path dir = fs::temp_directory_path() / ("topotune-probe-" + std::to_string(getpid()));
  fs::remove_all(dir);
  ShapesOptions data;
  data.train_samples = 64;
  data.test_samples = 64;
  ASSERT_TRUE(WriteShapesDataset(dir.string(), data).ok());
  const std::string probe = std::string(TOPOTUNE_WORKER_BIN) + " probe --data " + dir.string();

  // `ulimit -v` as a user sets it: ResNet-8 at batch 4096 needs several GB, more than the
  // 2.5 GB of address space (LibTorch's own mappings included) that this leaves.
  const auto [status, output] =
      RunCommand("ulimit -v 2500000 && " + probe +
                 " --model resnet8 --batch-sizes 8,4096,16 --steps 1 --threads 1 2>/dev/null");
  ASSERT_EQ(status, 0) << output;
  const json result = json::parse(output);
  EXPECT_TRUE(result["device"]["kind"] == "cpu" || result["device"]["kind"] == "cuda") << output;
  EXPECT_GT(result["device"]["memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(result["probe"]["model"], "resnet8");
  EXPECT_EQ(result["probe"]["input"], "3x32x32");
  const json& batches = result["probe"]["batches"];
  ASSERT_EQ(batches.size(), 3u) << output;  // tried in ascending order
  EXPECT_EQ(batches[0]["batch_size"], 8);
  EXPECT_EQ(batches[1]["batch_size"], 16);
  EXPECT_EQ(batches[2]["batch_size"], 4096);
  for (int i : {0, 1}) {
    EXPECT_TRUE(batches[i]["fits"].get<bool>()) << output;
    EXPECT_GT(batches[i]["step_ms"].get<double>(), 0.0);
    // The step split as the trainer splits it; the parts add up to the step.
    const double parts = batches[i]["forward_ms"].get<double>() +
                         batches[i]["backward_ms"].get<double>() +
                         batches[i]["optimizer_ms"].get<double>();
    EXPECT_GT(batches[i]["forward_ms"].get<double>(), 0.0);
    EXPECT_GT(batches[i]["backward_ms"].get<double>(), 0.0);
    EXPECT_NEAR(parts, batches[i]["step_ms"].get<double>(),
                1e-6 * batches[i]["step_ms"].get<double>());
    EXPECT_GT(batches[i]["peak_memory_bytes"].get<int64_t>(), 0);
  }
  if (result["device"]["kind"] == "cpu") {
    EXPECT_FALSE(batches[2]["fits"].get<bool>()) << output;
    EXPECT_NE(batches[2]["error"].get<std::string>().find("out of memory"), std::string::npos);
    EXPECT_EQ(result["probe"]["max_batch_size"], 16);
  }

  const auto [bad_status, bad_output] = RunCommand(probe + " --model resnet7");
  EXPECT_EQ(bad_status, 1);
  EXPECT_NE(bad_output.find("unknown model 'resnet7'"), std::string::npos) << bad_output;
  const auto [usage_status, usage_output] = RunCommand(probe + " --batch-sizes 8,x");
  EXPECT_EQ(usage_status, 2);
  EXPECT_NE(usage_output.find("bad value '8,x' for --batch-sizes"), std::string::npos)
      << usage_output;
  const auto [rounds_status, rounds_output] = RunCommand(probe + " --rounds 0");
  EXPECT_EQ(rounds_status, 2);
  EXPECT_NE(rounds_output.find("--rounds must be in [1, 100]"), std::string::npos) << rounds_output;
  // The worker's own flag for the probes the controller asks of it.
  const auto [agent_status, agent_output] =
      RunCommand(std::string(TOPOTUNE_WORKER_BIN) + " --probe-seconds 900");
  EXPECT_EQ(agent_status, 2);
  EXPECT_NE(agent_output.find("--probe-seconds must be in [0, 600]"), std::string::npos)
      << agent_output;
  fs::remove_all(dir);
}

// Under a cgroup memory limit (a container's, or the testbed's edge) the kernel kills a
// process that goes over it; the probe caps its own address space below the limit, so a
// batch that does not fit fails to allocate and is reported, and the probe lives.
// A TCP port on loopback that nothing listens on right now (bound to port 0, then closed).
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(Integration, TwoDataParallelRanksAllReduceTheirGradientsOverGloo) {
  const fs::path dir = fs::temp_directory_path() / ("topotune-dp-" + std::to_string(getpid()));
  ShapesOptions data;
  data.train_samples = 16;
  data.test_samples = 16;
  ASSERT_TRUE(WriteShapesDataset(dir.string(), data).ok());
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  // At least 3 steps and 0.2 s: the ranks time different lengths of each step, but stop
  // together.
  auto rank = [&](int r, int world) {
    return std::string(TOPOTUNE_WORKER_BIN) + " dp-probe --data " + dir.string() +
           " --model lenet --local-batch 8 --world " + std::to_string(world) + " --rank " +
           std::to_string(r) + " --store 127.0.0.1:" + std::to_string(port) +
           " --bind 127.0.0.1 --steps 3 --warmup 1 --min-seconds 0.2 --threads 1 --timeout 60";
  };
  const fs::path rank1 = dir / "rank1.json";
  // Rank 1 in the background, rank 0 (the store's server) in front; both must finish.
  const auto [status, output] =
      RunCommand("sh -c '" + rank(1, 2) + " > " + rank1.string() + " 2>&1 & " + rank(0, 2) +
                 " 2>&1; s=$?; wait $! || s=$?; exit $s'");
  std::ifstream in(rank1);
  const std::string other((std::istreambuf_iterator<char>(in)), {});
  ASSERT_EQ(status, 0) << output << other;
  for (const std::string& text : {output, other}) {
    const json r = json::parse(text);
    EXPECT_EQ(r["world"], 2) << text;
    EXPECT_EQ(r["local_batch"], 8) << text;
    EXPECT_GT(r["steps"], 3) << text;  // a LeNet step at batch 8 takes milliseconds
    // LeNet on 3x32x32 with 10 classes: 62,006 parameters, all-reduced as float32.
    EXPECT_EQ(r["gradient_bytes"], 62006 * 4) << text;
    EXPECT_GT(r["sync_s"].get<double>(), 0.0) << text;
    EXPECT_GT(r["compute_s"].get<double>(), 0.0) << text;
    EXPECT_NEAR(r["compute_s"].get<double>() + r["sync_s"].get<double>(), r["step_s"].get<double>(),
                1e-3 * r["step_s"].get<double>())
        << text;
    EXPECT_GT(r["step_median_s"].get<double>(), 0.0) << text;
  }
  EXPECT_EQ(json::parse(output)["steps"], json::parse(other)["steps"]) << output << other;
  // The first rank to have timed 0.2 s ended it (the other may be a step short of that).
  const auto timed = [](const std::string& text) {
    const json r = json::parse(text);
    return r["steps"].get<int>() * r["step_s"].get<double>();
  };
  EXPECT_GE(std::max(timed(output), timed(other)), 0.2) << output << other;
  EXPECT_EQ(json::parse(output)["rank"], 0);
  EXPECT_EQ(json::parse(other)["rank"], 1);
  // The ranks trained on different batches from the same weights: only averaged gradients
  // leave them with the same weights.
  EXPECT_EQ(json::parse(output)["weights_checksum"].get<double>(),
            json::parse(other)["weights_checksum"].get<double>());
  // One rank alone, on its own batch, ends elsewhere; with no seconds asked, after exactly
  // the steps asked.
  const auto [single, alone_output] = RunCommand(rank(0, 1) + " --min-seconds 0");
  ASSERT_EQ(single, 0) << alone_output;
  EXPECT_EQ(json::parse(alone_output)["steps"], 3) << alone_output;
  EXPECT_NE(json::parse(alone_output)["weights_checksum"].get<double>(),
            json::parse(output)["weights_checksum"].get<double>());

  // A rank whose peer never comes gives up after its timeout and names the rendezvous.
  const auto [alone, said] = RunCommand(
      std::string(TOPOTUNE_WORKER_BIN) + " dp-probe --data " + dir.string() +
      " --model lenet --local-batch 8 --world 2 --rank 0 --store 127.0.0.1:" +
      std::to_string(UnusedPort()) + " --bind 127.0.0.1 --steps 1 --threads 1 --timeout 2");
  EXPECT_EQ(alone, 1) << said;
  EXPECT_NE(said.find("rank 0 of 2"), std::string::npos) << said;
  // A bad request is a usage error.
  const auto [bad, why] =
      RunCommand(std::string(TOPOTUNE_WORKER_BIN) + " dp-probe --data " + dir.string() +
                 " --model lenet --local-batch 8 --world 2 "
                 "--rank 2 --store 127.0.0.1:1");
  EXPECT_EQ(bad, 2) << why;
  EXPECT_NE(why.find("rank must be in [0, world - 1]"), std::string::npos) << why;
  fs::remove_all(dir);
}

TEST(Integration, TheProbeUnderACgroupMemoryLimitReportsWhatDoesNotFitAndIsNotKilled) {
  std::string cgroup = "/sys/fs/cgroup/memory/topotune-probe-" + std::to_string(getpid());
  std::string limit_file = cgroup + "/memory.limit_in_bytes";
  if (!fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
    cgroup = "/sys/fs/cgroup/topotune-probe-" + std::to_string(getpid());
    limit_file = cgroup + "/memory.max";
    std::ifstream controllers("/sys/fs/cgroup/cgroup.subtree_control");
    std::string enabled((std::istreambuf_iterator<char>(controllers)), {});
    if (enabled.find("memory") == std::string::npos) {
      GTEST_SKIP() << "no cgroup memory controller to limit a process with";
    }
  }
  std::error_code made;
  if (!fs::create_directory(cgroup, made)) {
    GTEST_SKIP() << "cannot make a cgroup (" << made.message() << "): not root?";
  }
  const fs::path dir = fs::temp_directory_path() / ("topotune-cgprobe-" + std::to_string(getpid()));
  ShapesOptions data;
  data.train_samples = 64;
  data.test_samples = 64;
  ASSERT_TRUE(WriteShapesDataset(dir.string(), data).ok());
  std::ofstream(limit_file) << (int64_t{1536} << 20);  // the testbed edge's 1.5 GiB
  // ResNet-8 at batch 4096 needs several GB.
  const auto [status, output] = RunCommand(
      "sh -c 'echo $$ > " + cgroup + "/cgroup.procs && exec " + TOPOTUNE_WORKER_BIN +
      " probe --data " + dir.string() +
      " --model resnet8 --batch-sizes 16,4096 --steps 1 --seconds 0 --threads 1 2>/dev/null'");
  fs::remove(cgroup);  // empty again once the probe has exited
  fs::remove_all(dir);
  ASSERT_EQ(status, 0) << output;  // 137 when the kernel killed it
  const json result = json::parse(output);
  if (result["device"]["kind"] != "cpu") GTEST_SKIP() << "the cap applies to the CPU only";
  EXPECT_EQ(result["device"]["memory_bytes"].get<int64_t>(), int64_t{1536} << 20);
  const json& batches = result["probe"]["batches"];
  ASSERT_EQ(batches.size(), 2u) << output;
  EXPECT_TRUE(batches[0]["fits"].get<bool>()) << output;
  EXPECT_FALSE(batches[1]["fits"].get<bool>()) << output;
  EXPECT_NE(batches[1]["error"].get<std::string>().find("out of memory"), std::string::npos);
  EXPECT_EQ(result["probe"]["max_batch_size"], 16);
}

// VGG-11's 9 million weights take 37 MB a buffer. Under a budget of 210 MiB (146 MiB for
// tensors) a step with SGD's state (weights, gradients, momentum) fits at batch 1 and 8,
// and one with Adam's (two moments) does not; under 1 GiB both fit. The budget's address
// space cap leaves no room for OpenBLAS's 128 MiB buffer once the worker has started, where
// it would retry forever, so this also checks the worker maps it before the cap.
TEST(Integration, TheProbeSaysWhichSizesFitWithSgdButNotWithAdamsLargerState) {
  const fs::path dir = fs::temp_directory_path() / ("topotune-adamfit-" + std::to_string(getpid()));
  ShapesOptions data;
  data.train_samples = 64;
  data.test_samples = 64;
  ASSERT_TRUE(WriteShapesDataset(dir.string(), data).ok());
  for (const int budget_mib : {210, 1024}) {
    const auto [status, output] = RunCommand(
        "timeout 120 " + std::string(TOPOTUNE_WORKER_BIN) + " probe --data " + dir.string() +
        " --model vgg11 --batch-sizes 1,8 --steps 1 --seconds 0 --rounds 1 --threads 1"
        " --memory-budget " +
        std::to_string(budget_mib) + " 2>/dev/null");
    ASSERT_EQ(status, 0) << budget_mib << " MiB: " << output;  // 124: it hung
    const json result = json::parse(output);
    if (result["device"]["kind"] != "cpu") GTEST_SKIP() << "the budget applies to the CPU only";
    const json& batches = result["probe"]["batches"];
    ASSERT_EQ(batches.size(), 2u) << output;
    for (const json& b : batches) {
      EXPECT_TRUE(b["fits"].get<bool>()) << budget_mib << " MiB: " << output;
      EXPECT_EQ(b["adam_does_not_fit"].get<bool>(), budget_mib == 210)
          << budget_mib << " MiB: " << output;
    }
  }
  fs::remove_all(dir);
}

// A replay table with a known optimum: accuracy after e epochs approaches a ceiling that
// is highest at lr 0.01 and batch 64 for adam; epochs get cheaper with larger batches.
std::string SyntheticReplayTable() {
  std::ostringstream out;
  out << std::setprecision(17) << "# model=lenet\n# device=synthetic\n"
      << "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  for (int b = 16; b <= 512; b *= 2) {
    for (double lr : {1e-4, 1e-3, 1e-2, 1e-1, 1.0}) {
      for (const char* opt : {"sgd", "adam"}) {
        for (int seed = 0; seed < 2; ++seed) {
          const double distance = std::abs(std::log10(lr) + 2) + std::abs(std::log2(b) - 6) / 3;
          const double ceiling = (std::string(opt) == "adam" ? 0.95 : 0.9) - 0.15 * distance;
          const double rate = 0.5 / (1.0 + distance);
          for (int e = 1; e <= 9; ++e) {
            const double acc = std::max(0.1, ceiling * (1 - std::exp(-rate * e)) - 0.01 * seed);
            out << b << "," << lr << "," << opt << "," << seed << "," << e << "," << acc << ","
                << 8.0 / std::sqrt(b) << "\n";
          }
        }
      }
    }
  }
  return out.str();
}

// Writes the synthetic table to a temporary file named after `name`.
fs::path WriteSyntheticTable(const std::string& name) {
  const fs::path table =
      fs::temp_directory_path() / ("topotune-" + name + "-" + std::to_string(getpid()) + ".csv");
  std::ofstream out(table);
  out << SyntheticReplayTable();
  return table;
}

TEST(Integration, AReplayWorkerRunsAWholeJobThroughTheControllerInSeconds) {
  const fs::path table = WriteSyntheticTable("replay-table");
  Cluster cluster("15", {{"--replay", table.string(), "--speedup", "0"}});
  json spec = SmallJob();
  spec["target_accuracy"] = 0.7;
  spec["search_space"]["batch_size"] = {{"min", 16}, {"max", 512}};
  spec["search_space"]["learning_rate"] = {{"min", 1e-4}, {"max", 1.0}};
  spec["max_trials"] = 30;
  spec["scheduler"] = {{"min_epochs", 1}, {"reduction_factor", 3}, {"rungs", 3}};
  const auto start = std::chrono::steady_clock::now();
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 60);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("w1.log");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));

  auto report_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report_res);
  const json report = json::parse(report_res->body);
  ASSERT_TRUE(report["target_reached"].get<bool>()) << report.dump();
  // Simulated time: every epoch costs exactly what the table recorded for its batch size.
  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  const json trials = json::parse(trials_res->body)["trials"];
  double recorded = 0.0;
  for (const json& t : trials) {
    for (const json& p : t["curve"]) {
      recorded += p["compute_s"].get<double>();
      const double expected = 8.0 / std::sqrt(t["config"]["batch_size"].get<double>());
      // The trial's batch size is one of the table's, so its epochs cost exactly that.
      EXPECT_NEAR(p["compute_s"].get<double>(), expected, 1e-9) << t.dump();
    }
  }
  EXPECT_NEAR(report["train_s"].get<double>(), recorded, 1e-6);
  fs::remove(table);
}

// Two configurations, 3 seeds, 1 s an epoch: lr 0.1 reaches 0.7 at epoch 1 on seeds 0
// and 1 and at epoch 9 on seed 2 (mean 3.67 s); lr 0.01 at epoch 3 on every seed (3 s).
fs::path WriteLuckyTable(const std::string& name) {
  const fs::path table =
      fs::temp_directory_path() / ("topotune-" + name + "-" + std::to_string(getpid()) + ".csv");
  std::ofstream out(table);
  out << "# model=lenet\n# device=synthetic\n"
      << "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  for (const double lr : {0.01, 0.1}) {
    for (int seed = 0; seed < 3; ++seed) {
      const int reach = lr == 0.01 ? 3 : seed < 2 ? 1 : 9;
      for (int e = 1; e <= 9; ++e) {
        const double acc = e >= reach ? 0.75 : 0.2 + 0.01 * e + 0.001 * seed;
        out << "16," << lr << ",sgd," << seed << "," << e << "," << acc << ",1\n";
      }
    }
  }
  return table;
}

TEST(Integration, WithIncumbentSeedsTheReportNamesTheBestMeanOverSeedsNotALuckyRun) {
  const fs::path table = WriteLuckyTable("replay-lucky");
  Cluster cluster("15", {{"--replay", table.string(), "--speedup", "0"}});
  json spec = SmallJob();
  spec["target_accuracy"] = 0.7;
  spec["search_space"] = {{"batch_size", {{"min", 16}, {"max", 16}}},
                          {"learning_rate", {{"min", 0.01}, {"max", 0.1}}},
                          {"optimizer", {"sgd"}}};
  spec["scheduler"] = {{"algorithm", "random"}, {"min_epochs", 9}, {"rungs", 1}};
  spec["max_trials"] = 8;
  spec["incumbent_seeds"] = 3;
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 60);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("w1.log");
  auto report_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report_res);
  const json report = json::parse(report_res->body);
  // Both configurations were tried (the worker replays the nearest recorded one).
  int lucky = 0, steady = 0;
  for (const json& t : report["ranking"]) {
    if (!t["confirms"].is_null()) continue;
    (t["config"]["learning_rate"].get<double>() > 0.0316 ? lucky : steady) += 1;
  }
  ASSERT_GE(lucky, 1) << report.dump();
  ASSERT_GE(steady, 1) << report.dump();
  ASSERT_TRUE(report["target_reached"].get<bool>()) << report.dump();
  EXPECT_LT(report["best"]["config"]["learning_rate"].get<double>(), 0.0316) << report.dump();
  EXPECT_DOUBLE_EQ(report["best"]["tta_s"].get<double>(), 3.0);
  EXPECT_EQ(report["best_seed_tta_s"], json({3.0, 3.0, 3.0}));
  const auto [rc, text] = RunCommand(std::string(TOPOTUNE_CLI_BIN) + " report " +
                                     std::to_string(id) + " --db " + cluster.db().string());
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("the mean over 3 seeds, whose TTAs were 3.00, 3.00, 3.00 s"),
            std::string::npos)
      << text;
  fs::remove(table);
}

TEST(Integration, AJobWithATimeBudgetEndsWhenItIsSpentAndItsReportSaysSo) {
  const fs::path table = WriteSyntheticTable("replay-table-budget");
  Cluster cluster("15", {{"--replay", table.string(), "--speedup", "0"}});
  json spec = SmallJob();
  spec["target_accuracy"] = 0.99;  // above the table: only the budget ends the job early
  spec["search_space"]["batch_size"] = {{"min", 16}, {"max", 512}};
  spec["search_space"]["learning_rate"] = {{"min", 1e-4}, {"max", 1.0}};
  spec["max_trials"] = 30;
  spec["scheduler"] = {{"min_epochs", 1}, {"reduction_factor", 3}, {"rungs", 3}};
  spec["time_budget_s"] = 6.0;  // 30 trials cost at least 30 x 0.35 s
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 60);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("w1.log");
  EXPECT_NE(job["message"].get<std::string>().find("time budget of 6.00 s spent"),
            std::string::npos)
      << job.dump();
  auto report_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report_res);
  const json report = json::parse(report_res->body);
  // One worker: at most the epoch that spent the budget beyond it (2 s at batch 16).
  EXPECT_GE(report["train_s"].get<double>(), 6.0);
  EXPECT_LE(report["train_s"].get<double>(), 8.0);
  EXPECT_LT(report["trials_total"].get<int>(), 30) << "the budget did not end the job early";
  int by_budget = 0;
  for (const json& t : report["ranking"]) {
    by_budget += t["reason"].get<std::string>().find("time budget") != std::string::npos;
  }
  EXPECT_GE(by_budget, 1);
  // The CLI's report, from the database file alone, says why the job ended.
  const auto [rc, text] = RunCommand(std::string(TOPOTUNE_CLI_BIN) + " report " +
                                     std::to_string(id) + " --db " + cluster.db().string());
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("Ended: time budget of 6.00 s spent"), std::string::npos) << text;
  fs::remove(table);
}

// How many times `needle` occurs in `text`.
size_t CountOf(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

// GET /v1/topology once it shows one link between sites with a link test's result, or
// after 15 s whatever it shows.
json WaitForDirectLink(Cluster& cluster) {
  json view;
  for (int i = 0; i < 150; ++i) {
    auto res = cluster.Get("/v1/topology");
    if (res && res->status == 200) {
      view = json::parse(res->body);
      if (view["links"].size() == 1 && !view["links"][0]["direct"].is_null()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return view;
}

TEST(Integration, WorkersAtTwoSitesTimeADirectTransferBetweenThem) {
  // Two real workers (replay mode: no training needed) at two named sites, on loopback.
  // Once their echoes are done, the gateway has one listen and the other send 4 MiB
  // straight to it; GET /v1/topology shows that link beside the bound through the
  // controller, and the CLI prints it.
  const fs::path table = WriteSyntheticTable("replay-table-sites");
  Cluster cluster("15", {{"--replay", table.string(), "--site", "edge-1", "--class", "edge"},
                         {"--replay", table.string(), "--site", "cloud", "--class", "cloud"}});
  json view = WaitForDirectLink(cluster);  // not const: [] on a missing key must not assert
  ASSERT_EQ(view["links"].size(), 1u) << view.dump() << cluster.Log("topotuned.log");
  const json& link = view["links"][0];
  EXPECT_EQ(link["between"], json::array({"cloud", "edge-1"}));
  ASSERT_FALSE(link["direct"].is_null()) << view.dump() << cluster.Log("topotuned.log");
  const json& direct = link["direct"];
  // 4 MiB, or, where loopback moved that too fast to time (under two round trips or
  // 10 ms), 32 MiB, then 64.
  const std::string log = cluster.Log("topotuned.log");
  const size_t retries = CountOf(log, "; again with ");
  EXPECT_EQ(direct["bytes"], std::min(int64_t{4} << (20 + 3 * retries), int64_t{64} << 20)) << log;
  const std::set<std::string> sites = {direct["from"].get<std::string>(),
                                       direct["to"].get<std::string>()};
  EXPECT_EQ(sites, std::set<std::string>({"cloud", "edge-1"}));
  EXPECT_NE(direct["sender"], direct["listener"]);
  EXPECT_GT(direct["seconds"].get<double>(), 0.0);
  EXPECT_GT(direct["rtt_ms"].get<double>(), 0.0);
  // Loopback moves 4 MiB far faster than any real link, but not beyond memory bandwidth.
  EXPECT_GT(direct["bandwidth_mbit_s"].get<double>(), 10.0) << direct.dump();
  EXPECT_LT(direct["bandwidth_mbit_s"].get<double>(), 1e6) << direct.dump();
  EXPECT_NEAR(direct["latency_ms"].get<double>(), direct["rtt_ms"].get<double>() / 2, 1e-9);
  EXPECT_FALSE(link["measured"].is_null());  // the bound through the controller, beside it
  // Each worker logged its side, done.
  for (const char* worker_log : {"w1.log", "w2.log"}) {
    const std::string text = cluster.Log(worker_log);
    EXPECT_NE(text.find("link test 1 ("), std::string::npos) << text;
    EXPECT_NE(text.find(" bytes in "), std::string::npos) << text;
  }
  // Once per pair of sites while the two stay connected: no test after the one timed.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(cluster.Log("topotuned.log").find("link test " + std::to_string(retries + 2)),
            std::string::npos);

  const std::string cmd = "TOPOTUNE_TOKEN=" + cluster.token() + " " + TOPOTUNE_CLI_BIN +
                          " --server http://127.0.0.1:" + std::to_string(cluster.http_port()) +
                          " topology";
  const auto [status, printed] = RunCommand(cmd);
  EXPECT_EQ(status, 0) << printed;
  EXPECT_NE(printed.find("direct"), std::string::npos) << printed;
  EXPECT_NE(printed.find("cloud <-> edge-1"), std::string::npos) << printed;

  // A job counted on a data-parallel target whose nodes are joined by that pair's link
  // counts over the tested link, not the declared 10 Mbit/s, and its report says so.
  json spec = SmallJob();
  spec["max_trials"] = 2;
  spec["topology"] = json::parse(R"({
    "name": "two sites", "sites": {"edge-1": {"edge": 1}, "cloud": {"edge": 2}},
    "links": [{"between": ["edge-1", "cloud"], "bandwidth_mbit_s": 10, "latency_ms": 1}],
    "model_bytes": 248000, "train_samples": 2000,
    "targets": [{"name": "edge-x2", "kind": "data_parallel", "class": "edge", "site": "cloud",
                 "devices": 2, "nodes": 2, "inter_node": ["edge-1", "cloud"]}]})");
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 120);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("topotuned.log");
  auto report = cluster.Get("/v1/jobs/" + std::to_string(id) + "/report");
  ASSERT_TRUE(report && report->status == 200);
  const json reference = json::parse(report->body)["reference_target"];
  EXPECT_NE(reference.value("links_measured", "")
                .find("inter_node measured by a link test between edge-1 and cloud"),
            std::string::npos)
      << reference.dump();
  const auto [report_status, report_text] =
      RunCommand("TOPOTUNE_TOKEN=" + cluster.token() + " " + TOPOTUNE_CLI_BIN +
                 " --server http://127.0.0.1:" + std::to_string(cluster.http_port()) + " report " +
                 std::to_string(id));
  EXPECT_EQ(report_status, 0) << report_text;
  EXPECT_NE(report_text.find("fixed at the job's first placement: inter_node measured"),
            std::string::npos)
      << report_text;
  fs::remove(table);
}

TEST(Integration, ALinkTestTooFastToTimeIsRepeatedWithEightTimesTheBytes) {
  // A first transfer of 1 KiB crosses loopback in microseconds, under 10 ms: the gateway
  // repeats it at once with 8 KiB, 64 KiB, ... until one is long enough to time.
  const fs::path table = WriteSyntheticTable("replay-table-fast-link");
  Cluster cluster("15",
                  {{"--replay", table.string(), "--site", "edge-1", "--class", "edge"},
                   {"--replay", table.string(), "--site", "cloud", "--class", "cloud"}},
                  {"--link-test-kib", "1"});
  json view = WaitForDirectLink(cluster);  // not const: [] on a missing key must not assert
  const std::string log = cluster.Log("topotuned.log");
  ASSERT_EQ(view["links"].size(), 1u) << view.dump() << log;
  const json& direct = view["links"][0]["direct"];
  ASSERT_FALSE(direct.is_null()) << view.dump() << log;
  EXPECT_NE(log.find("link test 1: "), std::string::npos) << log;
  EXPECT_NE(log.find(", 1024 bytes\n"), std::string::npos) << log;
  EXPECT_NE(log.find("too short to time; again with 8192 bytes"), std::string::npos) << log;
  const size_t retries = CountOf(log, "; again with ");
  ASSERT_GE(retries, 1u) << log;
  EXPECT_EQ(direct["bytes"], std::min(int64_t{1024} << (3 * retries), int64_t{64} << 20)) << log;
  EXPECT_EQ(log.find("failed"), std::string::npos) << log;
  EXPECT_GT(direct["seconds"].get<double>(), 2 * direct["rtt_ms"].get<double>() / 1000) << log;
  if (direct["bytes"] < int64_t{64} << 20) {
    EXPECT_GE(direct["seconds"].get<double>(), 0.010) << log;
  }
  fs::remove(table);
}
TEST(Integration, RungsInSecondsGiveFastConfigurationsMoreEpochs) {
  const fs::path table = WriteSyntheticTable("replay-sec");
  Cluster cluster("15", {{"--replay", table.string(), "--speedup", "0"}});
  json spec = SmallJob();
  spec["target_accuracy"] = 0.99;  // never reached: every trial runs on its rung budgets
  spec["search_space"]["batch_size"] = {{"min", 16}, {"max", 512}};
  spec["search_space"]["learning_rate"] = {{"min", 1e-4}, {"max", 1.0}};
  spec["max_trials"] = 12;
  spec["scheduler"] = {{"algorithm", "asha"}, {"rung_unit", "seconds"}, {"min_seconds", 1.5},
                       {"max_epochs", 9},     {"reduction_factor", 3},  {"rungs", 2}};
  const int64_t id = cluster.Submit(spec);
  ASSERT_GE(id, 0);
  const json job = cluster.WaitForJob(id, 60);
  ASSERT_EQ(job["state"], "completed") << job.dump() << cluster.Log("w1.log");
  auto trials_res = cluster.Get("/v1/jobs/" + std::to_string(id) + "/trials");
  ASSERT_TRUE(trials_res);
  const json trials = json::parse(trials_res->body)["trials"];
  ASSERT_EQ(trials.size(), 12u);
  int promoted = 0;
  for (const json& t : trials) {
    ASSERT_NE(t["state"], "failed") << t.dump();
    // Each rung ends at the first epoch whose total reaches 1.5 * 3^rung seconds (the
    // table's epochs take 8 / sqrt(batch) s: 2 s at batch 16, 0.35 s at 512), or at 9.
    const double epoch_s = 8.0 / std::sqrt(t["config"]["batch_size"].get<double>());
    const double budget = 1.5 * std::pow(3, t["rung"].get<int>());
    const int epochs = t["epochs_done"].get<int>();
    const int expected = std::min(9, static_cast<int>(std::ceil(budget / epoch_s - 1e-9)));
    EXPECT_EQ(epochs, expected) << t.dump();
    EXPECT_EQ(t["curve"].size(), static_cast<size_t>(epochs)) << t.dump();
    promoted += t["rung"].get<int>() == 1;
  }
  EXPECT_GE(promoted, 1);
  fs::remove(table);
}

}  // namespace
}  // namespace topotune
