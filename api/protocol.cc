#include "api/protocol.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "api/json_input.h"

namespace topotune {

std::string EncodeFrame(const nlohmann::json& message) {
  const std::string payload = DumpJson(message);
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

StatusOr<nlohmann::json> ParseMessage(std::string_view payload) {
  JsonLimits limits;
  limits.max_bytes = kMaxFrameBytes;
  limits.max_depth = 8;
  // A checkpoint chunk's data is one long string; other strings are capped per field.
  limits.max_string_bytes = kMaxFrameBytes;
  StatusOr<nlohmann::json> parsed = ParseUntrustedJson(payload, limits);
  if (!parsed.ok())
    return Status::InvalidArgument("frame is not valid JSON: " + parsed.status().message());
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return Status::InvalidArgument("frame is not a JSON object");
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return Status::InvalidArgument("frame has no string field 'type'");
  }
  return parsed;
}

Status FrameReader::Append(const char* data, size_t size) {
  if (failed_) return Status::InvalidArgument("the frame stream already failed");
  buffer_.append(data, size);
  // Check every complete header now, so a bad length is refused before its bytes arrive.
  size_t at = 0;
  while (buffer_.size() - at >= 4) {
    const uint32_t n = DecodeFrameLength(reinterpret_cast<const unsigned char*>(&buffer_[at]));
    if (n == 0 || n > kMaxFrameBytes) {
      failed_ = true;
      return Status::InvalidArgument("frame of " + std::to_string(n) +
                                     " bytes: frames must be 1 to " +
                                     std::to_string(kMaxFrameBytes) + " bytes");
    }
    if (buffer_.size() - at - 4 < n) break;
    at += 4 + n;
  }
  return Status::OK();
}

std::optional<std::string> FrameReader::Next() {
  if (failed_ || buffer_.size() < 4) return std::nullopt;
  const uint32_t n = DecodeFrameLength(reinterpret_cast<const unsigned char*>(buffer_.data()));
  if (buffer_.size() - 4 < n) return std::nullopt;
  std::string payload = buffer_.substr(4, n);
  buffer_.erase(0, 4 + n);
  if (buffer_.capacity() > 64 * 1024 && buffer_.size() < buffer_.capacity() / 4) {
    buffer_.shrink_to_fit();  // one big frame must not pin its memory
  }
  return payload;
}

bool ValidLinkHost(const std::string& host) {
  return !host.empty() && host.size() <= 45 && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':';
  });
}

bool ValidWorkerId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

namespace {

constexpr size_t kMaxTextBytes = 4096;  // a message, name or key in a frame

// Reads field `key` of object `j` into `out`, or explains what is wrong with it: missing,
// the wrong JSON type, an integer out of T's range, a number that is not finite, or a
// string over kMaxTextBytes.
template <typename T>
Status Get(const nlohmann::json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::InvalidArgument(std::string("missing field '") + key + "'");
  const auto wrong = [&](const char* want) {
    return Status::InvalidArgument(std::string("field '") + key + "' must be " + want + ", got " +
                                   it->type_name());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return wrong("true or false");
    *out = it->template get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return wrong("an integer");
    if (it->is_number_unsigned()) {
      const uint64_t v = it->template get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return Status::InvalidArgument(std::string("field '") + key + "' is out of range");
      }
      *out = static_cast<T>(v);
    } else {
      const int64_t v = it->template get<int64_t>();
      if constexpr (std::is_unsigned_v<T>) {
        if (v < 0) return Status::InvalidArgument(std::string("field '") + key + "' is negative");
      } else {
        if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
          return Status::InvalidArgument(std::string("field '") + key + "' is out of range");
        }
      }
      *out = static_cast<T>(v);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number()) return wrong("a number");
    *out = it->template get<T>();
    if (!std::isfinite(*out)) {
      return Status::InvalidArgument(std::string("field '") + key + "' is not finite");
    }
  } else {
    static_assert(std::is_same_v<T, std::string>, "Get reads bool, integers, numbers, strings");
    if (!it->is_string()) return wrong("a string");
    const std::string& v = it->template get_ref<const std::string&>();
    if (v.size() > kMaxTextBytes) {
      return Status::InvalidArgument(std::string("field '") + key + "' is longer than " +
                                     std::to_string(kMaxTextBytes) + " bytes");
    }
    *out = v;
  }
  return Status::OK();
}

