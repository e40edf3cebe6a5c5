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

#include "tuner/curve_table.h"
#include "tuner/status.h"
#include "tuner/types.h"
#include "workers/trainer.h"

namespace topotune {

// The replay worker's table: the curves it answers from.
using ReplayTable = CurveTable;

// Reads and parses a table file; errors name the file (and the line).
StatusOr<CurveTable> LoadReplayTable(const std::string& path);

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
