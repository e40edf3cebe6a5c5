#include "api/job_spec_json.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "api/json_fields.h"
#include "api/json_input.h"
#include "api/protocol.h"
#include "api/topology_json.h"
#include "tuner/algorithms.h"

namespace topotune {
namespace {

using nlohmann::json;

// A forecast job limited by its time budget alone trains a trial for at most this many epochs.
constexpr int kForecastEpochs = 100;

std::string Num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

bool IsPowerOfTwo(int64_t x) { return x >= 1 && (x & (x - 1)) == 0; }

Status ParseBatchSizes(const json& j, SearchSpace* space) {
  const std::string path = "search_space.batch_size";
  if (!j.is_object()) {
    return Status::InvalidArgument(path + " must be an object {\"min\": 16, \"max\": 512} or " +
                                   "{\"values\": [...]}, got " + Fields::Describe(j));
  }
  Fields f(j, path);
  space->batch_sizes.clear();
  if (const json* values = f.Find("values")) {
    if (!values->is_array() || values->empty()) {
      return Status::InvalidArgument(path + ".values must be a non-empty array of integers");
    }
    for (const json& v : *values) {
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65536) {
        return Status::InvalidArgument(path + ".values: every batch size must be an integer in " +
                                       "[1, 65536], got " + Fields::Describe(v));
      }
      space->batch_sizes.push_back(v.get<int>());
    }
    std::sort(space->batch_sizes.begin(), space->batch_sizes.end());
    space->batch_sizes.erase(std::unique(space->batch_sizes.begin(), space->batch_sizes.end()),
                             space->batch_sizes.end());
    return f.NoOthers();
  }
  const json* unused;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("min", &unused, "the smallest batch size, a power of two"));
  TOPOTUNE_RETURN_IF_ERROR(f.Required("max", &unused, "the largest batch size, a power of two"));
  int64_t lo = 0, hi = 0;
  TOPOTUNE_RETURN_IF_ERROR(f.Int("min", INT64_MIN, INT64_MAX, &lo));
  TOPOTUNE_RETURN_IF_ERROR(f.Int("max", INT64_MIN, INT64_MAX, &hi));
  for (auto [name, x] : {std::pair<const char*, int64_t>{"min", lo}, {"max", hi}}) {
    if (!IsPowerOfTwo(x) || x > 65536) {
      return Status::InvalidArgument(
          path + "." + name + " must be a power of two in [1, 65536], got " + std::to_string(x));
    }
  }
  if (lo > hi) {
    return Status::InvalidArgument(path + ": min (" + std::to_string(lo) +
                                   ") must not exceed max (" + std::to_string(hi) + ")");
  }
  for (int64_t b = lo; b <= hi; b *= 2) space->batch_sizes.push_back(static_cast<int>(b));
  return f.NoOthers();
}

Status ParseLearningRate(const json& j, SearchSpace* space) {
  const std::string path = "search_space.learning_rate";
  if (!j.is_object()) {
    return Status::InvalidArgument(path + " must be an object {\"min\": 1e-4, \"max\": 1.0}, got " +
                                   Fields::Describe(j));
  }
  Fields f(j, path);
  const json* unused;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("min", &unused, "the smallest learning rate, > 0"));
  TOPOTUNE_RETURN_IF_ERROR(f.Required("max", &unused, "the largest learning rate"));
  TOPOTUNE_RETURN_IF_ERROR(f.Number("min", &space->lr_min));
  TOPOTUNE_RETURN_IF_ERROR(f.Number("max", &space->lr_max));
  std::string scale = "log";
  TOPOTUNE_RETURN_IF_ERROR(f.String("scale", &scale));
  if (scale != "log") {
    return Status::InvalidArgument(path +
                                   ".scale must be \"log\" (the only scale supported), got \"" +
                                   SafeText(scale, 40) + "\"");
  }
  if (!(space->lr_min > 0)) {
    return Status::InvalidArgument(path + ".min must be > 0 (the scale is logarithmic), got " +
                                   Num(space->lr_min));
  }
  if (!(space->lr_min < space->lr_max)) {
    return Status::InvalidArgument(path + ": min (" + Num(space->lr_min) +
                                   ") must be less than max (" + Num(space->lr_max) + ")");
  }
  if (space->lr_max > 100) {
    return Status::InvalidArgument(path + ".max must be <= 100, got " + Num(space->lr_max));
  }
  return f.NoOthers();
}