// A link test's nonce: exactly kLinkNonceChars lowercase hex digits.
Status GetNonce(const nlohmann::json& j, std::string* out) {
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "nonce", out));
  if (out->size() != kLinkNonceChars || !std::all_of(out->begin(), out->end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return Status::InvalidArgument("field 'nonce' must be " + std::to_string(kLinkNonceChars) +
                                   " lowercase hex digits");
  }
  return Status::OK();
}

// A link test's byte count: 1..kMaxLinkTestBytes.
Status GetLinkBytes(const nlohmann::json& j, int64_t* out) {
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "bytes", out));
  if (*out < 1 || *out > kMaxLinkTestBytes) {
    return Status::InvalidArgument("field 'bytes' must be in [1, " +
                                   std::to_string(kMaxLinkTestBytes) + "]");
  }
  return Status::OK();
}

Status GetPort(const nlohmann::json& j, int* out) {
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "port", out));
  if (*out < 1 || *out > 65535) {
    return Status::InvalidArgument("field 'port' must be in [1, 65535]");
  }
  return Status::OK();
}

// An echo's pad: a string of at most kMaxEchoPadBytes (longer than Get allows a text).
Status GetPad(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::InvalidArgument(std::string("missing field '") + key + "'");
  if (!it->is_string()) {
    return Status::InvalidArgument(std::string("field '") + key + "' must be a string, got " +
                                   it->type_name());
  }
  const std::string& v = it->get_ref<const std::string&>();
  if (v.size() > kMaxEchoPadBytes) {
    return Status::InvalidArgument(std::string("field '") + key + "' is over " +
                                   std::to_string(kMaxEchoPadBytes) + " bytes");
  }
  *out = v;
  return Status::OK();
}

// Prefixes a field error with the frame it is in: "hello.device: ...".
Status In(const std::string& where, const Status& s) {
  if (s.ok()) return s;
  return Status(s.code(), where + ": " + s.message());
}

// The object field `key` of `j`, or an error naming it.
StatusOr<const nlohmann::json*> Object(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return Status::InvalidArgument(std::string("missing field '") + key + "'");
  if (!it->is_object()) {
    return Status::InvalidArgument(std::string("field '") + key + "' must be an object, got " +
                                   it->type_name());
  }
  return &*it;
}

