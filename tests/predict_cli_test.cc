// `topotune predict` offline, as a user runs it: the real binary on the committed example
// topology and profile and a committed replay table; its JSON answer and its errors.

#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace {

// Runs a shell command; returns its exit status and stdout (stderr into stdout too).
int RunCommand(const std::string& command, std::string* out) {
  out->clear();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Predict(const std::string& topology, const std::string& extra = "") {
  const std::string root = TOPOTUNE_SOURCE_DIR;
  return std::string(TOPOTUNE_BIN) + " predict --curves " + root +
         "/bench/replay/lenet_shapes_hard_cpu.csv --profile " + root +
         "/examples/topologies/lenet-profile.csv --topology " + topology + " " + extra;
}

TEST(PredictCli, RanksTheTableOnEveryTargetOfTheExampleTopology) {
  const std::string topology =
      std::string(TOPOTUNE_SOURCE_DIR) + "/examples/topologies/edge-or-cloud.json";
  std::string out;
  ASSERT_EQ(RunCommand(Predict(topology, "--json"), &out), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_DOUBLE_EQ(j["target_accuracy"].get<double>(), 0.425);  // the table's bench_target
  ASSERT_EQ(j["targets"].size(), 4u);
  // Every target answers, and its ranking ascends.
  for (const nlohmann::json& t : j["targets"]) {
    ASSERT_FALSE(t["ranked"].empty()) << t["name"] << ": " << t["note"];
    double last = 0;
    for (const nlohmann::json& r : t["ranked"]) {
      const double tta = r["tta_s"]["value"].get<double>();
      EXPECT_GE(tta, last) << t["name"];
      EXPECT_LE(r["tta_s"]["lo"].get<double>(), tta);
      EXPECT_GE(r["tta_s"]["hi"].get<double>(), tta);
      last = tta;
    }
  }
  // On the edge, the table's fastest configuration with its measured 16 epochs: 2000
  // samples at batch 16 are 125 steps of 7.88 ms (the profile, a quarter of a core) per epoch;
  // and once, the table's warm-up: its first epochs took 7.8 steps more than the others.
  const nlohmann::json& edge = j["targets"][0]["ranked"][0];
  EXPECT_EQ(edge["config"]["batch_size"], 16);
  EXPECT_EQ(edge["config"]["optimizer"], "sgd");
  EXPECT_TRUE(edge["terms"]["epochs"]["measured"].get<bool>());
  const double warmup = edge["terms"]["warmup_steps"]["value"].get<double>();
  EXPECT_NEAR(warmup, 7.8, 0.05);
  EXPECT_NEAR(edge["tta_s"]["value"].get<double>(), (16 * 125 + warmup) * 0.00788, 1e-9);
  // The cloud pays for moving 6.2 MB over 10 Mbit/s with 40 ms of latency, once.
  const nlohmann::json& cloud = j["targets"][1]["ranked"][0];
  EXPECT_NEAR(cloud["terms"]["transfer_s"]["value"].get<double>(), 0.04 + 6.2e6 / 1.25e6, 1e-9);
  EXPECT_FALSE(cloud["terms"]["transfer_s"]["measured"].get<bool>());
  // Two data-parallel devices: synchronisation is predicted from the declared link.
  const nlohmann::json& dp = j["targets"][2]["ranked"][0];
  EXPECT_GT(dp["terms"]["step_sync_s"]["value"].get<double>(), 0.0);
  EXPECT_FALSE(dp["terms"]["step_sync_s"]["measured"].get<bool>());
  EXPECT_EQ(j["best"].size(), 4u);
  // The data is at the edge: each target that moves it (cloud, cloud-x2) is weighed against
  // the fastest that trains where it is, with the break-even link.
  ASSERT_EQ(j["data_move"].size(), 2u);
  for (const nlohmann::json& v : j["data_move"]) {
    EXPECT_EQ(v["staying"], "edge-fedavg");
    const double moving_s = v["moving_train_s"].get<double>() + v["transfer_s"].get<double>();
    EXPECT_EQ(v["pays"].get<bool>(), moving_s < v["staying_s"].get<double>());
    ASSERT_TRUE(v["min_bandwidth_bytes_s"].is_number());
    EXPECT_EQ(v["pays"].get<bool>(), v["min_bandwidth_bytes_s"].get<double>() < 1.25e6);
  }
  // The text form says which target is fastest, and when moving the data pays.
  ASSERT_EQ(RunCommand(Predict(topology), &out), 0) << out;
  EXPECT_NE(out.find("fastest first:"), std::string::npos) << out;
  EXPECT_NE(out.find("answer: "), std::string::npos) << out;
  EXPECT_NE(out.find("moving the data pays here"), std::string::npos) << out;
}

// examples/topologies/link-sensitivity.json: four devices over 1 Gbit/s against 10 Mbit/s.
// On the slow link the best global batch is larger and its synchronisation total dominates.
TEST(PredictCli, TheSlowLinksBestIsALargerBatch) {
  std::string out;
  ASSERT_EQ(RunCommand(Predict(std::string(TOPOTUNE_SOURCE_DIR) +
                                   "/examples/topologies/link-sensitivity.json",
                               "--json"),
                       &out),
            0)
      << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["targets"].size(), 2u);
  const nlohmann::json& fast = j["targets"][0]["ranked"].at(0);
  const nlohmann::json& slow = j["targets"][1]["ranked"].at(0);
  EXPECT_GT(slow["config"]["batch_size"].get<int>(), fast["config"]["batch_size"].get<int>());
  EXPECT_LT(slow["steps_per_epoch"].get<int>(), fast["steps_per_epoch"].get<int>());
  EXPECT_GT(slow["terms"]["step_sync_s"]["value"].get<double>(),
            10 * slow["terms"]["step_compute_s"]["value"].get<double>());
  EXPECT_TRUE(j["data_move"].empty());  // the data is where both train
}

TEST(PredictCli, BadFilesGetAnErrorThatNamesTheProblem) {
  std::string out;
  EXPECT_EQ(RunCommand(Predict("/nonexistent/topology.json"), &out), 1);
  EXPECT_NE(out.find("cannot read the topology"), std::string::npos) << out;
  const std::string bad = testing::TempDir() + "/bad-topology.json";
  FILE* f = std::fopen(bad.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"sites": {"a": {"cpu-1t": 1}}, "targets": [{"name": "x", "class": "cpu-1t",
             "site": "b"}]})",
             f);
  std::fclose(f);
  EXPECT_EQ(RunCommand(Predict(bad), &out), 1);
  EXPECT_NE(out.find("targets[0].site"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(std::string(TOPOTUNE_BIN) + " predict --curves x.csv", &out), 1);
  EXPECT_NE(out.find("--profile"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(Predict(bad, "--target-accuracy 2"), &out), 2);  // a usage error
  EXPECT_EQ(RunCommand(Predict(bad, "--batch-sizes 16,,64"), &out), 2);
  EXPECT_NE(out.find("--batch-sizes"), std::string::npos) << out;
}

// The table's "# train_samples=" line where the topology has none: a whole number in
// [1, 2^40], as --train-samples. 1e30 was cast to a long long out of its range (undefined
// behaviour, found with planner_input_fuzzer's harness).
TEST(PredictCli, TheTablesTrainSamplesLineMustBeAWholeNumberInRange) {
  const std::string dir = testing::TempDir();
  auto write = [](const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write(dir + "/one-class.json",
        R"({"sites": {"a": {"cpu-1t": 1}}, "targets": [{"name": "x", "class": "cpu-1t",
            "site": "a"}]})");
  const std::string rows =
      "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n"
      "16,0.01,sgd,0,1,0.3,1\n16,0.01,sgd,0,2,0.6,1\n";
  const std::string command = std::string(TOPOTUNE_BIN) + " predict --curves " + dir +
                              "/samples.csv --profile " + TOPOTUNE_SOURCE_DIR +
                              "/examples/topologies/lenet-profile.csv --topology " + dir +
                              "/one-class.json --target-accuracy 0.5 --json";
  std::string out;
  for (const char* bad : {"1e30", "2000.5", "0", "many"}) {
    write(dir + "/samples.csv", std::string("# train_samples=") + bad + "\n" + rows);
    EXPECT_EQ(RunCommand(command, &out), 1) << bad;
    EXPECT_NE(out.find("samples.csv: '# train_samples=' must be a whole number in [1, "
                       "1099511627776], got '" +
                       std::string(bad) + "'"),
              std::string::npos)
        << out;
  }
  write(dir + "/samples.csv", "# train_samples=1e4\n" + rows);
  ASSERT_EQ(RunCommand(command, &out), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["targets"][0]["ranked"][0]["steps_per_epoch"], 625);  // 10,000 samples / 16
}

}  // namespace
