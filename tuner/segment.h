#pragma once

// The segment contract: what the engine asks a placement to train (SegmentSpec) and how the
// segment ended (SegmentStatus). One set of types for the engine, the wire protocol
// (api/protocol.h) and the worker agent, so no side compares status strings.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuner/types.h"

namespace topotune {

// How a segment ended.
enum class SegmentStatus {
  kCompleted,   ///< trained to its end epoch, its time limit or the target
  kStopped,     ///< stopped on request (the engine's verdict, a cancel, a lost lease)
  kInfeasible,  ///< the device could not run it (out of memory)
  kFailed,      ///< diverged, or an error on the worker
};
const char* SegmentStatusName(SegmentStatus status);  // "completed", "stopped", ...
std::optional<SegmentStatus> ParseSegmentStatus(const std::string& name);

// The workers a segment runs on. One worker today; a data-parallel group or a federated
// round later. max_batch_size is the largest batch every worker of it can hold.
struct Placement {
  std::vector<std::string> workers;
  int max_batch_size = 1 << 30;
  std::string device_class;  ///< its workers' class (DeviceClassOf); "" = not said
  // How its seconds count on the job's reference target (JobSpec::reference_target), by
  // optimizer and batch size: the target's step time / its own (TargetTimeScales). A
  // configuration not here counts as 1 (TimeScaleOf).
  std::map<Optimizer, std::map<int, double>> time_scale;
  const std::string& lead() const { return workers.front(); }  ///< reports come from it
  // time_scale's entry for `config`, or 1 where it has none that is finite and > 0.
  double TimeScaleOf(const TrialConfig& config) const;
};

// Everything a placement needs to train one segment of a trial: epochs start_epoch+1 ..
// end_epoch, resuming from `checkpoint` when start_epoch > 0.
struct SegmentSpec {
  int64_t job_id = 0;
  int64_t trial_id = 0;
  int trial_number = 0;
  int attempt = 0;  ///< the trial's segment count; reports of older attempts are ignored
  std::string model;
  DatasetSpec dataset;
  TrialConfig config;
  double momentum = 0.9;
  uint64_t seed = 0;
  int start_epoch = 0;
  int end_epoch = 0;
  double target_accuracy = 1.0;
  std::string checkpoint;       ///< the checkpoint's name, "job3-trial7.pt"
  double train_s_before = 0.0;  ///< the trial's training seconds before this segment
  // > 0: end the segment after the epoch at which the trial's training seconds
  // (train_s_before plus the segment's) reach this: the rung's budget in seconds, or the
  // incumbent's time-to-accuracy (bound pruning), whichever is less. The worker applies it
  // itself, so no epoch runs past it while a stop is on the wire.
  double max_train_s = 0.0;
};

// How a placement says a segment ended, in reply to the SegmentSpec of (trial_id, attempt).
struct SegmentResult {
  int64_t trial_id = 0;
  int attempt = 0;
  SegmentStatus status = SegmentStatus::kCompleted;
  std::string message;  ///< why, in words, when not completed
};

}  // namespace topotune