Status RequireObject(const nlohmann::json& j, const char* what) {
  if (!j.is_object()) return Status::InvalidArgument(std::string(what) + " must be an object");
  return Status::OK();
}

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// RFC 4648 base64 with padding.
std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(bytes[i + 2])};
    for (int shift = 18; shift >= 0; shift -= 6) out.push_back(kBase64Alphabet[(v >> shift) & 63]);
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    if (i + 1 < bytes.size()) v |= uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kBase64Alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// Strict base64: a multiple of 4 characters of the alphabet, '=' only as final padding.
std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int padding = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      int digit = -1;
      if (c >= 'A' && c <= 'Z') digit = c - 'A';
      if (c >= 'a' && c <= 'z') digit = c - 'a' + 26;
      if (c >= '0' && c <= '9') digit = c - '0' + 52;
      if (c == '+') digit = 62;
      if (c == '/') digit = 63;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++padding;
        digit = 0;
      } else if (digit < 0 || padding > 0) {
        return std::nullopt;
      }
      v = (v << 6) | static_cast<uint32_t>(digit);
    }
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    if (padding < 2) out.push_back(static_cast<char>((v >> 8) & 0xff));
    if (padding < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

bool IsLowerHexDigest(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// The fields of a checkpoint frame, either direction.
StatusOr<CheckpointChunk> CheckpointChunkFromJson(const nlohmann::json& m) {
  CheckpointChunk c;
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "trial_id", &c.trial_id));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "attempt", &c.attempt));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "stem", &c.stem));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "epoch", &c.epoch));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "offset", &c.offset));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "total_bytes", &c.total_bytes));
  TOPOTUNE_RETURN_IF_ERROR(Get(m, "sha256", &c.sha256));
  if (!ValidCheckpointStem(c.stem)) {
    return Status::InvalidArgument("field 'stem' must be 1-128 of [A-Za-z0-9_-]");
  }
  if (c.epoch < 1 || c.epoch > 100000 || c.offset < 0 || c.total_bytes < 1 ||
      c.total_bytes > (int64_t{1} << 40) || c.offset >= c.total_bytes) {
    return Status::InvalidArgument(
        "needs epoch in [1, 100000] and 0 <= offset < total_bytes <= 2^40");
  }
  auto data = m.find("data");
  if (data == m.end() || !data->is_string()) {
    return Status::InvalidArgument("field 'data' must be a base64 string");
  }
  const std::string& text = data->get_ref<const std::string&>();
  if (text.size() > (kCheckpointChunkBytes + 2) / 3 * 4) {
    return Status::InvalidArgument("field 'data' holds more than " +
                                   std::to_string(kCheckpointChunkBytes) + " bytes");
  }
  std::optional<std::string> bytes = Base64Decode(text);
  if (!bytes || bytes->empty()) {
    return Status::InvalidArgument("field 'data' is not non-empty base64");
  }
  c.data = std::move(*bytes);
  if (c.offset + static_cast<int64_t>(c.data.size()) > c.total_bytes) {
    return Status::InvalidArgument("field 'data' runs past total_bytes");
  }
  if (c.last() ? !IsLowerHexDigest(c.sha256) : !c.sha256.empty()) {
    return Status::InvalidArgument(
        "field 'sha256' must be 64 lowercase hex digits in the last chunk and empty before");
  }
  return c;
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
  if (!ValidCheckpointStem(a.checkpoint)) {
    return Status::InvalidArgument("assignment.checkpoint must be 1-128 of [A-Za-z0-9_-]");
  }
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
  if (a.config.batch_size < 1 || a.config.batch_size > 65536 || a.start_epoch < 0 ||
      a.end_epoch <= a.start_epoch || a.end_epoch > 100000) {
    return Status::InvalidArgument(
        "assignment needs batch_size in [1, 65536] and 0 <= start_epoch < end_epoch <= 100000");
  }
  if (!(a.config.learning_rate > 0) || a.momentum < 0 || a.momentum >= 1) {
    return Status::InvalidArgument("assignment needs learning_rate > 0 and momentum in [0, 1)");
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
  if (p.epoch < 1 || p.epoch > 100000)
    return Status::InvalidArgument("epoch must be in [1, 100000]");
  if (p.val_accuracy < 0 || p.val_accuracy > 1) {
    return Status::InvalidArgument("val_accuracy must be in [0, 1]");
  }
  constexpr double kMaxSeconds = 1e7;  // 115 days: no epoch takes longer
  for (double t : {p.compute_s, p.comm_s, p.eval_s, p.wall_s, p.data_s, p.forward_s, p.backward_s,
                   p.optimizer_s}) {
    if (t < 0 || t > kMaxSeconds) return Status::InvalidArgument("times must be in [0, 1e7] s");
  }
  if (p.samples_seen < 0 || p.peak_memory_bytes < 0 || p.step_ms_p50 < 0 || p.step_ms_p95 < 0) {
    return Status::InvalidArgument("samples_seen, peak_memory_bytes and step times must be >= 0");
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
                       {"forward_ms", b.forward_ms},
                       {"backward_ms", b.backward_ms},
                       {"optimizer_ms", b.optimizer_ms},
                       {"adam_optimizer_ms", b.adam_optimizer_ms},
                       {"adam_does_not_fit", b.adam_does_not_fit},
                       {"timed_s", b.timed_s},
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
  if (batches->size() > 64) return Status::InvalidArgument("probe.batches has over 64 entries");
  for (const nlohmann::json& b : *batches) {
    BatchProbe probe;
    TOPOTUNE_RETURN_IF_ERROR(RequireObject(b, "probe.batches[]"));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "batch_size", &probe.batch_size));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "fits", &probe.fits));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "step_ms", &probe.step_ms));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "peak_memory_bytes", &probe.peak_memory_bytes));
    TOPOTUNE_RETURN_IF_ERROR(Get(b, "error", &probe.error));
    // The split of the step, from workers of protocol 3 on, Adam's optimizer part and the
    // seconds timed (absent: 0, not measured or not reported).
    for (const auto& [key, field] :
         {std::pair<const char*, double*>{"forward_ms", &probe.forward_ms},
          {"backward_ms", &probe.backward_ms},
          {"optimizer_ms", &probe.optimizer_ms},
          {"adam_optimizer_ms", &probe.adam_optimizer_ms},
          {"timed_s", &probe.timed_s}}) {
      if (b.contains(key)) TOPOTUNE_RETURN_IF_ERROR(Get(b, key, field));
    }
    // Optional: absent from workers that do not check, where Adam fits as SGD does.
    if (b.contains("adam_does_not_fit")) {
      TOPOTUNE_RETURN_IF_ERROR(Get(b, "adam_does_not_fit", &probe.adam_does_not_fit));
    }
    if (probe.batch_size < 1 || probe.batch_size > 65536 || probe.step_ms < 0 ||
        probe.peak_memory_bytes < 0 || probe.forward_ms < 0 || probe.backward_ms < 0 ||
        probe.optimizer_ms < 0 || probe.adam_optimizer_ms < 0) {
      return Status::InvalidArgument(
          "probe.batches[]: batch_size must be in [1, 65536], step_ms, its parts "
          "(forward_ms, backward_ms, optimizer_ms), adam_optimizer_ms and "
          "peak_memory_bytes >= 0");
    }
    if (!(probe.timed_s >= 0 && probe.timed_s <= 86400)) {
      return Status::InvalidArgument("probe.batches[]: timed_s must be in [0, 86400] seconds");
    }
    p.batches.push_back(probe);
  }
  return p;
}

