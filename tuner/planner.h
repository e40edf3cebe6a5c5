#pragma once

// Offline planning: which configuration reaches the target accuracy fastest on each target
// of a topology, from measurements a user already has: a table of learning curves (the
// replay format) and a step-time profile of device classes. No worker, no job.
//
// For every recorded configuration (global batch B, learning rate, optimizer) and target:
//  - epochs to target: measured, the mean first epoch at the target over the seeds
//    recorded for it (interval: the fastest and slowest seed), when every seed reaches it
//    within the table's epochs. A configuration none of whose seeds got there (a trial
//    stopped early) is predicted by the learning-curve model from its longest curve and
//    the others (tuner/curve_model.h), within epoch_limit, when that curve has two epochs
//    or more and it more likely reaches the target than not; otherwise, and when only some
//    seeds reach it, it is left out;
//  - the local batch: B on a single device and for federated clients; B / N for N
//    data-parallel devices when N divides B, so the global batch, and with it the epochs,
//    stay the measured ones. A data-parallel target also gets each configuration with
//    local batch B (global N x B), whose epochs come from BatchScaling (McCandlish et al.)
//    fitted per optimizer to the least epochs measured at each batch size: predicted;
//  - what-if batch sizes (PlanInput::what_if_batches): each (learning rate, optimizer) at a
//    batch size B it was not recorded at trains as the learning rate with the same
//    gradient-noise temperature (lr / B for SGD, lr / sqrt(B) for Adam:
//    EquivalentLearningRate) does at the nearest recorded batch sizes below and above B,
//    whose epochs are interpolated between the learning rates recorded there: predicted.
//    Where that reading finds epochs and the optimizer has TemperatureScaling::kMinSamples
//    configurations or more that reach the target, the value is that fit's over all of
//    them (log epochs quadratic in log temperature plus a log B term), which averages the
//    seeds' noise; the reading's interval stays, widened to include it.
//    Why not the same learning rate scaled by BatchScaling: the best rate moves with the
//    batch, so a fixed rate is a different configuration at another batch (too hot or too
//    cold), and BatchScaling describes the best-tuned epochs only. Where no recorded rates
//    surround the equivalent one, the same rate scaled by BatchScaling as above;
//  - compute step time from the target class's profile rows of one device
//    (StepTimeModel), fitted per optimizer where rows name one (a probe's Adam step: its
//    SGD step with Adam's update in place of SGD's); a class with no such row but whose name is the
//    table's recording device uses the table's own epoch seconds / steps per epoch, fitted per
//    optimizer where it was recorded at two batch sizes or more (Adam's step costs more). For a
//    data-parallel placement with rows of its own (nodes, devices): at the measured local batch,
//    its step less its sync, measured; at another, the class's step times the median slowdown of
//    those rows ((step - sync) / the class's step alone at their batch), predicted;
//  - warm-up: a trial's first epoch takes longer than its others (allocations, kernel
//    set-up, first touches). The median excess over the table's curves, in steps of the
//    steady step (about 7 on this machine's LeNet tables, at every batch size), is charged
//    once at the target's compute step: predicted;
//  - synchronisation: a profile row measured at the target's very placement (nodes,
//    devices per node, local batch) gives it measured; otherwise the median of that
//    placement's rows at other local batches (the same bytes over the same ring, with the
//    same sharing of the host), predicted; otherwise, where the class has
//    synchronisations measured at other placements with the same kind of slowest hop
//    (across nodes, or within one), the ring all-reduce over a link fitted to them
//    (FitRingLink), predicted; otherwise the ring over the target's declared links.
// Each answer says which terms were measured and which predicted.

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "tuner/cost_model.h"
#include "tuner/curve_table.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// One measured placement (a row of PROFILE.csv): the median step of `local_batch` on
// nodes x devices_per_node devices of a class (the whole step, its synchronisation
// included: topotune-worker dp-probe's step_s), and that synchronisation's seconds. A row
// of one device may name the optimizer whose step it timed (PROFILE.csv's optional
// `optimizer` column: a probe's step_ms is momentum SGD's, and step_ms - optimizer_ms +
// adam_optimizer_ms is Adam's); the class's configurations of that optimizer then take
// their step from those rows alone, the others from the rows that name none.
struct PlacementMeasurement {
  std::string device_class;
  int nodes = 1;
  int devices_per_node = 1;
  int local_batch = 0;
  double step_seconds = 0.0;
  double sync_seconds = 0.0;
  std::optional<Optimizer> optimizer = std::nullopt;  ///< none: any optimizer
};

