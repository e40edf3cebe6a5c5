#include "workers/replay_recorder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "workers/dataset.h"
#include "workers/trainer.h"

namespace topotune {
namespace {

namespace fs = std::filesystem;

TEST(ReplayRecorder, RecordsEveryEpochOfEveryRunOfTheGrid) {
  const fs::path dir = fs::temp_directory_path() / ("topotune-replay-" + std::to_string(getpid()));
  fs::remove_all(dir);
  ShapesOptions data;
  data.train_samples = 400;
  data.test_samples = 200;
  ASSERT_TRUE(WriteShapesDataset((dir / "shapes").string(), data).ok());
  ReplayGrid grid;
  grid.data_dir = (dir / "shapes").string();
  grid.batch_sizes = {32, 64};
  grid.learning_rates = {1e-3, 1e6};  // the second diverges under SGD
  grid.optimizers = {Optimizer::kSgd};
  grid.seeds = {0, 1};
  grid.epochs = 2;
  Trainer trainer(/*threads=*/1);
  std::vector<std::string> log;
  const std::string csv = (dir / "table.csv").string();
  ASSERT_TRUE(RecordReplayTable(grid, trainer, "cpu:test", csv, [&](const std::string& line) {
                log.push_back(line);
              }).ok());
  EXPECT_EQ(log.size(), 8u);  // one line per run

  std::ifstream in(csv);
  std::string line;
  int comments = 0;
  std::map<std::tuple<int, std::string, int>, int> epochs;  // (batch, lr, seed) -> rows
  bool saw_header = false;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      ++comments;
      continue;
    }
    if (!saw_header) {
      EXPECT_EQ(line, "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds");
      saw_header = true;
      continue;
    }
    std::stringstream row(line);
    std::string batch, lr, optimizer, seed, epoch, accuracy, seconds;
    std::getline(row, batch, ',');
    std::getline(row, lr, ',');
    std::getline(row, optimizer, ',');
    std::getline(row, seed, ',');
    std::getline(row, epoch, ',');
    std::getline(row, accuracy, ',');
    std::getline(row, seconds, ',');
    EXPECT_EQ(optimizer, "sgd");
    EXPECT_GT(std::stod(seconds), 0.0);
    EXPECT_GE(std::stod(accuracy), 0.0);
    EXPECT_LE(std::stod(accuracy), 1.0);
    ++epochs[{std::stoi(batch), lr, std::stoi(seed)}];
  }
  EXPECT_GE(comments, 5);
  ASSERT_TRUE(saw_header);
  for (int batch : {32, 64}) {
    for (int seed : {0, 1}) {
      EXPECT_EQ((epochs[{batch, "0.001", seed}]), 2);  // complete curves
      EXPECT_LT((epochs[{batch, "1e+06", seed}]), 2);  // diverged runs end early
    }
  }
  fs::remove_all(dir);
}

