#include "workers/replay_recorder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <utility>

#include "tuner/target.h"
#include "workers/trainer.h"

namespace topotune {

std::vector<double> LogSpaced(double lo, double hi, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    const double x = n == 1 ? 0.0 : static_cast<double>(i) / (n - 1);
    out.push_back(std::exp(std::log(lo) + x * (std::log(hi) - std::log(lo))));
  }
  return out;
}

Status ValidateReplayGrid(const ReplayGrid& grid) {
  if (grid.seeds.empty() ||
      (grid.configs.empty() &&
       (grid.batch_sizes.empty() || grid.learning_rates.empty() || grid.optimizers.empty()))) {
    return Status::InvalidArgument(
        "a replay grid needs at least one batch size, learning rate, optimizer and seed");
  }
  // The ranges CurveTable::Parse reads back: a table this writes, its worker can replay.
  const std::string batch_range = "in [1, " + std::to_string(kMaxBatchSize) + "]";
  for (const ReplayConfig& c : grid.configs) {
    if (c.batch_size < 1 || c.batch_size > kMaxBatchSize || !(c.lr > 0) || !std::isfinite(c.lr) ||
        c.epochs < 0) {
      return Status::InvalidArgument("a configuration needs a batch size " + batch_range +
                                     ", a finite learning rate > 0 and epochs >= 0");
    }
  }
  for (int b : grid.batch_sizes) {
    if (b < 1 || b > kMaxBatchSize) {
      return Status::InvalidArgument("batch sizes must be " + batch_range);
    }
  }
  for (double lr : grid.learning_rates) {
    if (!(lr > 0) || !std::isfinite(lr)) {
      return Status::InvalidArgument("learning rates must be finite and > 0");
    }
  }
  if (grid.epochs < 1) return Status::InvalidArgument("epochs must be >= 1");
  if (grid.num_shards < 1 || grid.shard < 0 || grid.shard >= grid.num_shards) {
    return Status::InvalidArgument("shard must be in [0, num_shards)");
  }
  if (grid.data_dir.empty()) return Status::InvalidArgument("the grid needs a dataset folder");
  return Status::OK();
}

Status RecordReplayTable(const ReplayGrid& grid, Trainer& trainer, const std::string& device,
                         const std::string& out_csv,
                         const std::function<void(const std::string&)>& log) {
  TOPOTUNE_RETURN_IF_ERROR(ValidateReplayGrid(grid));
  std::ofstream out(out_csv);
  if (!out) return Status::IOError("cannot write " + out_csv);
  out << "# model=" << grid.model << "\n"
      << "# dataset=" << grid.data_format << ":" << grid.data_dir << "\n"
      << "# max_train_samples=" << grid.max_train_samples << "\n"
      << "# augment=" << (grid.augment ? "true" : "false") << "\n"
      << "# momentum=" << grid.momentum << "\n"
      << "# device=" << device << "\n"
      << "# epochs=" << grid.epochs << "\n"
      << "# shard=" << grid.shard << "/" << grid.num_shards << "\n"
      << "# order="
      << (grid.shuffle_seed       ? "shuffled:" + std::to_string(*grid.shuffle_seed)
          : !grid.configs.empty() ? "seed by seed"
                                  : "grid")
      << "\n"
      << "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n";
  out.flush();
  struct RunKey {
    int batch_size;
    double lr;
    Optimizer optimizer;
    uint64_t seed;
    int epochs;
  };
  std::vector<RunKey> runs;
  if (grid.configs.empty()) {
    for (int batch_size : grid.batch_sizes) {
      for (double lr : grid.learning_rates) {
        for (Optimizer optimizer : grid.optimizers) {
          for (uint64_t seed : grid.seeds) {
            runs.push_back({batch_size, lr, optimizer, seed, grid.epochs});
          }
        }
      }
    }
  } else {
    for (uint64_t seed : grid.seeds) {
      for (const ReplayConfig& c : grid.configs) {
        runs.push_back(
            {c.batch_size, c.lr, c.optimizer, seed, c.epochs > 0 ? c.epochs : grid.epochs});
      }
    }
  }
  if (grid.shuffle_seed) {
    std::mt19937_64 rng(*grid.shuffle_seed);
    for (size_t i = runs.size(); i > 1; --i) {  // Fisher-Yates, the same on every library
      std::swap(runs[i - 1], runs[rng() % i]);
    }
  }
  const size_t total = runs.size();
  size_t index = 0;
  std::atomic<bool> never_stop{false};
  for (const RunKey& run : runs) {
    const int batch_size = run.batch_size;
    const double lr = run.lr;
    const Optimizer optimizer = run.optimizer;
    const uint64_t seed = run.seed;
    if (index++ % static_cast<size_t>(grid.num_shards) != static_cast<size_t>(grid.shard)) {
      continue;
    }
    TrainRequest request;
    request.model = grid.model;
    request.data_format = grid.data_format;
    request.data_dir = grid.data_dir;
    request.max_train_samples = grid.max_train_samples;
    request.max_val_samples = grid.max_val_samples;
    request.augment = grid.augment;
    request.config = {batch_size, lr, optimizer};
    request.momentum = grid.momentum;
    request.seed = seed;
    request.end_epoch = run.epochs;
    request.target_accuracy = 2.0;  // never stop early: record whole curves
    char lr_text[32];
    std::snprintf(lr_text, sizeof(lr_text), "%.6g", lr);
    double best = 0.0;
    TrainResult result = trainer.Run(
        request,
        [&](const CurvePoint& p) {
          out << batch_size << "," << lr_text << "," << OptimizerName(optimizer) << "," << seed
              << "," << p.epoch << "," << p.val_accuracy << "," << p.compute_s + p.comm_s << "\n";
          best = std::max(best, p.val_accuracy);
        },
        never_stop);
    out.flush();
    if (!out) return Status::IOError("writing " + out_csv + " failed");
    if (result.status == SegmentStatus::kInfeasible) {
      log("run " + std::to_string(index) + "/" + std::to_string(total) +
          ": infeasible: " + result.message);
      continue;
    }
    if (result.status != SegmentStatus::kCompleted &&
        result.message.find("diverged") == std::string::npos) {
      return Status::Internal("run bs=" + std::to_string(batch_size) + " lr=" + lr_text + " " +
                              OptimizerName(optimizer) + " seed " + std::to_string(seed) + ": " +
                              SegmentStatusName(result.status) + ": " + result.message);
    }
    char line[200];
    std::snprintf(line, sizeof(line), "run %zu/%zu: bs=%d lr=%s %s seed %llu: %s, best %.3f", index,
                  total, batch_size, lr_text, OptimizerName(optimizer),
                  static_cast<unsigned long long>(seed),
                  result.status == SegmentStatus::kCompleted ? "completed" : "diverged", best);
    log(line);
  }
  return Status::OK();
}

}  // namespace topotune