nlohmann::json ToJson(const DeviceProfile& d) {
  return {{"kind", d.kind},          {"name", d.name},
          {"cores", d.cores},        {"memory_bytes", d.memory_bytes},
          {"class", d.device_class}, {"site", d.site}};
}

StatusOr<DeviceProfile> DeviceProfileFromJson(const nlohmann::json& j) {
  DeviceProfile d;
  TOPOTUNE_RETURN_IF_ERROR(RequireObject(j, "device"));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "kind", &d.kind));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "name", &d.name));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "cores", &d.cores));
  TOPOTUNE_RETURN_IF_ERROR(Get(j, "memory_bytes", &d.memory_bytes));
  if (d.kind != "cpu" && d.kind != "cuda" && d.kind != "replay") {
    return Status::InvalidArgument("device.kind must be 'cpu', 'cuda' or 'replay', got '" +
                                   SafeText(d.kind, 20) + "'");
  }
  if (d.name.size() > 256) return Status::InvalidArgument("device.name is longer than 256 bytes");
  // Optional (workers before 2026-12-03 do not send them): names as worker ids are.
  for (const auto& [key, field] : {std::pair<const char*, std::string*>{"class", &d.device_class},
                                   std::pair<const char*, std::string*>{"site", &d.site}}) {
    if (!j.contains(key)) continue;
    TOPOTUNE_RETURN_IF_ERROR(Get(j, key, field));
    if (!field->empty() && !ValidWorkerId(*field)) {
      return Status::InvalidArgument(std::string("device.") + key +
                                     " must be 1-64 of A-Z a-z 0-9 . _ -, got '" +
                                     SafeText(*field, 64) + "'");
    }
  }
  if (d.cores < 0 || d.cores > 65536)
    return Status::InvalidArgument("device.cores must be in [0, 65536]");
  if (d.memory_bytes < 0 || d.memory_bytes > (int64_t{1} << 50)) {
    return Status::InvalidArgument("device.memory_bytes must be in [0, 2^50]");
  }
  return d;
}