struct PlanInput {
  const CurveTable* curves = nullptr;  ///< not owned
  double target_accuracy = 0.0;
  Workload workload;
  std::string curves_class;  ///< the device class the table was recorded on; "" = unknown
  std::vector<PlacementMeasurement> profile;
  std::vector<Target> targets;
  /// The latest epoch a predicted crossing may fall at; 0 = the longest recorded curve.
  int epoch_limit = 0;
  /// What-if batch sizes: every (learning rate, optimizer) of the table is also ranked at
  /// each of these batch sizes it was not recorded at, with the epochs of the learning rate
  /// of equal noise temperature at the nearest recorded batch sizes (see above): predicted.
  std::vector<int> what_if_batches;
  /// Memory: per device class, the smallest local batch its probe found not to fit (a
  /// larger one does not fit either). Configurations whose local batch on a target of that
  /// class is at least this are left out, and the target's `left_out` says so.
  std::map<std::string, int> no_fit_batch;
  /// The same for Adam's configurations, where the probe found a smaller batch that fits
  /// with momentum SGD but not with Adam's state (two buffers per weight to SGD's one).
  std::map<std::string, int> adam_no_fit_batch;
  /// Time-to-accuracy measured on a class: class -> (batch, learning rate, optimizer) ->
  /// training seconds to the target (the mean over the trials that reached it there). A
  /// single-device target of that class shows it beside its prediction.
  std::map<std::string, std::map<std::tuple<int, double, Optimizer>, double>> measured_tta;
};

// A configuration on a target, ranked by predicted time-to-accuracy.
struct PlannedConfig {
  TrialConfig config;  ///< batch_size is the global batch
  TtaBreakdown cost;
  std::string epochs_from;    ///< "measured (N seeds)" or how it was predicted
  std::string step_from;      ///< "measured" / "fitted alpha + beta x batch" / ...
  std::string sync_from;      ///< "" (none), "measured" or "ring all-reduce over declared links"
  std::string transfer_from;  ///< "" (no data moves), "declared link" or how it was measured
  /// Measured on the target's class (single-device targets; see PlanInput::measured_tta).
  std::optional<double> measured_tta_s;
};

struct TargetPlan {
  Target target;
  std::vector<PlannedConfig> ranked;  ///< ascending predicted TTA
  std::string note;                   ///< why a target has no ranking, if it has none
  /// What was left out: configurations that do not fit the class's memory, and those whose
  /// global batch on the target's devices is above an int's range.
  std::string left_out;
};

// Plans every target. Errors: no curves, a target accuracy outside (0, 1], a workload
// without train_samples, or a bad profile row (named by its index). A target that cannot
// be costed (no step time for its class, a missing link) gets an empty ranking and a note,
// so that the others still answer.
StatusOr<std::vector<TargetPlan>> Plan(const PlanInput& input);

// "When does moving the data pay off?": a target whose data must first cross a link (its
// best configuration's transfer term > 0), against the fastest target that trains where the
// data is. Break-even: moving pays while the transfer takes under `break_even_transfer_s` =
// the staying target's TTA - the moving target's TTA without its transfer; so while the link
// gives at least `min_bandwidth_bytes_s` for these bytes, or while the data is at most
// `max_data_bytes` on this link. Compared on the predicted values (intervals aside).
struct DataMoveVerdict {
  std::string moving;           ///< target name (trains after the data moved)
  std::string staying;          ///< target name (trains where the data is)
  double moving_train_s = 0.0;  ///< the moving target's best TTA less its transfer
  double transfer_s = 0.0;
  double staying_s = 0.0;
  double data_bytes = 0.0;
  double bandwidth_bytes_s = 0.0;      ///< the declared data link
  double break_even_transfer_s = 0.0;  ///< <= 0: moving never pays, even on a free link
  double min_bandwidth_bytes_s = 0.0;  ///< infinity where moving never pays
  double max_data_bytes = 0.0;         ///< 0 where moving never pays
  bool pays = false;                   ///< the moving target is faster as declared
};

// PlanInput::measured_tta from a job's trials and curve points (by trial, then epoch): a
// trial's training seconds (compute_s + comm_s) up to its first epoch at `target_accuracy`,
// for the class (`class_of`: worker id -> class) of the worker that ran it last; the mean
// per configuration. A trial whose epochs were partly counted from another class
// (CurvePoint::reference_s scaled) and partly not ran on two classes and measures neither.
// Without a reference class no epoch is scaled, and a trial that moved between classes
// counts for the last one.
std::map<std::string, std::map<std::tuple<int, double, Optimizer>, double>> MeasuredTtaByClass(
    const std::vector<TrialRecord>& trials, const std::vector<CurvePoint>& points,
    const std::map<std::string, std::string>& class_of, double target_accuracy);

// One verdict per target that moves data, when some ranked target does not.
std::vector<DataMoveVerdict> CompareDataMoves(const std::vector<TargetPlan>& plans);

// Parses PROFILE.csv: the header
// device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds, optionally with
// ",optimizer" ("sgd", "adam" or empty; it counts for rows of one device), and one row per
// measured placement; '#' lines are comments. Ranges: nodes and devices_per_node >= 1 with
// at most 2^20 devices in all, local_batch in [1, kMaxBatchSize], step_seconds in
// [1e-9, 1e6], sync_seconds in [0, step_seconds]. Errors name the line and the field.
StatusOr<std::vector<PlacementMeasurement>> ParseProfileCsv(const std::string& text,
                                                            const std::string& name);

}  // namespace topotune