Status ParseOptimizers(const json& j, SearchSpace* space) {
  const std::string path = "search_space.optimizer";
  if (!j.is_array() || j.empty()) {
    return Status::InvalidArgument(
        path + " must be a non-empty array of \"sgd\" and/or \"adam\", got " + Fields::Describe(j));
  }
  space->optimizers.clear();
  for (const json& v : j) {
    std::optional<Optimizer> o =
        v.is_string() ? ParseOptimizer(v.get<std::string>()) : std::nullopt;
    if (!o) {
      return Status::InvalidArgument(path + ": unknown optimizer " + Fields::Describe(v) +
                                     "; known optimizers: \"sgd\" (with momentum), \"adam\"");
    }
    if (std::find(space->optimizers.begin(), space->optimizers.end(), *o) !=
        space->optimizers.end()) {
      return Status::InvalidArgument(path + ": " + Fields::Describe(v) + " is listed twice");
    }
    space->optimizers.push_back(*o);
  }
  return Status::OK();
}

Status ParseSearchSpace(const json& j, SearchSpace* space) {
  Fields f(j, "search_space");
  const json* field;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("batch_size", &field, "{\"min\": 16, \"max\": 512}"));
  TOPOTUNE_RETURN_IF_ERROR(ParseBatchSizes(*field, space));
  TOPOTUNE_RETURN_IF_ERROR(f.Required("learning_rate", &field, "{\"min\": 1e-4, \"max\": 1.0}"));
  TOPOTUNE_RETURN_IF_ERROR(ParseLearningRate(*field, space));
  TOPOTUNE_RETURN_IF_ERROR(f.Required("optimizer", &field, "[\"sgd\", \"adam\"]"));
  TOPOTUNE_RETURN_IF_ERROR(ParseOptimizers(*field, space));
  return f.NoOthers();
}

Status ParseDataset(const json& j, DatasetSpec* d) {
  Fields f(j, "dataset");
  TOPOTUNE_RETURN_IF_ERROR(f.String("format", &d->format));
  if (d->format != "cifar10-bin" && d->format != "mnist-idx") {
    return Status::InvalidArgument("dataset.format: unknown format \"" + SafeText(d->format, 40) +
                                   "\"; known formats: \"cifar10-bin\", \"mnist-idx\"");
  }
  const json* unused;
  TOPOTUNE_RETURN_IF_ERROR(
      f.Required("path", &unused, "the folder with the data files, on the worker"));
  TOPOTUNE_RETURN_IF_ERROR(f.String("path", &d->path));
  if (d->path.empty()) return Status::InvalidArgument("dataset.path must not be empty");
  TOPOTUNE_RETURN_IF_ERROR(f.Int("max_train_samples", 0, INT64_MAX, &d->max_train_samples));
  TOPOTUNE_RETURN_IF_ERROR(f.Int("max_val_samples", 0, INT64_MAX, &d->max_val_samples));
  if (const json* augment = f.Find("augment")) {
    if (!augment->is_boolean()) {
      return Status::InvalidArgument("dataset.augment must be true or false, got " +
                                     Fields::Describe(*augment));
    }
    d->augment = augment->get<bool>();
  }
  return f.NoOthers();
}

