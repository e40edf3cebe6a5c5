#pragma once

// The worker protocol of DESIGN.md: length-prefixed JSON frames over one TCP connection.
// A frame is a 4-byte big-endian payload length and a UTF-8 JSON object with a string
// "type". Shared by the controller's gateway and the worker agent. Every frame is decoded
// into a typed struct, with every field type- and range-checked, before it is used.
//
//   worker -> controller: hello {protocol, worker_id, token, device}, heartbeat {},
//                         progress {trial_id, attempt, point},
//                         result {trial_id, attempt, status, message},
//                         probe_result {key, probe} or {key, error},
//                         checkpoint {chunk}, echo_reply {id, pad},
//                         link_listening {id, port}, link_report {id, bytes, seconds,
//                         rtt_s} or {id, error}
//   controller -> worker: welcome {heartbeat_s, lease_s}, assign {assignment},
//                         checkpoint {chunk}, echo {id, pad, reply_bytes},
//                         link_listen {id, nonce, bytes}, link_send {id, nonce, host, port,
//                         bytes},
//                         probe {key, model, dataset, batch_sizes},
//                         stop {trial_id, reason}, heartbeat {},
//                         error {code, message, fatal}
//
// Checkpoints travel as a run of "checkpoint" frames, one chunk each (tuner/checkpoint_store.h):
// a worker uploads the checkpoint its segment wrote before that segment's result, and the
// controller sends a checkpoint the next segment resumes from before that segment's assign.
// A chunk is {trial_id, attempt, stem, epoch, offset, total_bytes, data (base64), sha256
// (of the whole file, in the last chunk only)}.
//
// Echo (protocol 3) measures the link: the controller sends "echo" with `pad` bytes and
// asks for `reply_bytes`; the worker answers at once with "echo_reply" carrying the same id
// and a pad of exactly reply_bytes (both at most kMaxEchoPadBytes). Small echoes time the
// round trip; a large pad one way times that direction's throughput. A controller speaks
// protocols kMinProtocolVersion..kProtocolVersion and sends echoes only to workers of 3 on.
//
// A link test (protocol 4) times a direct transfer between two workers at different sites.
// The controller sends "link_listen" to one: it listens on a new port of the address it
// reaches the controller from, answers "link_listening" with the port, and accepts, within
// kLinkTestTimeoutS, one connection that opens with the test's nonce (32 hex digits, fresh
// per test; a connection with another, or without one after 5 s, is closed, at most
// kLinkTestMaxAttempts of them, taken one at a time). The controller then sends
// "link_send" to the other, with the address it sees the listener at: it connects and
// sends the nonce; the listener answers one byte (go); the sender times a one-byte round
// trip, then sends `bytes` bytes (at most kMaxLinkTestBytes) and waits for a one-byte
// acknowledgement, which the listener sends once it has read them all
// (workers/link_test.h). Both answer "link_report": the sender with the seconds from its
// first byte to the acknowledgement and the round trip, the listener with the seconds from
// the first byte to the last; or with an error.
//
// An error frame with "fatal": true means the worker must not retry: its protocol version
// or its token was refused (codes PROTOCOL_VERSION, UNAUTHENTICATED, PERMISSION_DENIED).
// Any other error is the controller's or the connection's, and the worker reconnects.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tuner/checkpoint_store.h"
#include "tuner/segment.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

constexpr int kProtocolVersion = 4;     ///< 2: checkpoints, per-epoch names; 3: echo; 4: link test
constexpr int kMinProtocolVersion = 2;  ///< the oldest a controller still accepts
constexpr uint32_t kMaxEchoPadBytes = 256u << 10;
constexpr uint32_t kMaxFrameBytes = 1u << 20;  ///< frames over 1 MiB are refused
constexpr int64_t kMaxLinkTestBytes = int64_t{64} << 20;
constexpr size_t kLinkNonceChars = 32;
constexpr double kLinkTestTimeoutS = 60.0;
constexpr int kLinkTestMaxAttempts = 64;

// Header plus payload, ready to write. Never throws (invalid UTF-8 becomes U+FFFD).
std::string EncodeFrame(const nlohmann::json& message);
// The payload length a 4-byte header announces.
uint32_t DecodeFrameLength(const unsigned char header[4]);
// Parses a payload: a JSON object with a string "type" (nesting, size and UTF-8 checked as
// ParseUntrustedJson does), or InvalidArgument saying why not.
StatusOr<nlohmann::json> ParseMessage(std::string_view payload);

// Splits a byte stream into frame payloads. Memory grows only with the bytes that arrived
// (never with what a header announces), up to 4 + kMaxFrameBytes. Not thread-safe.
class FrameReader {
 public:
  // Adds bytes from the stream. InvalidArgument once a header announces a frame of 0 or
  // more than kMaxFrameBytes bytes; the reader is then unusable.
  Status Append(const char* data, size_t size);
  // The next complete payload, if one has arrived.
  std::optional<std::string> Next();
  // Whether a frame has begun (header or part of a payload) and is not yet complete.
  bool InFrame() const { return !buffer_.empty(); }
  size_t buffered_bytes() const { return buffer_.size(); }

