#pragma once

// Replay: answering trials from a recorded replay table (DESIGN.md) instead of training,
// in simulated time. The worker agent uses it for `topotune-worker --replay TABLE.csv`, so
// a whole tuning job runs through the real controller, gateway and SQLite in seconds.
// No LibTorch here.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"
#include "workers/trainer.h"

namespace topotune {

class ReplayTable {
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
  // curve in order from 1). Errors name the line.
  static StatusOr<ReplayTable> Load(const std::string& path);
  static StatusOr<ReplayTable> Parse(const std::string& text, const std::string& name);

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

// Plays one segment of `request` from the table: epochs start_epoch+1 .. end_epoch of the
// nearest configuration's curve, waiting each epoch's seconds divided by `speedup` (0: no
// waiting). It stops after the epoch that reaches the target or uses up max_train_s, or
// when `stop` is set. A curve that ends early is a diverged run: "failed". With a
// checkpoint stem, it resumes only from a replay checkpoint that holds start_epoch, and a
// completed segment writes one at its last epoch, as a LibTorch segment would.
TrainResult ReplaySegment(const ReplayTable& table, const TrainRequest& request, double speedup,
                          const std::function<void(const CurvePoint&)>& on_epoch,
                          const std::atomic<bool>& stop);

}  // namespace topotune