Status ParseScheduler(const json& j, JobSpec* spec) {
  Fields f(j, "scheduler");
  TOPOTUNE_RETURN_IF_ERROR(f.String("algorithm", &spec->algorithm));
  TOPOTUNE_RETURN_IF_ERROR(f.String("auto_reason", &spec->auto_reason));
  TOPOTUNE_RETURN_IF_ERROR(f.String("sampler", &spec->forecast_sampler));
  if (spec->forecast_sampler != "tpe" && spec->forecast_sampler != "gp") {
    return Status::InvalidArgument("scheduler.sampler must be \"tpe\" or \"gp\", got \"" +
                                   SafeText(spec->forecast_sampler, 40) + "\"");
  }
  const auto& known = KnownAlgorithms();
  if (spec->algorithm != "auto" &&
      std::find(known.begin(), known.end(), spec->algorithm) == known.end()) {
    std::string list = "\"auto\"";
    for (const auto& a : known) list += ", \"" + a + "\"";
    return Status::InvalidArgument("scheduler.algorithm: unknown algorithm \"" +
                                   SafeText(spec->algorithm, 40) + "\"; known: " + list);
  }
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("min_epochs", 1, 1000, &spec->asha.min_epochs));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("reduction_factor", 2, 16, &spec->asha.reduction_factor));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("rungs", 1, 10, &spec->asha.num_rungs));
  std::string unit = RungUnitName(spec->asha.unit);
  TOPOTUNE_RETURN_IF_ERROR(f.String("rung_unit", &unit));
  if (unit != "epochs" && unit != "seconds") {
    return Status::InvalidArgument("scheduler.rung_unit must be \"epochs\" or \"seconds\", got \"" +
                                   SafeText(unit, 40) + "\"");
  }
  spec->asha.unit = unit == "seconds" ? RungUnit::kSeconds : RungUnit::kEpochs;
  TOPOTUNE_RETURN_IF_ERROR(f.Number("min_seconds", &spec->asha.min_seconds));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("max_epochs", 1, 10000, &spec->asha.max_epochs));
  // A limit and no rung schedule: the forecast decides ("auto" picks it for such a job). The
  // limit is the epochs a trial may train, or the job's time budget (then at most
  // kForecastEpochs epochs a trial unless max_epochs says otherwise).
  const bool no_rungs = !j.contains("rungs") && !j.contains("reduction_factor") &&
                        !j.contains("rung_unit") && !j.contains("min_seconds");
  const bool auto_limit = spec->algorithm == "auto" && spec->asha.unit == RungUnit::kEpochs &&
                          (j.contains("max_epochs") || (spec->time_budget_s > 0 && no_rungs));
  if (f.Find("sampler") != nullptr && spec->algorithm != "forecast" && !auto_limit) {
    return Status::InvalidArgument(
        "scheduler.sampler applies only to algorithm \"forecast\" (or \"auto\" with a limit "
        "and no rungs); the other algorithms name their sampler (\"tpe\", \"gp\", \"bohb\")");
  }
  if (spec->algorithm == "forecast" || auto_limit) {
    if (!j.contains("max_epochs")) {
      if (!(spec->time_budget_s > 0)) {
        return Status::InvalidArgument(
            "scheduler.max_epochs: algorithm \"forecast\" needs a limit: the epochs a trial may "
            "train at most, or the job's time_budget_s");
      }
      spec->asha.max_epochs = kForecastEpochs;
    }
    for (const char* key : {"rungs", "reduction_factor", "min_seconds"}) {
      if (j.contains(key)) {
        return Status::InvalidArgument("scheduler." + std::string(key) +
                                       " does not apply to a job with max_epochs and no rungs "
                                       "(algorithm \"forecast\")");
      }
    }
    if (spec->asha.unit != RungUnit::kEpochs) {
      return Status::InvalidArgument(
          "scheduler.rung_unit: algorithm \"forecast\" counts epochs (no rungs)");
    }
    spec->asha.rungless = true;
    spec->asha.num_rungs = 1;
    return f.NoOthers();
  }
  if (spec->asha.unit == RungUnit::kSeconds) {
    if (!(spec->asha.min_seconds > 0) || spec->asha.min_seconds > 1e6) {
      return Status::InvalidArgument(
          "scheduler.min_seconds: rung_unit \"seconds\" needs the training seconds of rung 0, "
          "in (0, 1e6], got " +
          Num(spec->asha.min_seconds));
    }
    return f.NoOthers();
  }
  for (const char* key : {"min_seconds", "max_epochs"}) {
    if (j.contains(key)) {
      return Status::InvalidArgument("scheduler." + std::string(key) +
                                     " applies only with \"rung_unit\": \"seconds\"");
    }
  }
  double max_epochs = spec->asha.min_epochs;
  for (int k = 1; k < spec->asha.num_rungs; ++k) max_epochs *= spec->asha.reduction_factor;
  if (max_epochs > 10000) {
    return Status::InvalidArgument(
        "scheduler: the top rung would train " + Num(max_epochs) +
        " epochs (min_epochs * reduction_factor^(rungs-1)); the limit is 10000");
  }
  return f.NoOthers();
}

}  // namespace

