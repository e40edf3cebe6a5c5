#include "api/protocol.h"

#include <cmath>

namespace topotune {

std::string EncodeFrame(const nlohmann::json& message) {
  const std::string payload = message.dump();
  const auto n = static_cast<uint32_t>(payload.size());
  std::string frame;
  frame.reserve(4 + payload.size());
  frame.push_back(static_cast<char>((n >> 24) & 0xff));
  frame.push_back(static_cast<char>((n >> 16) & 0xff));
  frame.push_back(static_cast<char>((n >> 8) & 0xff));
  frame.push_back(static_cast<char>(n & 0xff));
  frame += payload;
  return frame;
}

uint32_t DecodeFrameLength(const unsigned char header[4]) {
  return (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) | (uint32_t{header[2]} << 8) |
         uint32_t{header[3]};
}

StatusOr<nlohmann::json> ParseMessage(const std::string& payload) {
  nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("frame is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("frame is not a JSON object");
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return Status::InvalidArgument("frame has no string field 'type'");
  }
  return j;
}

namespace {

// Reads field `key` of object `j` into `out`, or explains what is wrong with it.
template <typename T>
Status Get(const nlohmann::json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::InvalidArgument(std::string("missing field '") + key + "'");
  try {
    *out = it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    return Status::InvalidArgument(std::string("field '") + key +
                                   "' has the wrong type: " + it->type_name());
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(*out)) {
      return Status::InvalidArgument(std::string("field '") + key + "' is not finite");
    }
  }
  return Status::OK();
}

Status RequireObject(const nlohmann::json& j, const char* what) {
  if (!j.is_object()) return Status::InvalidArgument(std::string(what) + " must be an object");
  return Status::OK();
}

}  // namespace

nlohmann::json ToJson(const SegmentSpec& a) {
  return {{"job_id", a.job_id},
          {"trial_id", a.trial_id},
          {"trial_number", a.trial_number},
          {"attempt", a.attempt},
          {"model", a.model},
          {"dataset", ToJson(a.dataset)},
          {"config",
           {{"batch_size", a.config.batch_size},
            {"learning_rate", a.config.learning_rate},
            {"optimizer", OptimizerName(a.config.optimizer)}}},
          {"momentum", a.momentum},
          {"seed", a.seed},
          {"start_epoch", a.start_epoch},
          {"end_epoch", a.end_epoch},
          {"target_accuracy", a.target_accuracy},
          {"checkpoint", a.checkpoint},
          {"train_s_before", a.train_s_before},
          {"max_train_s", a.max_train_s}};
}

StatusOr<SegmentSpec> SegmentSpecFromJson(const nlohmann::json& j) {
  SegmentSpec a;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(j, "assignment"));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "job_id", &a.job_id));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "trial_id", &a.trial_id));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "trial_number", &a.trial_number));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "attempt", &a.attempt));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "model", &a.model));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "momentum", &a.momentum));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "seed", &a.seed));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "start_epoch", &a.start_epoch));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "end_epoch", &a.end_epoch));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "target_accuracy", &a.target_accuracy));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "checkpoint", &a.checkpoint));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "train_s_before", &a.train_s_before));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "max_train_s", &a.max_train_s));
  if (!std::isfinite(a.train_s_before) || a.train_s_before < 0 || !std::isfinite(a.max_train_s) ||
      a.max_train_s < 0) {
    return Status::InvalidArgument("assignment: train_s_before and max_train_s must be >= 0");
  }
  StatusOr<DatasetSpec> dataset = DatasetSpecFromJson(j.value("dataset", nlohmann::json()));
  if (!dataset.ok()) return dataset.status();
  a.dataset = *dataset;
  const auto& c = j.value("config", nlohmann::json());
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(c, "config"));
  TOPOTUNE_RETURN_IF_ERROR(Get(c, "batch_size", &a.config.batch_size));
  TOPOTUNE_RETURN_IF_ERROR(Get(c, "learning_rate", &a.config.learning_rate));
  std::string optimizer;
  TOPOTUNE_RETURN_IF_ERROR(Get(c, "optimizer", &optimizer));
  std::optional<Optimizer> parsed = ParseOptimizer(optimizer);
  if (!parsed) return Status::InvalidArgument("unknown optimizer '" + optimizer + "'");
  a.config.optimizer = *parsed;
  if (a.config.batch_size < 1 || a.start_epoch < 0 || a.end_epoch <= a.start_epoch) {
    return Status::InvalidArgument("assignment has batch_size < 1 or an empty epoch range");
  }
  return a;
}

