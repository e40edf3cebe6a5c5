#pragma once

// The topology cost model (DESIGN.md, "The objective: time-to-accuracy on a target
// topology"): what a configuration's time-to-accuracy would be on a target that may not be
// present, from what was measured elsewhere.
//
//   TTA(c, T) = epochs_to_target(c at T's global batch) x epoch_time(c, T) + data transfer
//   epoch_time = steps per epoch x (compute step of the local batch on T's class
//                                   + synchronisation - overlap)
//   + warm-up: a trial's first epoch costs more than a steady one (allocations, kernel
//     set-up at each new shape, first touches), measured on recorded curves in steps of
//     the steady step (see the planner) and charged once at the target's compute step.
//
// - Compute step time of a class: alpha + beta x local batch, least squares over the
//   class's probe (StepTimeModel).
// - Synchronisation, data-parallel: ring all-reduce, 2(N-1)/N x model bytes / bandwidth +
//   2(N-1) x latency per step, over the slowest link the ring crosses.
// - Federated (FedAvg): rounds x (local steps x the client's step time + the model down
//   and up over client -> edge and edge -> cloud).
// - Epochs to target across global batch sizes: McCandlish et al. 2018 ("An Empirical
//   Model of Large-Batch Training"), steps to a target S(B) = S_min (1 + B_noise / B). We
//   chose it over fitting a free curve per configuration because it has two parameters per
//   optimizer, which the few batch sizes of a job (often 3-5) can fit, and its form says
//   what happens outside the measured range: below B_noise a doubled batch halves the steps
//   (epochs stay put), above it the steps stop shrinking (epochs grow with B). A free fit
//   (a power law in B, say) extrapolates without such a reason. See BatchScaling.
// - One configuration at another batch size: the learning rate that keeps the gradient
//   noise's temperature (EquivalentLearningRate), at which the epochs to target stay put:
//   the planner reads them off the learning rates recorded at a nearby batch size.
//
// Every number is an Estimate: a value, an 80% interval, and whether it was measured or
// predicted. Pure functions and small value types; no I/O. Thread-compatible.

#include <array>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tuner/status.h"
#include "tuner/target.h"
#include "tuner/types.h"

namespace topotune {

// A quantity with an 80% interval [lo, hi] and where it came from.
struct Estimate {
  double value = 0.0;
  double lo = 0.0;
  double hi = 0.0;
  bool measured = false;  ///< measured as such (the interval is then the value itself)
  static Estimate Measured(double v) { return {v, v, v, true}; }
  static Estimate Predicted(double v, double lo, double hi) { return {v, lo, hi, false}; }
};

// The product and sum of independent positive estimates, their ends combined end to end
// (a conservative interval); measured only if both are.
Estimate Times(const Estimate& a, const Estimate& b);
Estimate Plus(const Estimate& a, const Estimate& b);

// One measured compute step: median seconds of a training step of `batch` samples.
struct StepSample {
  int batch = 0;
  double seconds = 0.0;
};

// A device class's compute step time as alpha + beta x batch (seconds), least squares over
// its measured batches. With one batch, alpha = 0 (time proportional to the batch). The
// interval of a batch that was not measured comes from the fit's relative residuals
// (1.28 standard deviations, at least 10%); a measured batch returns its measurement.
class StepTimeModel {
 public:
  // Errors: no sample, a sample with batch < 1 or seconds not > 0, or samples too far apart
  // to fit (their ratio beyond a double's range).
  static StatusOr<StepTimeModel> Fit(std::vector<StepSample> samples);
  Estimate At(int batch) const;
  double alpha() const { return alpha_; }
  double beta() const { return beta_; }