StatusOr<JobSpec> JobSpecFromJson(const json& j) {
  if (!j.is_object()) {
    return Status::InvalidArgument("a job spec must be a JSON object, got " + Fields::Describe(j));
  }
  JobSpec spec;
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  Fields f(j, "");
  TOPOTUNE_RETURN_IF_ERROR(f.String("name", &spec.name));
  if (spec.name.size() > 200) return Status::InvalidArgument("name is longer than 200 characters");
  const json* field;
  TOPOTUNE_RETURN_IF_ERROR(f.Required("model", &field, "one of the known models"));
  TOPOTUNE_RETURN_IF_ERROR(f.String("model", &spec.model));
  const auto& known = KnownModels();
  if (std::find(known.begin(), known.end(), spec.model) == known.end()) {
    std::string list;
    for (const auto& m : known) list += (list.empty() ? "\"" : ", \"") + m + "\"";
    return Status::InvalidArgument("model: unknown model \"" + SafeText(spec.model, 40) +
                                   "\"; known models: " + list);
  }
  TOPOTUNE_RETURN_IF_ERROR(
      f.Required("dataset", &field, "{\"format\": \"cifar10-bin\", \"path\": ...}"));
  TOPOTUNE_RETURN_IF_ERROR(f.Object("dataset", &field));
  TOPOTUNE_RETURN_IF_ERROR(ParseDataset(*field, &spec.dataset));
  TOPOTUNE_RETURN_IF_ERROR(
      f.Required("target_accuracy", &field,
                 "the validation accuracy in (0, 1] that defines time-to-accuracy"));
  TOPOTUNE_RETURN_IF_ERROR(f.Number("target_accuracy", &spec.target_accuracy));
  if (!(spec.target_accuracy > 0 && spec.target_accuracy <= 1)) {
    return Status::InvalidArgument("target_accuracy must be in (0, 1], got " +
                                   Num(spec.target_accuracy));
  }
  TOPOTUNE_RETURN_IF_ERROR(
      f.Required("search_space", &field, "batch_size, learning_rate and optimizer ranges"));
  TOPOTUNE_RETURN_IF_ERROR(f.Object("search_space", &field));
  TOPOTUNE_RETURN_IF_ERROR(ParseSearchSpace(*field, &spec.space));
  // Before the scheduler: a time budget is a forecast's limit too.
  TOPOTUNE_RETURN_IF_ERROR(f.Number("time_budget_s", &spec.time_budget_s));
  if (!(spec.time_budget_s >= 0 && spec.time_budget_s <= 1e9)) {
    return Status::InvalidArgument(
        "time_budget_s must be the training seconds the job may spend, in (0, 1e9] (0 or absent: "
        "no limit), got " +
        Num(spec.time_budget_s));
  }
  TOPOTUNE_RETURN_IF_ERROR(f.Object("scheduler", &field));
  if (field != nullptr) TOPOTUNE_RETURN_IF_ERROR(ParseScheduler(*field, &spec));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("max_trials", 1, 10000, &spec.max_trials));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("seed", 0, INT64_MAX, &spec.seed));
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("incumbent_seeds", 1, 5, &spec.incumbent_seeds));
  TOPOTUNE_RETURN_IF_ERROR(f.Number("momentum", &spec.momentum));
  if (!(spec.momentum >= 0 && spec.momentum < 1)) {
    return Status::InvalidArgument("momentum must be in [0, 1), got " + Num(spec.momentum));
  }
  TOPOTUNE_RETURN_IF_ERROR(f.IntAs("grid_lr_points", 1, 100, &spec.grid_lr_points));
  TOPOTUNE_RETURN_IF_ERROR(f.Object("topology", &field));
  if (field != nullptr) {
    StatusOr<Topology> topology = TopologyFromJson(*field);
    if (!topology.ok()) return Status::InvalidArgument("topology: " + topology.status().message());
    spec.topology_json = DumpJson(*field);
    if (!topology->targets.empty()) {
      spec.reference_class = topology->targets.front().device_class;
      spec.reference_target = topology->targets.front();
    }
    spec.workload = topology->workload;
  }
  // The class whose seconds the job counts; a name as a worker's --class.
  std::string reference_class;
  TOPOTUNE_RETURN_IF_ERROR(f.String("reference_class", &reference_class, 64));
  if (!reference_class.empty()) {
    if (!ValidWorkerId(reference_class)) {
      return Status::InvalidArgument("reference_class must be 1-64 of A-Z a-z 0-9 . _ -, got '" +
                                     SafeText(reference_class, 64) + "'");
    }
    spec.reference_class = reference_class;
  }
  TOPOTUNE_RETURN_IF_ERROR(f.NoOthers());
  if (spec.algorithm == "auto") spec.algorithm = AutoAlgorithm(spec, &spec.auto_reason);
  return spec;
}

