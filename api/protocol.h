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

#include "tuner/job_engine.h"
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

// Everything a worker needs to run one trial segment.
struct TrialAssignment {
  int64_t job_id = 0;
  int64_t trial_id = 0;
  int trial_number = 0;
  std::string model;
  DatasetSpec dataset;
  TrialConfig config;
  double momentum = 0.9;
  uint64_t seed = 0;
  int start_epoch = 0;
  int end_epoch = 0;
  double target_accuracy = 1.0;
  std::string checkpoint;
  double train_s_before = 0.0;  ///< the trial's training seconds before this segment
  double max_train_s = 0.0;     ///< > 0: end after the epoch whose total reaches it
};
TrialAssignment MakeTrialAssignment(const Assignment& assignment, const JobSpec& spec);

nlohmann::json ToJson(const TrialAssignment& a);
StatusOr<TrialAssignment> TrialAssignmentFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const CurvePoint& p);
StatusOr<CurvePoint> CurvePointFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DeviceProbe& p);  // without worker_id
StatusOr<DeviceProbe> DeviceProbeFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DatasetSpec& d);
StatusOr<DatasetSpec> DatasetSpecFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const DeviceProfile& d);
StatusOr<DeviceProfile> DeviceProfileFromJson(const nlohmann::json& j);

}  // namespace topotune
