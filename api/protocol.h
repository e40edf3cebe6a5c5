#pragma once

// The worker protocol of DESIGN.md: length-prefixed JSON frames over one TCP connection.
// A frame is a 4-byte big-endian payload length and a UTF-8 JSON object with a string
// "type". Shared by the controller's gateway and the worker agent.
//
//   worker -> controller: hello {worker_id, device, protocol}, heartbeat {},
//                         progress {trial_id, point}, result {trial_id, status, message},
//                         probe_result {key, probe} or {key, error}
//   controller -> worker: welcome {heartbeat_s, lease_s}, assign {assignment},
//                         probe {key, model, dataset, batch_sizes},
//                         stop {trial_id, reason}, heartbeat {}, error {message}

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tuner/segment.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

constexpr int kProtocolVersion = 1;
constexpr uint32_t kMaxFrameBytes = 1u << 20;  ///< frames over 1 MiB are refused

// Header plus payload, ready to write.
std::string EncodeFrame(const nlohmann::json& message);
// The payload length a 4-byte header announces.
uint32_t DecodeFrameLength(const unsigned char header[4]);
// Parses a payload: a JSON object with a string "type", or InvalidArgument saying why not.
StatusOr<nlohmann::json> ParseMessage(const std::string& payload);

nlohmann::json ToJson(const SegmentSpec& a);
StatusOr<SegmentSpec> SegmentSpecFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const CurvePoint& p);
StatusOr<CurvePoint> CurvePointFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DeviceProbe& p);  // without worker_id
StatusOr<DeviceProbe> DeviceProbeFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DatasetSpec& d);
StatusOr<DatasetSpec> DatasetSpecFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DeviceProfile& d);
StatusOr<DeviceProfile> DeviceProfileFromJson(const nlohmann::json& j);

}  // namespace topotune