 private:
  std::vector<StepSample> samples_;  ///< ascending batch, one per batch (the median of repeats)
  double alpha_ = 0.0;
  double beta_ = 0.0;
  double relative_error_ = 0.1;  ///< half-width of the 80% interval, relative
};

// Seconds of one ring all-reduce of `bytes` over `devices` devices whose slowest hop is
// `link`: 2(devices-1)/devices x bytes / bandwidth + 2(devices-1) x latency. 0 for one
// device.
double RingAllReduceSeconds(double bytes, int devices, const Link& link);

// A synchronisation measured at one placement: `devices` in a ring, `seconds` per step.
struct SyncSample {
  int devices = 0;
  double seconds = 0.0;
};

// The ring's effective slowest hop, fitted to measured synchronisations of `model_bytes`:
// seconds = 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency, least squares in
// (1 / bandwidth, latency). With one ring size measured, the latency is `declared`'s and
// only the bandwidth is solved; so too where the two-term fit is not physical (bandwidth
// <= 0 or latency < 0), unless holding `declared`'s bandwidth and solving the latency fits
// better (several ring sizes whose syncs grow as per-hop costs). `relative_error` gets the fit's
// largest relative residual. Errors: no sample with N > 1 and seconds > 0, or a fit without a
// positive bandwidth.
StatusOr<Link> FitRingLink(double model_bytes, const std::vector<SyncSample>& samples,
                           const Link& declared, double* relative_error = nullptr);

// Seconds to move `bytes` once over `link` (latency + bytes / bandwidth); 0 for no bytes.
double TransferSeconds(double bytes, const Link& link);

// Epochs to target across global batch sizes (McCandlish et al. 2018). With S(B) =
// S_min (1 + B_noise / B) steps, an epoch of n samples is n / B steps, so epochs
// E(B) = S(B) B / n = (S_min / n)(B + B_noise): linear in B. Fitted by least squares to the
// least epochs to target measured at each batch size (each at its best learning rate, as
// the paper's S(B) assumes a tuned rate), per optimizer by the caller. B_noise is clamped
// to [0, 100 x the largest measured batch].
class BatchScaling {
 public:
  // Errors: fewer than two distinct batch sizes, or a non-positive value.
  static StatusOr<BatchScaling> Fit(const std::vector<std::pair<int, double>>& batch_epochs);
  // The factor E(to) / E(from), with an interval from the fit's relative residuals.
  Estimate Ratio(int from_batch, int to_batch) const;
  // Without a fit (one batch size measured): B_noise is unknown in [0, inf), so the factor
  // lies between 1 (epochs independent of the batch) and to / from (steps independent of
  // it); the value is their geometric mean.
  static Estimate UnfittedRatio(int from_batch, int to_batch);
  double noise_batch() const { return noise_batch_; }

 private:
  double noise_batch_ = 0.0;
  double relative_error_ = 0.1;
};

// The learning rate that trains at `to_batch` as `learning_rate` does at `from_batch`: the
// one with the same temperature of gradient noise (the variance a step adds per unit of
// drift), under which training follows the same path per epoch, so the same epochs to
// target, while the batch stays below the noise scale (Smith & Le 2018; Malladi et al.
// 2022). The minibatch gradient is the gradient g plus noise of variance s^2 / B:
//  - SGD (with or without momentum): a step drifts lr g and adds lr^2 s^2 / B of variance:
//    temperature ~ lr / B, so lr x to / from (Goyal et al. 2017's linear scaling rule);
//  - Adam: where the noise dominates the second moment (v ~ s^2 / B), a step drifts
//    lr sqrt(B) g / s and adds lr^2 of variance: temperature ~ lr / sqrt(B), so
//    lr x sqrt(to / from) (the square-root scaling rule).
// Neither rule holds far above the noise scale, where steps stop shrinking with the batch
// (BatchScaling); the planner uses it between recorded batch sizes and just beyond.
double EquivalentLearningRate(Optimizer optimizer, double learning_rate, int from_batch,
                              int to_batch);

// Epochs to target of one optimizer over learning rates and batch sizes, from every
// recorded configuration at once: log E = a + b u + c u^2 + d log B, where
// u = log of the noise temperature (lr / B for SGD, lr / sqrt(B) for Adam; see
// EquivalentLearningRate), both centred on the samples. The parabola in u is the temperature's
// optimum and how fast the epochs grow away from it; d log B is what the temperature leaves to the
// batch (above the noise scale the epochs grow with B, McCandlish et al.). Four parameters,
// weighted least squares on log E over the configurations (weight: their seeds), so that each
// answer averages many noisy measurements rather than two.
class TemperatureScaling {
 public:
  struct Sample {
    int batch = 0;
    double learning_rate = 0.0;
    double epochs = 0.0;  ///< the mean over seeds
    double weight = 1.0;  ///< the seeds it averages
  };
  // Errors: fewer than kMinSamples samples, a non-positive value, or a singular fit.
  static StatusOr<TemperatureScaling> Fit(Optimizer optimizer, const std::vector<Sample>& samples);
  // The fitted epochs at (learning_rate, batch).
  double EpochsAt(double learning_rate, int batch) const;
  static constexpr size_t kMinSamples = 5;  ///< one more than the parameters

