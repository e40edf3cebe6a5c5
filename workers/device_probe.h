#pragma once

// Measures what a device can do with a model: the step time of each candidate batch size
// and the largest batch size that fits in memory, found by trying and catching
// out-of-memory. Keeps LibTorch out of this header (device_probe.cc includes it).

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

struct ProbeRequest {
  std::string model;
  std::string data_format = "cifar10-bin";
  std::string data_dir;          ///< the input shape is read from the dataset
  std::vector<int> batch_sizes;  ///< tried in ascending order
  int timed_steps = 2;           ///< at least this many steps are timed, after warm-up
  /// ... and steps go on until this many seconds are timed per batch size, so that a CPU
  /// quota (a CFS period of 100 ms) shows in the step time as it does in training.
  double min_timed_s = 1.0;
  /// The timed seconds are split into up to this many rounds that cycle through the batch
  /// sizes; a size's step time is the mean step of its median round. A spell of slowness on
  /// a shared machine then falls on every size alike, not on the one timed then, and the
  /// median discards it where it slows fewer than half of a size's rounds. Fewer rounds
  /// where a round would be under kMinProbeRoundSeconds (see ProbeRounds).
  int rounds = 5;
};

// The shortest round worth timing: five CFS periods of 100 ms, so a CPU quota averages out.
inline constexpr double kMinProbeRoundSeconds = 0.5;

// The number of rounds a probe times: request.rounds, or fewer so that each round lasts at
// least kMinProbeRoundSeconds; at least 1.
int ProbeRounds(const ProbeRequest& request);

// Probes and caches the results per (model, input shape, batch size), so a worker probes
// each combination once in its life. Not thread-safe: call from the training thread only.
class DeviceProber {
 public:
  // Fills probe.model, probe.input and probe.batches (worker_id and measured_at are the
  // caller's). A batch size that runs out of memory does not fit, and neither does any
  // larger one (not tried); nor does one that fails otherwise after a smaller one trained
  // (a kernel's size limit). Peak memory is per batch size. Never throws; an error before
  // any batch size trained (unknown model, unreadable data) is returned as a status.
  StatusOr<DeviceProbe> Probe(const ProbeRequest& request);

 private:
  std::map<std::tuple<std::string, std::string, int>, BatchProbe> cache_;
};

// The shape string of a dataset's images, "CxHxW", used as the probe's input key.
std::string InputKey(int channels, int height, int width);

}  // namespace topotune
