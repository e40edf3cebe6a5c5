#pragma once

// The records of the tuning domain: what a job asks for, what a trial is, what a worker
// reports. Plain structs, no I/O; api/ turns them into JSON and storage/ into rows.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tuner/target.h"

namespace topotune {

enum class Optimizer { kSgd, kAdam };
const char* OptimizerName(Optimizer optimizer);  // "sgd" or "adam"
std::optional<Optimizer> ParseOptimizer(const std::string& name);

// One point of the search space.
struct TrialConfig {
  int batch_size = 0;
  double learning_rate = 0.0;
  Optimizer optimizer = Optimizer::kSgd;
};

// Batch sizes are powers of two in [batch_size_min, batch_size_max]; the learning rate is
// log-uniform in [lr_min, lr_max].
struct SearchSpace {
  std::vector<int> batch_sizes;
  double lr_min = 1e-4;
  double lr_max = 1.0;
  std::vector<Optimizer> optimizers;
};

// Where a worker finds the training data. Paths are resolved on the worker, relative to
// its --data-root.
struct DatasetSpec {
  std::string format = "cifar10-bin";  ///< "cifar10-bin" or "mnist-idx"
  std::string path;                    ///< folder with the format's files
  int64_t max_train_samples = 0;       ///< 0 = use every training sample
  int64_t max_val_samples = 0;         ///< 0 = use every test sample
  bool augment = false;                ///< random crop (4-pixel padding) and horizontal flip
};

// The budget of successive halving's rungs. In epochs, rung k trains a trial to
// min_epochs * eta^k epochs. In seconds (DESIGN.md: so a slow board and a fast GPU compare
// fairly), rung k trains it until its training seconds (compute + communication, as the
// worker measured them) first reach min_seconds * eta^k, at an epoch boundary, and at most
// max_epochs epochs in all.
enum class RungUnit { kEpochs, kSeconds };
const char* RungUnitName(RungUnit unit);  // "epochs" or "seconds"

// Whether a trial's training seconds `total_s` reached `limit_s` (> 0). The controller and
// the worker sum the same epochs in a different order; the tolerance makes them agree.
inline bool ReachedSeconds(double total_s, double limit_s) {
  return limit_s > 0 && total_s >= limit_s * (1.0 - 1e-12);
}

struct AshaSettings {
  RungUnit unit = RungUnit::kEpochs;
  int min_epochs = 1;        ///< epochs of rung 0 (unit epochs)
  double min_seconds = 0.0;  ///< training seconds of rung 0 (unit seconds)
  int max_epochs = 100;      ///< epochs a trial trains at most (unit seconds)
  int reduction_factor = 3;  ///< eta: the top 1/eta of a rung is promoted
  int num_rungs = 3;         ///< rungs 0 .. num_rungs-1
  // Algorithm "forecast": no rungs. A trial trains in segments of SegmentEpochs() up to
  // max_epochs, and the learning-curve forecast decides whether it goes on.
  bool rungless = false;
  int SegmentEpochs() const;       ///< rungless: max(min_epochs, ceil(max_epochs / 20))
  int MaxEpochs() const;           ///< epochs of the top rung (unit seconds, rungless: max_epochs)
  int RungEpochs(int rung) const;  ///< unit epochs: the epochs rung `rung` trains to
  double RungSeconds(int rung) const;  ///< unit seconds: min_seconds * eta^rung