 private:
  std::array<double, 4> Features(double learning_rate, int batch) const;

  Optimizer optimizer_ = Optimizer::kSgd;
  double center_u_ = 0.0;  ///< the samples' weighted mean log temperature
  double center_v_ = 0.0;  ///< and log batch
  std::array<double, 4> coefficients_ = {0, 0, 0, 0};  ///< of 1, u, u^2, log B, centred
};

// A declared topology (examples/topologies/*.json): sites with their devices per class,
// links between sites, where the training data lives, and the targets to answer for, each
// already resolved to its links.
struct Topology {
  struct SiteLink {
    std::string a, b;  ///< site names; a link is symmetric
    Link link;
  };
  std::string name;
  std::map<std::string, std::map<std::string, int>> sites;  ///< site -> class -> devices
  std::vector<SiteLink> links;
  std::string data_site;  ///< "" = the data is where each target's devices are
  double data_bytes = 0.0;
  Workload workload;  ///< a 0 means "not declared": the caller's value applies
  std::vector<Target> targets;
};

// A prediction for one configuration on one target, term by term.
struct TtaBreakdown {
  int local_batch = 0;
  int global_batch = 0;  ///< local x devices (data-parallel); local otherwise
  long long steps_per_epoch = 0;
  Estimate epochs;        ///< to the target, at the global batch
  Estimate step_compute;  ///< seconds of one local step on the class
  Estimate step_sync;     ///< seconds of synchronisation per step (data-parallel)
  Estimate epoch;         ///< seconds of one epoch (data-parallel, single)
  Estimate rounds;        ///< federated rounds to the target
  Estimate round;         ///< seconds of one federated round
  Estimate transfer;      ///< one-time data movement, seconds
  Estimate warmup_steps;  ///< the first epoch's extra cost, in compute steps
  Estimate warmup;        ///< warmup_steps x step_compute, seconds
  Estimate tta;  ///< seconds to the target, all terms: never "measured" (the terms say what was)
};

// The time-to-accuracy of a configuration with `local_batch` on `target`, given its epochs
// to target at the target's global batch and the class's step-time model.
// Federated rounds assume IID shards: one round of local_epochs = local_epochs passes over
// the data, so rounds = ceil(epochs / local_epochs) (predicted, never measured here).
// `sync`, when given, is the synchronisation per step (data-parallel): measured at this
// very placement, or predicted over a link fitted to other placements (FitRingLink); it
// replaces the ring all-reduce over the declared links. `compute`, when given, is the
// compute step of one device at this placement (measured there, or the class's step scaled
// by the slowdown measured at other batches of it); it replaces step.At(local_batch).
// `warmup_steps` (a trial's one-time start-up, in compute steps) adds warmup_steps x the
// compute step, once: data-parallel devices and federated clients warm up side by side.
// Errors: a target or workload that cannot be costed (no devices, no samples, a link
// without bandwidth where bytes must cross it, a global batch beyond an int), named by field,
// and terms that are not all finite numbers (extreme inputs whose product overflows).
StatusOr<TtaBreakdown> PredictTta(const Target& target, const Workload& workload, int local_batch,
                                  const Estimate& epochs_to_target, const StepTimeModel& step,
                                  std::optional<Estimate> sync = std::nullopt,
                                  std::optional<Estimate> compute = std::nullopt,
                                  const Estimate& warmup_steps = Estimate::Measured(0.0));

}  // namespace topotune
