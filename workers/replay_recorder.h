#pragma once

// Records replay tables (DESIGN.md, "Replay table"): runs a real training grid with the
// worker's own trainer and writes one CSV row per (configuration, seed, epoch):
//
//   # model=lenet
//   # momentum=0.9
//   ...
//   batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds
//
// epoch_seconds is that epoch's training time (compute + communication, evaluation
// excluded), as the trainer measured it on this device. A run that diverges ends early:
// its later epochs have no rows.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

class Trainer;

// One configuration of a list (ReplayGrid::configs), with its own number of epochs.
struct ReplayConfig {
  int batch_size = 0;
  double lr = 0.0;
  Optimizer optimizer = Optimizer::kSgd;
  int epochs = 0;  ///< 0: the grid's
};

struct ReplayGrid {
  std::string model = "lenet";
  std::string data_format = "cifar10-bin";
  std::string data_dir;
  int64_t max_train_samples = 0;
  int64_t max_val_samples = 0;
  bool augment = false;
  std::vector<int> batch_sizes;
  std::vector<double> learning_rates;
  std::vector<Optimizer> optimizers;
  std::vector<uint64_t> seeds;
  int epochs = 10;
  double momentum = 0.9;
  int shard = 0;       ///< this process runs runs shard, shard + num_shards, ...
  int num_shards = 1;  ///< to record one grid with several processes
  // Runs in a random order drawn from this seed, not batch size by batch size. A machine's
  // speed drifts over an hour's recording; in grid order the drift lands on the last batch
  // sizes and reads as a property of the batch. Shards split the shuffled order.
  std::optional<uint64_t> shuffle_seed;
  // A list of configurations to run in place of the grid (batch_sizes x learning_rates x
  // optimizers), seed by seed: every configuration's first seed, then every one's second,
  // and so on. A spell of slowness on a shared machine then falls on every configuration
  // alike, not on the one that ran then (a comparison of their seconds across classes reads
  // it as that configuration's).
  std::vector<ReplayConfig> configs;
};

// Checks a grid: every list non-empty (batch sizes, learning rates and optimizers, or the
// configurations), batch sizes >= 1, learning rates > 0, epochs >= 1, shard in
// [0, num_shards).
Status ValidateReplayGrid(const ReplayGrid& grid);

// Runs the grid's runs of this shard (in grid order, seed by seed for a list of
// configurations, or shuffled) and writes the table to `out_csv`
// (the comment header, the column header, then rows, flushed after every run). `device` names the
// recording device in the header. `log` hears one line per run.
Status RecordReplayTable(const ReplayGrid& grid, Trainer& trainer, const std::string& device,
                         const std::string& out_csv,
                         const std::function<void(const std::string&)>& log);

// n learning rates evenly spaced in log space from lo to hi, both included.
std::vector<double> LogSpaced(double lo, double hi, int n);

}  // namespace topotune