nlohmann::json ToJson(const CurvePoint& p) {
  return {{"epoch", p.epoch},
          {"samples_seen", p.samples_seen},
          {"train_loss", p.train_loss},
          {"val_accuracy", p.val_accuracy},
          {"compute_s", p.compute_s},
          {"comm_s", p.comm_s},
          {"eval_s", p.eval_s},
          {"wall_s", p.wall_s},
          {"step_ms_p50", p.step_ms_p50},
          {"step_ms_p95", p.step_ms_p95},
          {"peak_memory_bytes", p.peak_memory_bytes},
          {"data_s", p.data_s},
          {"forward_s", p.forward_s},
          {"backward_s", p.backward_s},
          {"optimizer_s", p.optimizer_s}};
}

StatusOr<CurvePoint> CurvePointFromJson(const nlohmann::json& j) {
  CurvePoint p;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(j, "point"));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "epoch", &p.epoch));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "samples_seen", &p.samples_seen));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "train_loss", &p.train_loss));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "val_accuracy", &p.val_accuracy));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "compute_s", &p.compute_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "comm_s", &p.comm_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "eval_s", &p.eval_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "wall_s", &p.wall_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "step_ms_p50", &p.step_ms_p50));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "step_ms_p95", &p.step_ms_p95));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "peak_memory_bytes", &p.peak_memory_bytes));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "data_s", &p.data_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "forward_s", &p.forward_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "backward_s", &p.backward_s));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "optimizer_s", &p.optimizer_s));
  if (p.val_accuracy < 0 || p.val_accuracy > 1) {
    return Status::InvalidArgument("val_accuracy must be in [0, 1]");
  }
  if (p.compute_s < 0 || p.comm_s < 0 || p.eval_s < 0 || p.wall_s < 0) {
    return Status::InvalidArgument("times must be >= 0");
  }
  return p;
}

nlohmann::json ToJson(const DatasetSpec& d) {
  return {{"format", d.format},
          {"path", d.path},
          {"max_train_samples", d.max_train_samples},
          {"max_val_samples", d.max_val_samples},
          {"augment", d.augment}};
}

StatusOr<DatasetSpec> DatasetSpecFromJson(const nlohmann::json& d) {
  DatasetSpec spec;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(d, "dataset"));
  TOPOTUNE_RETURN_IF_ERROR(Get(d, "format", &spec.format));
  TOPOTUNE_RETURN_IF_ERROR(Get(d, "path", &spec.path));
  TOPOTUNE_RETURN_IF_ERROR(Get(d, "max_train_samples", &spec.max_train_samples));
  TOPOTUNE_RETURN_IF_ERROR(Get(d, "max_val_samples", &spec.max_val_samples));
  TOPOTUNE_RETURN_IF_ERROR(Get(d, "augment", &spec.augment));
  return spec;
}

nlohmann::json ToJson(const DeviceProbe& p) {
  nlohmann::json batches = nlohmann::json::array();
  for (const BatchProbe& b : p.batches) {
    batches.push_back({{"batch_size", b.batch_size},
                       {"fits", b.fits},
                       {"step_ms", b.step_ms},
                       {"peak_memory_bytes", b.peak_memory_bytes},
                       {"error", b.error}});
  }
  return {{"model", p.model},
          {"input", p.input},
          {"max_batch_size", p.MaxBatchSize()},
          {"measured_at", p.measured_at},
          {"batches", batches}};
}

StatusOr<DeviceProbe> DeviceProbeFromJson(const nlohmann::json& j) {
  DeviceProbe p;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(j, "probe"));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "model", &p.model));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "input", &p.input));
  auto batches = j.find("batches");
  if (batches == j.end() || !batches->is_array()) {
    return Status::InvalidArgument("probe.batches must be an array");
  }
  for (const nlohmann::json& b : *batches) {
    BatchProbe probe;
    TOPOTUNE_RETURN_IF_ERROR(RequireObject(b, "probe.batches[]"));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "batch_size", &probe.batch_size));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "fits", &probe.fits));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "step_ms", &probe.step_ms));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "peak_memory_bytes", &probe.peak_memory_bytes));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "error", &probe.error));
    if (probe.batch_size < 1 || probe.step_ms < 0) {
      return Status::InvalidArgument("probe.batches[]: batch_size must be >= 1, step_ms >= 0");
    }
    p.batches.push_back(probe);
  }
  return p;
}

nlohmann::json ToJson(const DeviceProfile& d) {
  return {{"kind", d.kind}, {"name", d.name}, {"cores", d.cores}, {"memory_bytes", d.memory_bytes}};
}

StatusOr<DeviceProfile> DeviceProfileFromJson(const nlohmann::json& j) {
  DeviceProfile d;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(j, "device"));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "kind", &d.kind));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "name", &d.name));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "cores", &d.cores));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "memory_bytes", &d.memory_bytes));
  if (d.kind != "cpu" && d.kind != "cuda" && d.kind != "replay") {
    return Status::InvalidArgument("device.kind must be 'cpu', 'cuda' or 'replay', got '" + d.kind +
                                   "'");
  }
  return d;
}

}  // namespace topotune
