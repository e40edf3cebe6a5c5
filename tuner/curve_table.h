#pragma once

// A table of recorded learning curves in the replay format (DESIGN.md, "Replay table"):
// one row per (configuration, seed, epoch) with the validation accuracy and the epoch's
// training seconds on the recording device. Replay workers answer trials from it, and the
// offline planner reads the curves of a grid a user already ran. Parsing only; reading the
// file is the caller's.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// The comma-separated fields of one CSV line (no quoting: the tables have none); "a,b,"
// has three, the last empty.
std::vector<std::string> SplitCsvLine(const std::string& line);

class CurveTable {
 public:
  struct Epoch {
    double val_accuracy = 0.0;
    double seconds = 0.0;  ///< training seconds of that epoch on the recording device
  };
  // One recorded configuration: its curves by seed, each epochs 1..n (shorter when the
  // run diverged).
  struct Run {
    TrialConfig config;
    std::map<uint64_t, std::vector<Epoch>> curves;
  };

  // Parses a table: "# key=value" comments, the header
  // batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds, then rows (epochs of a
  // curve in order from 1): batch_size in [1, kMaxBatchSize] (tuner/target.h), lr finite and > 0,
  // val_accuracy in [0, 1], epoch_seconds finite and >= 0. `name` (the file's) prefixes
  // errors, which name the line and the field.
  static StatusOr<CurveTable> Parse(const std::string& text, const std::string& name);
  // Appends the next epoch of `config`'s curve for `seed` (a run is created on its first
  // epoch): how a job's trials become a table.
  void AddEpoch(const TrialConfig& config, uint64_t seed, const Epoch& epoch);

  // The recorded configuration nearest to `config`: same optimizer when recorded, then the
  // least distance in (log2 batch size, log10 learning rate).
  const Run& Nearest(const TrialConfig& config) const;
  // The curve of `run` that a trial with seed `trial_seed` replays.
  const std::vector<Epoch>& CurveFor(const Run& run, uint64_t trial_seed) const;

  const std::vector<Run>& runs() const { return runs_; }
  const std::map<std::string, std::string>& meta() const { return meta_; }
  std::vector<int> BatchSizes() const;  // ascending, distinct

 private:
  std::vector<Run> runs_;
  std::map<std::string, std::string> meta_;
};

}  // namespace topotune
