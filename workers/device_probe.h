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
  /// ... and steps go on until this many seconds are timed: the step time is their mean, so
  /// that a CPU quota (a CFS period of 100 ms) shows in it as it does in training.
  double min_timed_s = 1.0;
};

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