StatusOr<WorkerFrame> DecodeWorkerFrame(std::string_view payload) {
  StatusOr<nlohmann::json> parsed = ParseMessage(payload);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& m = *parsed;
  const std::string& type = m["type"].get_ref<const std::string&>();
  if (type == "hello") {
    HelloFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("hello", Get(m, "protocol", &f.protocol)));
    TOPOTUNE_RETURN_IF_ERROR(In("hello", Get(m, "worker_id", &f.worker_id)));
    if (!ValidWorkerId(f.worker_id)) {
      return Status::InvalidArgument(
          "hello.worker_id must be 1-64 characters of letters, digits, '-', '_' or '.'");
    }
    if (m.contains("token")) TOPOTUNE_RETURN_IF_ERROR(In("hello", Get(m, "token", &f.token)));
    StatusOr<const nlohmann::json*> device = Object(m, "device");
    if (!device.ok()) return In("hello", device.status());
    StatusOr<DeviceProfile> profile = DeviceProfileFromJson(**device);
    if (!profile.ok()) return In("hello", profile.status());
    f.device = *profile;
    return WorkerFrame(std::move(f));
  }
  if (type == "heartbeat") return WorkerFrame(HeartbeatFrame{});
  if (type == "progress") {
    ProgressFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("progress", Get(m, "trial_id", &f.trial_id)));
    TOPOTUNE_RETURN_IF_ERROR(In("progress", Get(m, "attempt", &f.attempt)));
    StatusOr<const nlohmann::json*> point = Object(m, "point");
    if (!point.ok()) return In("progress", point.status());
    StatusOr<CurvePoint> p = CurvePointFromJson(**point);
    if (!p.ok()) return In("progress.point", p.status());
    f.point = *p;
    return WorkerFrame(std::move(f));
  }
  if (type == "result") {
    ResultFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("result", Get(m, "trial_id", &f.result.trial_id)));
    TOPOTUNE_RETURN_IF_ERROR(In("result", Get(m, "attempt", &f.result.attempt)));
    std::string status;
    TOPOTUNE_RETURN_IF_ERROR(In("result", Get(m, "status", &status)));
    std::optional<SegmentStatus> parsed_status = ParseSegmentStatus(status);
    if (!parsed_status) {
      return Status::InvalidArgument(
          "result.status must be completed, stopped, infeasible or failed, got '" +
          SafeText(status, 20) + "'");
    }
    f.result.status = *parsed_status;
    if (m.contains("message"))
      TOPOTUNE_RETURN_IF_ERROR(In("result", Get(m, "message", &f.result.message)));
    return WorkerFrame(std::move(f));
  }
  if (type == "probe_result") {
    ProbeResultFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("probe_result", Get(m, "key", &f.key)));
    if (m.contains("error")) {
      TOPOTUNE_RETURN_IF_ERROR(In("probe_result", Get(m, "error", &f.error)));
      if (f.error.empty()) return Status::InvalidArgument("probe_result.error must not be empty");
      return WorkerFrame(std::move(f));
    }
    StatusOr<const nlohmann::json*> probe = Object(m, "probe");
    if (!probe.ok()) return In("probe_result", probe.status());
    StatusOr<DeviceProbe> p = DeviceProbeFromJson(**probe);
    if (!p.ok()) return In("probe_result", p.status());
    f.probe = *p;
    return WorkerFrame(std::move(f));
  }
  if (type == "checkpoint") {
    StatusOr<CheckpointChunk> chunk = CheckpointChunkFromJson(m);
    if (!chunk.ok()) return In("checkpoint", chunk.status());
    return WorkerFrame(CheckpointFrame{std::move(*chunk)});
  }
  if (type == "echo_reply") {
    EchoReplyFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("echo_reply", Get(m, "id", &f.id)));
    TOPOTUNE_RETURN_IF_ERROR(In("echo_reply", GetPad(m, "pad", &f.pad)));
    return WorkerFrame(std::move(f));
  }
  if (type == "link_listening") {
    LinkListeningFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("link_listening", Get(m, "id", &f.id)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_listening", GetPort(m, &f.port)));
    return WorkerFrame(f);
  }
  if (type == "link_report") {
    LinkReportFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("link_report", Get(m, "id", &f.id)));
    if (m.contains("error")) {
      TOPOTUNE_RETURN_IF_ERROR(In("link_report", Get(m, "error", &f.error)));
      if (f.error.empty()) return Status::InvalidArgument("link_report.error must not be empty");
      return WorkerFrame(std::move(f));
    }
    TOPOTUNE_RETURN_IF_ERROR(In("link_report", GetLinkBytes(m, &f.bytes)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_report", Get(m, "seconds", &f.seconds)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_report", Get(m, "rtt_s", &f.rtt_s)));
    if (!(f.seconds > 0 && f.seconds <= 3600) || !(f.rtt_s >= 0 && f.rtt_s <= 3600)) {
      return Status::InvalidArgument(
          "link_report needs seconds in (0, 3600] and rtt_s in [0, 3600]");
    }
    return WorkerFrame(std::move(f));
  }
  return Status::InvalidArgument("unknown frame type '" + SafeText(type, 40) + "'");
}

