#pragma once

// Device classes: workers grouped by the class they say they are (--class; otherwise
// "<kind>-<cores>c"), with what they measured pooled into one profile per class, so that
// the cost model can ask "how fast is a step of batch B on a jetson-nano?" whichever
// worker of that class measured it. Pure functions over what the journal holds.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuner/target.h"
#include "tuner/types.h"

namespace topotune {

// One (model, input) as a class measured it.
struct ClassProbe {
  struct Batch {
    int batch_size = 0;
    bool fits = false;     ///< on every worker of the class that probed it
    double step_ms = 0.0;  ///< median over the workers where it fits
    // The medians of its parts over the workers that split it (0: none did).
    double forward_ms = 0.0;
    double backward_ms = 0.0;
    double optimizer_ms = 0.0;
    double adam_optimizer_ms = 0.0;  ///< the median over the workers that measured it
    bool adam_does_not_fit = false;  ///< it fits, but Adam's state does not on some worker
    int64_t peak_memory_bytes = 0;   ///< the largest among them
    int workers = 0;                 ///< how many workers probed it
    double timed_s = 0.0;            ///< seconds of steps timed, summed over those it fits on
  };
  std::string model;
  std::string input;
  std::vector<Batch> batches;   ///< ascending batch size
  int max_batch_size = 0;       ///< the largest batch that fits everywhere it was probed
  int adam_max_batch_size = 0;  ///< the same with Adam's state (adam_does_not_fit)
  // Step time fitted as alpha + beta x batch over the batches that fit (StepTimeModel);
  // both 0 when none does.
  double alpha_ms = 0.0;
  double beta_ms = 0.0;
};

struct DeviceClassProfile {
  std::string name;
  std::vector<std::string> sites;    ///< distinct, sorted; "" = a worker that named none
  std::vector<std::string> workers;  ///< ids, sorted
  DeviceProfile device;  ///< the first worker's, with the least memory_bytes of the class
  std::vector<ClassProbe> probes;
};

// The classes of `workers` (each with its probes), sorted by name.
std::vector<DeviceClassProfile> GroupByClass(const std::vector<WorkerRecord>& workers,
                                             const std::vector<DeviceProbe>& probes);

// The probe of (model, input) in `c`; null if the class has none.
const ClassProbe* FindProbe(const DeviceClassProfile& c, const std::string& model,
                            const std::string& input);

// A class's step time at `batch` (ms) with `optimizer`: measured where it probed that
// batch and it fit, else alpha + beta x batch; nullopt where it has neither. The probe's
// step is momentum SGD's. Adam's replaces SGD's update with Adam's where the class measured
// it (adam_optimizer_ms): at that batch, or at a fitted one by the median extra over the
// batches that have it. Where no batch has it, Adam's step is SGD's.
std::optional<double> StepMsAt(const ClassProbe& probe, int batch, Optimizer optimizer);

// How a trial's seconds on a device of class `device` count on class `reference`, per
// batch size of `batch_sizes`, for trials of `optimizer`: reference step time / device step
// time (1 when they are the same class). Batch sizes that either class has no step time for
// are left out.
std::map<int, double> TimeScales(const std::vector<DeviceClassProfile>& classes,
                                 const std::string& reference, const std::string& device,
                                 const std::string& model, const std::string& input,
                                 const std::vector<int>& batch_sizes, Optimizer optimizer);

// How a trial's seconds on a device of class `device` count on `target` (a job's reference
// target, JobSpec::reference_target), per batch size, for trials of `optimizer` (both
// classes' steps with its update, StepMsAt): the target's seconds for what the
// device trains in one step at that batch / the device's step time. A trial of batch B
// stands for the target training global batch B:
//  - one device: TimeScales of the target's class;
//  - data-parallel over N devices: B / N per device, so a step is the class's compute step
//    at B / N plus the ring all-reduce of workload.model_bytes over the target's declared
//    links, less its overlap (PredictTta's terms);
//  - federated: each client trains its shard at batch B, so an epoch is a round (its
//    local epochs plus the model's trips client -> edge -> cloud) over local_epochs, against
//    the device's epoch of ceil(train_samples / B) steps. Without workload.train_samples
//    this is the client class's compute step alone (TimeScales), as is any target whose
//    terms PredictTta cannot cost (a link without bandwidth).
// Batch sizes that either class has no step time for are left out.
std::map<int, double> TargetTimeScales(const std::vector<DeviceClassProfile>& classes,
                                       const Target& target, const Workload& workload,
                                       const std::string& device, const std::string& model,
                                       const std::string& input,
                                       const std::vector<int>& batch_sizes, Optimizer optimizer);

}  // namespace topotune