  static AshaSettings InEpochs(int min_epochs, int reduction_factor, int num_rungs);
  static AshaSettings InSeconds(double min_seconds, int reduction_factor, int num_rungs,
                                int max_epochs);
};

// A validated tuning job. See api/job_spec_json.h for the JSON form.
// The forecast's default JobSpec::incumbent_seeds.
constexpr int kForecastIncumbentSeeds = 3;

struct JobSpec {
  std::string name;
  std::string model;  ///< one of KnownModels()
  DatasetSpec dataset;
  SearchSpace space;
  double target_accuracy = 0.0;  ///< validation accuracy in (0, 1] that defines TTA
  int max_trials = 16;           ///< configurations sampled in all
  // > 0: the training seconds the job may spend, every trial's together (counted as the
  // bound counts them: on the reference class where the job has one), the epochs that a lost
  // worker or a restart cut and that are trained again included. Once they are spent
  // no segment starts, a running one ends at its next epoch, and the job completes with the
  // best it has. 0 = no limit: the job ends when its trials are done.
  double time_budget_s = 0.0;
  std::string algorithm = "asha";  ///< one of KnownAlgorithms() (tuner/algorithms.h)
  std::string auto_reason;         ///< set when "auto" chose `algorithm`: why
  // The sampler of algorithm "forecast": "tpe" or "gp" (the other algorithms name theirs).
  std::string forecast_sampler = "tpe";
  AshaSettings asha;
  double momentum = 0.9;   ///< SGD momentum
  uint64_t seed = 0;       ///< the sampler's seed; trial seeds derive from it
  // The seeds a configuration is trained on before the job names it best
  // (tuner/seed_groups.h): 1 = its one trial names it. A submitted job spec without it
  // gets kForecastIncumbentSeeds for algorithm "forecast" (SubmittedJobSpec), 1 otherwise.
  int incumbent_seeds = 1;
  int grid_lr_points = 8;  ///< learning rates a comparable hand grid would try
  // The topology the report answers for (api/topology_json.h), as validated JSON text;
  // "" = none. Each of its targets gets a ranking in the report.
  std::string topology_json;
  // The device class whose seconds the job counts (rungs in seconds, the bound, the
  // time-to-accuracy the search ranks by): a trial's seconds on its device x this class's
  // step time / its device class's step time at the trial's batch size, from their probes.
  // "" = seconds as measured. Defaults to the first target's class of `topology_json`.
  std::string reference_class;
  // The topology's first target, and what it trains (0 = not declared). The job's seconds
  // count on it while reference_class is its class (ReferenceTarget).
  Target reference_target;
  Workload workload;
};

// The target a job's seconds count on: its topology's first target while reference_class is
// that target's class, else one device of reference_class. A data-parallel or federated
// target counts its whole step (the local batch's compute plus the synchronisation over
// its links: the declared ones, or those its job fixed, WithCountedLinks), not only its
// class's compute step (TargetTimeScales).
inline Target ReferenceTarget(const JobSpec& spec) {
  if (spec.reference_target.device_class == spec.reference_class) return spec.reference_target;
  Target one;
  one.name = spec.reference_class;
  one.device_class = spec.reference_class;
  return one;
}

// The links a job's seconds count over where its reference target spans sites (a
// data-parallel target across nodes, or a federated one), fixed at the job's first
// placement so that every trial counts alike (JobEngine::CountedReference).
struct CountedLinks {
  Link inter_node;
  Link edge_cloud;
  std::string how;  ///< Target::links_measured then; "" = as declared
};

// `reference` (ReferenceTarget) with the links its job fixed (JobRecord::counted_links).
inline Target WithCountedLinks(Target reference, const CountedLinks& links) {
  reference.inter_node = links.inter_node;
  reference.edge_cloud = links.edge_cloud;
  reference.links_measured = links.how;
  return reference;
}

// Models a worker can build by name.
const std::vector<std::string>& KnownModels();

enum class JobState { kQueued, kRunning, kCompleted, kCancelled, kFailed };
const char* JobStateName(JobState state);
std::optional<JobState> ParseJobState(const std::string& name);
bool IsTerminal(JobState state);

enum class TrialState {
  kPending,     ///< waiting for a worker (new, or promoted to a higher rung)
  kRunning,     ///< on a worker
  kPaused,      ///< finished its rung; waits for promotion
  kCompleted,   ///< reached the target, or finished the top rung
  kStopped,     ///< stopped by the scheduler (not promoted, bound-pruned, cancelled)
  kInfeasible,  ///< the device could not run it (out of memory)
  kFailed,      ///< diverged or errored
};
const char* TrialStateName(TrialState state);
std::optional<TrialState> ParseTrialState(const std::string& name);
bool IsTerminal(TrialState state);

// Algorithm "forecast": what the learning-curve model said of a trial when it was stopped.
// Seconds are training seconds; kNever (infinity) where the forecast's samples mostly
// never reach the target within the job's epoch limit.
struct TrialForecast {
  double tta_s = 0.0;  ///< predicted time-to-accuracy (median)
  double lo_s = 0.0;   ///< its 80% interval
  double hi_s = 0.0;
  double p_win = 0.0;    ///< P(beats the incumbent's TTA, or the best predicted one)
  double p_reach = 0.0;  ///< P(reaches the target within the job's epoch limit)
  // The sampler score expected over the same forecast, which ranks the trial among the
  // job's trials (JobEngine::InTopShare); the sampler observed a stricter one. NaN where not
  // recorded (stores written before migration 11).
  double score = 0.0;
};

struct TrialRecord {
  int64_t id = 0;  ///< unique over all jobs (storage row id)
  int64_t job_id = 0;
  int number = 0;  ///< 0, 1, 2 ... within the job
  TrialConfig config;
  uint64_t seed = 0;
  TrialState state = TrialState::kPending;
  int rung = 0;              ///< the rung it is in (or was last in)
  int bracket = 0;           ///< its bracket of successive halving (PlanBrackets' index)
  int rung_start_epoch = 0;  ///< epochs done when its current rung began (its checkpoint)
  int epochs_done = 0;       ///< epochs trained so far
  int target_epochs = 0;     ///< epochs its current rung trains to
  int attempt = 0;           ///< segments started so far; the running one's number
  std::string worker;        ///< the worker that ran it last (and holds its checkpoint)
  std::string reason;        ///< why it ended, in words
  bool reached_target = false;
  double tta_s = 0.0;    ///< training seconds to the target when reached_target
  double train_s = 0.0;  ///< training seconds so far (compute + communication)
  // Training seconds of epochs that were cut (a lost worker, a controller restart) and are
  // trained again: not in train_s, whose epochs are the kept ones, but spent all the same
  // (a job's time budget counts them).
  double cut_s = 0.0;
  double best_accuracy = 0.0;
  std::optional<TrialForecast> forecast;  ///< set when the forecast stopped it
  // >= 0: not the sampler's: it measures trial number `confirms`'s configuration (and
  // seed) on the job's reference class, whose time-to-accuracy was counted there from
  // seconds on another class. -1: a trial the sampler proposed.
  int confirms = -1;
  // >= 0: a rerun on another seed (tuner/seed_groups.h) whose first epochs repeated trial
  // number `repeats`'s curve exactly: the seed does not change this configuration's
  // training, so the rerun measured nothing new and was stopped.
  int repeats = -1;
};

// One epoch of one trial, as the worker measured it.
struct CurvePoint {
  int64_t trial_id = 0;
  int epoch = 0;             ///< 1-based
  int64_t samples_seen = 0;  ///< cumulative training samples
  double train_loss = 0.0;
  double val_accuracy = 0.0;
  double compute_s = 0.0;    ///< forward + backward + optimizer + data loading this epoch
  double data_s = 0.0;       ///< of compute_s: batch assembly (and augmentation)
  double forward_s = 0.0;    ///< of compute_s: forward pass and loss
  double backward_s = 0.0;   ///< of compute_s: backward pass
  double optimizer_s = 0.0;  ///< of compute_s: optimizer step
  double comm_s = 0.0;       ///< synchronisation this epoch (0 on one device)
  double eval_s = 0.0;       ///< validation this epoch (kept out of TTA)
  double wall_s = 0.0;       ///< wall-clock seconds of the whole epoch
  double step_ms_p50 = 0.0;  ///< median training step
  double step_ms_p95 = 0.0;
  int64_t peak_memory_bytes = 0;
  // Set by the controller, never read from a worker: compute_s + comm_s as the job counts
  // them, on its reference class (JobSpec::reference_class): x that class's step time /
  // the step time of the class the epoch ran on, from their probes; unscaled without one.
  double reference_s = 0.0;
  // Set by the controller, never read from a worker: the class of the device the epoch ran
  // on (DeviceClassOf; its placement's lead). "" for points stored before migration 15.
  std::string device_class;
};

// What a worker says about its device when it registers.
struct DeviceProfile {
  std::string kind = "cpu";  ///< "cpu", "cuda", or "replay" (a replay-table worker)
  std::string name;          ///< CPU model or GPU name
  int cores = 0;
  int64_t memory_bytes = 0;
  std::string device_class;  ///< the worker's --class ("jetson-nano"); "" = not said
  std::string site;          ///< the worker's --site ("edge-1"); "" = not said
};

// The class a worker's device counts in: its --class, else "<kind>-<cores>c" ("cpu-2c").
std::string DeviceClassOf(const DeviceProfile& device);

// What a device measured for one (model, input shape, batch size): a training step on
// random data, or the out-of-memory error that says the batch does not fit.
struct BatchProbe {
  int batch_size = 0;
  bool fits = false;
  double step_ms = 0.0;  ///< forward + backward + optimizer: the mean step of the median round
  int64_t peak_memory_bytes = 0;  ///< peak RSS (CPU) or allocator peak (CUDA) after it
  std::string error;              ///< why it does not fit
  // Its parts, each the mean over the same steps (0 from workers that do not split it):
  // forward and loss, backward, optimizer step and clearing the gradients (as the trainer
  // splits a training step).
  double forward_ms = 0.0;
  double backward_ms = 0.0;
  double optimizer_ms = 0.0;
  // The optimizer part as it is with Adam in place of momentum SGD: optimizer_ms plus what
  // Adam's update takes beyond SGD's (0 from workers that do not measure it). A step with
  // Adam is step_ms - optimizer_ms + adam_optimizer_ms.
  double adam_optimizer_ms = 0.0;
  // It fits with momentum SGD (one buffer per weight) but a step with Adam's state (two)
  // failed (false from workers that do not check).
  bool adam_does_not_fit = false;
  // The seconds of steps timed at this size over all its rounds (0 from workers that do not
  // report it): the worker's --probe-seconds or a little more.
  double timed_s = 0.0;
  bool FitsWith(Optimizer optimizer) const {
    return fits && !(optimizer == Optimizer::kAdam && adam_does_not_fit);
  }
};

// A worker's probe of one model on one input shape ("3x32x32").
struct DeviceProbe {
  std::string worker_id;
  std::string model;
  std::string input;
  std::vector<BatchProbe> batches;  ///< ascending batch size
  double measured_at = 0.0;
  // The largest batch size that fits (with momentum SGD, as probed); 0 if none does.
  int MaxBatchSize() const;
  // The largest batch size that fits with every one of `optimizers` (FitsWith); 0 if none.
  int MaxBatchSize(const std::vector<Optimizer>& optimizers) const;
};

struct WorkerRecord {
  std::string id;  ///< the worker's name, stable across reconnects
  DeviceProfile device;
  std::string state;  ///< "idle", "busy", "offline"
  double connected_at = 0.0;
  double last_heartbeat = 0.0;
};

// What a bearer token may do: admin everything (including tokens), user jobs and reports,
// worker the worker gateway.
enum class Role { kAdmin, kUser, kWorker };
const char* RoleName(Role role);  // "admin", "user" or "worker"
std::optional<Role> ParseRole(const std::string& name);

// A stored API token. Only the SHA-256 of its secret is kept, never the secret.
struct TokenRecord {
  int64_t id = 0;  ///< storage row id; the ID of the token text tt<ID>.<SECRET>
  std::string name;
  Role role = Role::kUser;
  std::string hash_hex;       ///< lowercase hex SHA-256 of the secret (external: of the text)
  bool external = false;      ///< an admin secret the operator provided, not tt<ID>.<SECRET>
  double created_at = 0.0;    ///< seconds since the Unix epoch
  double revoked_at = 0.0;    ///< 0 = active
  double last_used_at = 0.0;  ///< 0 = never; updated at most once a minute
  bool active() const { return revoked_at == 0.0; }
};

struct JobRecord {
  int64_t id = 0;
  std::string name;
  std::string spec_json;  ///< the spec as submitted (normalised)
  JobState state = JobState::kQueued;
  std::string message;  ///< why it failed or was cancelled
  double created_at = 0.0;
  double finished_at = 0.0;
  std::optional<CountedLinks> counted_links;  ///< unset before they are fixed
};

}  // namespace topotune