StatusOr<ControllerFrame> DecodeControllerFrame(std::string_view payload) {
  StatusOr<nlohmann::json> parsed = ParseMessage(payload);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& m = *parsed;
  const std::string& type = m["type"].get_ref<const std::string&>();
  if (type == "welcome") {
    WelcomeFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("welcome", Get(m, "heartbeat_s", &f.heartbeat_s)));
    TOPOTUNE_RETURN_IF_ERROR(In("welcome", Get(m, "lease_s", &f.lease_s)));
    if (f.heartbeat_s < 0.01 || f.heartbeat_s > 3600 || f.lease_s <= f.heartbeat_s) {
      return Status::InvalidArgument("welcome needs heartbeat_s in [0.01, 3600] below lease_s");
    }
    return ControllerFrame(f);
  }
  if (type == "assign") {
    StatusOr<const nlohmann::json*> a = Object(m, "assignment");
    if (!a.ok()) return In("assign", a.status());
    StatusOr<SegmentSpec> segment = SegmentSpecFromJson(**a);
    if (!segment.ok()) return In("assign", segment.status());
    return ControllerFrame(AssignFrame{*segment});
  }
  if (type == "probe") {
    ProbeFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("probe", Get(m, "key", &f.key)));
    TOPOTUNE_RETURN_IF_ERROR(In("probe", Get(m, "model", &f.model)));
    StatusOr<const nlohmann::json*> d = Object(m, "dataset");
    if (!d.ok()) return In("probe", d.status());
    StatusOr<DatasetSpec> dataset = DatasetSpecFromJson(**d);
    if (!dataset.ok()) return In("probe", dataset.status());
    f.dataset = *dataset;
    auto sizes = m.find("batch_sizes");
    if (sizes == m.end() || !sizes->is_array() || sizes->size() > 64) {
      return Status::InvalidArgument("probe.batch_sizes must be an array of at most 64 integers");
    }
    for (const nlohmann::json& b : *sizes) {
      if (!b.is_number_integer() || b.get<int64_t>() < 1 || b.get<int64_t>() > 65536) {
        return Status::InvalidArgument("probe.batch_sizes must hold integers in [1, 65536]");
      }
      f.batch_sizes.push_back(b.get<int>());
    }
    return ControllerFrame(std::move(f));
  }
  if (type == "stop") {
    StopFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("stop", Get(m, "trial_id", &f.trial_id)));
    if (m.contains("reason")) TOPOTUNE_RETURN_IF_ERROR(In("stop", Get(m, "reason", &f.reason)));
    return ControllerFrame(std::move(f));
  }
  if (type == "heartbeat") return ControllerFrame(HeartbeatFrame{});
  if (type == "error") {
    ErrorFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("error", Get(m, "message", &f.message)));
    if (m.contains("code")) TOPOTUNE_RETURN_IF_ERROR(In("error", Get(m, "code", &f.code)));
    if (m.contains("fatal")) TOPOTUNE_RETURN_IF_ERROR(In("error", Get(m, "fatal", &f.fatal)));
    return ControllerFrame(std::move(f));
  }
  if (type == "checkpoint") {
    StatusOr<CheckpointChunk> chunk = CheckpointChunkFromJson(m);
    if (!chunk.ok()) return In("checkpoint", chunk.status());
    return ControllerFrame(CheckpointFrame{std::move(*chunk)});
  }
  if (type == "echo") {
    EchoFrame f;
    int64_t reply_bytes = 0;
    TOPOTUNE_RETURN_IF_ERROR(In("echo", Get(m, "id", &f.id)));
    TOPOTUNE_RETURN_IF_ERROR(In("echo", GetPad(m, "pad", &f.pad)));
    TOPOTUNE_RETURN_IF_ERROR(In("echo", Get(m, "reply_bytes", &reply_bytes)));
    if (reply_bytes < 0 || reply_bytes > kMaxEchoPadBytes) {
      return Status::InvalidArgument("echo.reply_bytes must be in [0, " +
                                     std::to_string(kMaxEchoPadBytes) + "]");
    }
    f.reply_bytes = static_cast<uint32_t>(reply_bytes);
    return ControllerFrame(std::move(f));
  }
  if (type == "link_listen") {
    LinkListenFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("link_listen", Get(m, "id", &f.id)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_listen", GetNonce(m, &f.nonce)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_listen", GetLinkBytes(m, &f.bytes)));
    return ControllerFrame(std::move(f));
  }
  if (type == "link_send") {
    LinkSendFrame f;
    TOPOTUNE_RETURN_IF_ERROR(In("link_send", Get(m, "id", &f.id)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_send", GetNonce(m, &f.nonce)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_send", Get(m, "host", &f.host)));
    // An address literal (the agent parses it, and never resolves a name).
    if (!ValidLinkHost(f.host)) {
      return Status::InvalidArgument("link_send.host must be an IP address");
    }
    TOPOTUNE_RETURN_IF_ERROR(In("link_send", GetPort(m, &f.port)));
    TOPOTUNE_RETURN_IF_ERROR(In("link_send", GetLinkBytes(m, &f.bytes)));
    return ControllerFrame(std::move(f));
  }
  return Status::InvalidArgument("unknown frame type '" + SafeText(type, 40) + "'");
}