 private:
  std::string buffer_;  // bytes of the frame(s) not yet returned
  bool failed_ = false;
};

// Frames from a worker.
struct HelloFrame {
  int protocol = 0;
  std::string worker_id;  ///< 1-64 of [A-Za-z0-9._-]
  std::string token;      ///< the worker's bearer token; empty when it has none
  DeviceProfile device;
};
struct HeartbeatFrame {};
struct ProgressFrame {
  int64_t trial_id = 0;
  int attempt = 0;
  CurvePoint point;
};
struct ResultFrame {
  SegmentResult result;
};
struct ProbeResultFrame {
  std::string key;
  std::optional<DeviceProbe> probe;  ///< set when the probe ran
  std::string error;                 ///< why it did not, otherwise
};
// A chunk of a checkpoint file, in either direction.
struct CheckpointFrame {
  CheckpointChunk chunk;
};
struct EchoReplyFrame {
  int64_t id = 0;
  std::string pad;  ///< exactly the reply_bytes asked for
};
struct LinkListeningFrame {
  int64_t id = 0;
  int port = 0;  ///< 1-65535
};
struct LinkReportFrame {
  int64_t id = 0;
  int64_t bytes = 0;     ///< transferred, nonce excluded
  double seconds = 0.0;  ///< see the header; > 0
  double rtt_s = 0.0;    ///< the sender's one-byte round trip; 0 from the listener
  std::string error;     ///< set: the test failed, and the numbers mean nothing
};
using WorkerFrame =
    std::variant<HelloFrame, HeartbeatFrame, ProgressFrame, ResultFrame, ProbeResultFrame,
                 CheckpointFrame, EchoReplyFrame, LinkListeningFrame, LinkReportFrame>;
// Decodes and validates one payload from a worker, or says which field is wrong and why.
StatusOr<WorkerFrame> DecodeWorkerFrame(std::string_view payload);

// Frames from the controller.
struct WelcomeFrame {
  double heartbeat_s = 2.0;
  double lease_s = 15.0;
};
struct AssignFrame {
  SegmentSpec segment;
};
struct ProbeFrame {
  std::string key;
  std::string model;
  DatasetSpec dataset;
  std::vector<int> batch_sizes;
};
struct StopFrame {
  int64_t trial_id = 0;
  std::string reason;
};
struct ErrorFrame {
  std::string code;  ///< a Status::CodeName, or PROTOCOL_VERSION
  std::string message;
  bool fatal = false;  ///< the worker must not retry
};
struct EchoFrame {
  int64_t id = 0;
  std::string pad;
  uint32_t reply_bytes = 0;
};
struct LinkListenFrame {
  int64_t id = 0;
  std::string nonce;  ///< kLinkNonceChars lowercase hex digits
  int64_t bytes = 0;  ///< 1..kMaxLinkTestBytes
};
struct LinkSendFrame {
  int64_t id = 0;
  std::string nonce;
  std::string host;  ///< an IPv4 or IPv6 address literal (ValidLinkHost)
  int port = 0;
  int64_t bytes = 0;
};
using ControllerFrame =
    std::variant<WelcomeFrame, AssignFrame, ProbeFrame, StopFrame, HeartbeatFrame, ErrorFrame,
                 CheckpointFrame, EchoFrame, LinkListenFrame, LinkSendFrame>;
// Decodes and validates one payload from the controller.
StatusOr<ControllerFrame> DecodeControllerFrame(std::string_view payload);

// The error frame of a status; fatal only for the codes a worker must not retry.
ErrorFrame ErrorFrameOf(const Status& status);
// The same for a protocol version the controller does not speak (always fatal).
ErrorFrame ProtocolVersionError(int got);

// Frame encoders (the "type" field included).
nlohmann::json ToJson(const HelloFrame& f);
nlohmann::json ToJson(const ProgressFrame& f);
nlohmann::json ToJson(const ResultFrame& f);
nlohmann::json ToJson(const ProbeResultFrame& f);
nlohmann::json ToJson(const WelcomeFrame& f);
nlohmann::json ToJson(const ProbeFrame& f);
nlohmann::json ToJson(const StopFrame& f);
nlohmann::json ToJson(const ErrorFrame& f);
nlohmann::json ToJson(const CheckpointFrame& f);
nlohmann::json ToJson(const EchoFrame& f);
nlohmann::json ToJson(const EchoReplyFrame& f);
nlohmann::json ToJson(const LinkListenFrame& f);
nlohmann::json ToJson(const LinkSendFrame& f);
nlohmann::json ToJson(const LinkListeningFrame& f);
nlohmann::json ToJson(const LinkReportFrame& f);
nlohmann::json HeartbeatJson();

// A worker id: 1-64 characters of letters, digits, '-', '_' or '.'.
bool ValidWorkerId(const std::string& id);
// A link_send host: 1-45 characters of hex digits, '.' and ':' (an address literal
// without a scope; a name would have to be resolved, which a worker never does).
bool ValidLinkHost(const std::string& host);

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