StatusOr<JobSpec> SubmittedJobSpec(const json& j) {
  StatusOr<JobSpec> spec = JobSpecFromJson(j);
  if (!spec.ok()) return spec;
  // The forecast names its best by the mean over kForecastIncumbentSeeds seeds unless the
  // job says otherwise (bench/RESULTS.md, "Naming the best by its mean over seeds").
  if (spec->algorithm == "forecast" && !j.contains("incumbent_seeds")) {
    spec->incumbent_seeds = kForecastIncumbentSeeds;
    if (!spec->auto_reason.empty()) {
      spec->auto_reason += "; it names the best configuration by its mean time-to-accuracy over " +
                           std::to_string(kForecastIncumbentSeeds) + " seeds (incumbent_seeds)";
    }
  }
  return spec;
}

StatusOr<JobSpec> ParseJobSpec(const std::string& text) {
  StatusOr<json> j = ParseUntrustedJson(text);
  if (!j.ok()) return Status(j.status().code(), "the job spec: " + j.status().message());
  return JobSpecFromJson(*j);
}

json JobSpecToJson(const JobSpec& spec) {
  json optimizers = json::array();
  for (Optimizer o : spec.space.optimizers) optimizers.push_back(OptimizerName(o));
  json j = {{"name", spec.name},
            {"model", spec.model},
            {"dataset",
             {{"format", spec.dataset.format},
              {"path", spec.dataset.path},
              {"max_train_samples", spec.dataset.max_train_samples},
              {"max_val_samples", spec.dataset.max_val_samples},
              {"augment", spec.dataset.augment}}},
            {"target_accuracy", spec.target_accuracy},
            {"search_space",
             {{"batch_size", {{"values", spec.space.batch_sizes}}},
              {"learning_rate",
               {{"min", spec.space.lr_min}, {"max", spec.space.lr_max}, {"scale", "log"}}},
              {"optimizer", optimizers}}},
            {"scheduler",
             {{"algorithm", spec.algorithm},
              {"rung_unit", RungUnitName(spec.asha.unit)},
              {"min_epochs", spec.asha.min_epochs},
              {"reduction_factor", spec.asha.reduction_factor},
              {"rungs", spec.asha.num_rungs},
              {"auto_reason", spec.auto_reason}}},
            {"max_trials", spec.max_trials},
            {"seed", spec.seed},
            {"incumbent_seeds", spec.incumbent_seeds},
            {"momentum", spec.momentum},
            {"grid_lr_points", spec.grid_lr_points}};
  if (spec.asha.unit == RungUnit::kSeconds) {
    j["scheduler"]["min_seconds"] = spec.asha.min_seconds;
    j["scheduler"]["max_epochs"] = spec.asha.max_epochs;
  }
  if (spec.time_budget_s > 0) j["time_budget_s"] = spec.time_budget_s;
  if (!spec.reference_class.empty()) j["reference_class"] = spec.reference_class;
  if (!spec.topology_json.empty()) {
    j["topology"] = json::parse(spec.topology_json, nullptr, /*allow_exceptions=*/false);
  }
  if (spec.asha.rungless) {
    j["scheduler"].erase("rungs");
    j["scheduler"].erase("reduction_factor");
    j["scheduler"]["max_epochs"] = spec.asha.max_epochs;
  }
  if (spec.algorithm == "forecast") j["scheduler"]["sampler"] = spec.forecast_sampler;
  return j;
}

}  // namespace topotune