ErrorFrame ErrorFrameOf(const Status& status) {
  ErrorFrame f;
  f.code = Status::CodeName(status.code());
  f.message = SafeText(status.message(), 1000);
  f.fatal = status.code() == Status::Code::kUnauthenticated ||
            status.code() == Status::Code::kPermissionDenied;
  return f;
}

ErrorFrame ProtocolVersionError(int got) {
  return {"PROTOCOL_VERSION",
          "this controller speaks protocols " + std::to_string(kMinProtocolVersion) + " to " +
              std::to_string(kProtocolVersion) + ", got " + std::to_string(got),
          true};
}

nlohmann::json ToJson(const HelloFrame& f) {
  return {{"type", "hello"},
          {"protocol", f.protocol},
          {"worker_id", f.worker_id},
          {"token", f.token},
          {"device", ToJson(f.device)}};
}

nlohmann::json ToJson(const ProgressFrame& f) {
  return {{"type", "progress"},
          {"trial_id", f.trial_id},
          {"attempt", f.attempt},
          {"point", ToJson(f.point)}};
}

nlohmann::json ToJson(const ResultFrame& f) {
  return {{"type", "result"},
          {"trial_id", f.result.trial_id},
          {"attempt", f.result.attempt},
          {"status", SegmentStatusName(f.result.status)},
          {"message", f.result.message}};
}