// The runs' order, as the log lines name them ("bs=32 lr=0.001 sgd seed 0").
std::vector<std::string> RecordedOrder(const ReplayGrid& grid, const std::string& csv) {
  Trainer trainer(/*threads=*/1);
  std::vector<std::string> order;
  const Status s = RecordReplayTable(grid, trainer, "cpu:test", csv, [&](const std::string& line) {
    const size_t from = line.find("bs=");
    order.push_back(line.substr(from, line.find(':', from) - from));
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return order;
}

// A fresh folder named `prefix` + pid with a 64-image shapes dataset in shapes/.
fs::path TinyShapes(const std::string& prefix) {
  const fs::path dir = fs::temp_directory_path() / (prefix + std::to_string(getpid()));
  fs::remove_all(dir);
  ShapesOptions data;
  data.train_samples = 64;
  data.test_samples = 32;
  EXPECT_TRUE(WriteShapesDataset((dir / "shapes").string(), data).ok());
  return dir;
}

TEST(ReplayRecorder, ShuffledOrderRunsTheSameGridInAReproducibleOtherOrder) {
  const fs::path dir = TinyShapes("topotune-replay-order-");
  ReplayGrid grid;
  grid.data_dir = (dir / "shapes").string();
  grid.batch_sizes = {16, 32, 64};
  grid.learning_rates = {1e-3, 1e-2};
  grid.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  grid.seeds = {0};
  grid.epochs = 1;
  const std::string csv = (dir / "table.csv").string();
  const std::vector<std::string> in_grid_order = RecordedOrder(grid, csv);
  ASSERT_EQ(in_grid_order.size(), 12u);
  EXPECT_EQ(in_grid_order.front(), "bs=16 lr=0.001 sgd seed 0");
  grid.shuffle_seed = 7;
  const std::vector<std::string> shuffled = RecordedOrder(grid, csv);
  EXPECT_NE(shuffled, in_grid_order);
  std::vector<std::string> a = shuffled, b = in_grid_order;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);  // every run of the grid, once
  EXPECT_EQ(RecordedOrder(grid, csv), shuffled);
  std::ifstream in(csv);
  const std::string header((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(header.find("# order=shuffled:7\n"), std::string::npos);
  // Shards split the shuffled order between them.
  grid.num_shards = 2;
  grid.shard = 1;
  const std::vector<std::string> second = RecordedOrder(grid, csv);
  ASSERT_EQ(second.size(), 6u);
  for (size_t i = 0; i < second.size(); ++i) EXPECT_EQ(second[i], shuffled[2 * i + 1]);
  fs::remove_all(dir);
}

// A list of configurations runs seed by seed, each for its own epochs, in place of the grid.
TEST(ReplayRecorder, AListOfConfigurationsRunsSeedBySeedEachForItsEpochs) {
  const fs::path dir = TinyShapes("topotune-replay-configs-");
  ReplayGrid grid;
  grid.data_dir = (dir / "shapes").string();
  grid.configs = {{32, 1e-3, Optimizer::kAdam, 2}, {16, 1e-2, Optimizer::kSgd, 0}};
  grid.seeds = {0, 1};
  grid.epochs = 1;
  const std::string csv = (dir / "table.csv").string();
  EXPECT_EQ(RecordedOrder(grid, csv),
            (std::vector<std::string>{"bs=32 lr=0.001 adam seed 0", "bs=16 lr=0.01 sgd seed 0",
                                      "bs=32 lr=0.001 adam seed 1", "bs=16 lr=0.01 sgd seed 1"}));
  std::ifstream in(csv);
  std::string line;
  std::map<std::string, int> rows;  // "batch,optimizer" -> epochs recorded over both seeds
  bool seed_by_seed = false;
  while (std::getline(in, line)) {
    if (line == "# order=seed by seed") seed_by_seed = true;
    if (line.empty() || line[0] == '#' || line.rfind("batch_size", 0) == 0) continue;
    std::stringstream row(line);
    std::string batch, lr, optimizer;
    std::getline(row, batch, ',');
    std::getline(row, lr, ',');
    std::getline(row, optimizer, ',');
    ++rows[batch + "," + optimizer];
  }
  EXPECT_TRUE(seed_by_seed);
  EXPECT_EQ(rows["32,adam"], 4);  // its own 2 epochs, 2 seeds
  EXPECT_EQ(rows["16,sgd"], 2);   // the grid's 1
  fs::remove_all(dir);
}

TEST(ReplayRecorder, RejectsAnEmptyGrid) {
  ReplayGrid grid;
  grid.data_dir = "x";
  EXPECT_FALSE(ValidateReplayGrid(grid).ok());
  grid.batch_sizes = {16};
  grid.learning_rates = {0.1};
  grid.optimizers = {Optimizer::kAdam};
  grid.seeds = {0};
  EXPECT_TRUE(ValidateReplayGrid(grid).ok());
  grid.shard = 2;
  grid.num_shards = 2;
  EXPECT_FALSE(ValidateReplayGrid(grid).ok());
  // A list of configurations stands in for the grid's lists; each must be sane.
  ReplayGrid listed;
  listed.data_dir = "x";
  listed.seeds = {0};
  listed.configs = {{16, 0.1, Optimizer::kSgd, 0}};
  EXPECT_TRUE(ValidateReplayGrid(listed).ok());
  for (const ReplayConfig& bad :
       {ReplayConfig{0, 0.1, Optimizer::kSgd, 0}, ReplayConfig{16, 0.0, Optimizer::kSgd, 0},
        ReplayConfig{16, 0.1, Optimizer::kSgd, -1},
        ReplayConfig{(1 << 20) + 1, 0.1, Optimizer::kSgd, 0},
        ReplayConfig{16, std::numeric_limits<double>::infinity(), Optimizer::kSgd, 0}}) {
    listed.configs = {bad};
    EXPECT_FALSE(ValidateReplayGrid(listed).ok());
  }
  // Nor a grid whose table the replay worker could not read back (CurveTable::Parse's ranges).
  grid.shard = 0;
  grid.num_shards = 1;
  grid.batch_sizes = {(1 << 20) + 1};
  EXPECT_FALSE(ValidateReplayGrid(grid).ok());
  grid.batch_sizes = {16};
  grid.learning_rates = {std::numeric_limits<double>::infinity()};
  EXPECT_FALSE(ValidateReplayGrid(grid).ok());
}

}  // namespace
}  // namespace topotune