nlohmann::json ToJson(const ProbeResultFrame& f) {
  nlohmann::json j = {{"type", "probe_result"}, {"key", f.key}};
  if (f.probe) {
    j["probe"] = ToJson(*f.probe);
  } else {
    j["error"] = f.error.empty() ? "probe failed" : f.error;
  }
  return j;
}

nlohmann::json ToJson(const WelcomeFrame& f) {
  return {{"type", "welcome"}, {"heartbeat_s", f.heartbeat_s}, {"lease_s", f.lease_s}};
}

nlohmann::json ToJson(const ProbeFrame& f) {
  return {{"type", "probe"},
          {"key", f.key},
          {"model", f.model},
          {"dataset", ToJson(f.dataset)},
          {"batch_sizes", f.batch_sizes}};
}

nlohmann::json ToJson(const StopFrame& f) {
  return {{"type", "stop"}, {"trial_id", f.trial_id}, {"reason", f.reason}};
}

nlohmann::json ToJson(const ErrorFrame& f) {
  return {{"type", "error"}, {"code", f.code}, {"message", f.message}, {"fatal", f.fatal}};
}

nlohmann::json ToJson(const CheckpointFrame& f) {
  const CheckpointChunk& c = f.chunk;
  return {{"type", "checkpoint"},
          {"trial_id", c.trial_id},
          {"attempt", c.attempt},
          {"stem", c.stem},
          {"epoch", c.epoch},
          {"offset", c.offset},
          {"total_bytes", c.total_bytes},
          {"data", Base64Encode(c.data)},
          {"sha256", c.sha256}};
}

nlohmann::json ToJson(const EchoFrame& f) {
  return {{"type", "echo"}, {"id", f.id}, {"pad", f.pad}, {"reply_bytes", f.reply_bytes}};
}

nlohmann::json ToJson(const EchoReplyFrame& f) {
  return {{"type", "echo_reply"}, {"id", f.id}, {"pad", f.pad}};
}

nlohmann::json ToJson(const LinkListenFrame& f) {
  return {{"type", "link_listen"}, {"id", f.id}, {"nonce", f.nonce}, {"bytes", f.bytes}};
}

nlohmann::json ToJson(const LinkSendFrame& f) {
  return {{"type", "link_send"}, {"id", f.id},     {"nonce", f.nonce},
          {"host", f.host},      {"port", f.port}, {"bytes", f.bytes}};
}

nlohmann::json ToJson(const LinkListeningFrame& f) {
  return {{"type", "link_listening"}, {"id", f.id}, {"port", f.port}};
}

nlohmann::json ToJson(const LinkReportFrame& f) {
  if (!f.error.empty()) return {{"type", "link_report"}, {"id", f.id}, {"error", f.error}};
  return {{"type", "link_report"},
          {"id", f.id},
          {"bytes", f.bytes},
          {"seconds", f.seconds},
          {"rtt_s", f.rtt_s}};
}

nlohmann::json HeartbeatJson() { return {{"type", "heartbeat"}}; }

}  // namespace topotune
