// Fuzzes the worker protocol: a byte stream cut into chunks, fed to a FrameReader, and every
// payload it yields decoded as a worker frame and as a controller frame. A frame that
// decodes must re-encode (ToJson + EncodeFrame) into one that decodes again, to the same JSON.
//
// Input: byte 0 holds in bits 0-2 how many chunk sizes follow (0: one chunk), in bit 3
// whether the rest is one payload for the harness to frame (so that mutations of the JSON
// keep a valid header), and in bit 4 whether that frame is sent twice. Each chunk size byte b
// means b + 1 bytes; they repeat until the stream ends.

#include <string>
#include <variant>
#include <vector>

#include "api/json_input.h"
#include "api/protocol.h"
#include "tests/fuzz/fuzz_target.h"

namespace topotune {
namespace {

nlohmann::json Reencode(const HeartbeatFrame&) { return HeartbeatJson(); }
nlohmann::json Reencode(const AssignFrame& f) {
  return {{"type", "assign"}, {"assignment", ToJson(f.segment)}};
}
template <typename Frame>
nlohmann::json Reencode(const Frame& f) {
  return ToJson(f);
}

template <typename Variant>
nlohmann::json ReencodeVariant(const Variant& frame) {
  return std::visit([](const auto& f) { return Reencode(f); }, frame);
}

// Decodes `payload` with `decode`; when it decodes, checks that its re-encoding frames,
// reads and decodes again to the same JSON.
template <typename Decode>
void CheckRoundTrip(const std::string& payload, Decode decode, const char* side) {
  auto frame = decode(payload);
  if (!frame.ok()) {
    TOPOTUNE_FUZZ_CHECK(!frame.status().message().empty(), "%s: an error without a message", side);
    return;
  }
  const nlohmann::json encoded = ReencodeVariant(*frame);
  const std::string bytes = EncodeFrame(encoded);
  TOPOTUNE_FUZZ_CHECK(bytes.size() >= 4, "%s: EncodeFrame gave %zu bytes", side, bytes.size());
  if (bytes.size() - 4 > kMaxFrameBytes) return;  // escapes can grow it; the reader refuses it
  FrameReader reader;
  const Status appended = reader.Append(bytes.data(), bytes.size());
  TOPOTUNE_FUZZ_CHECK(appended.ok(), "%s: the reader refuses a re-encoded frame: %s", side,
                      appended.ToString().c_str());
  std::optional<std::string> again = reader.Next();
  TOPOTUNE_FUZZ_CHECK(again.has_value() && !reader.InFrame(),
                      "%s: the reader does not return exactly one frame", side);
  auto decoded = decode(*again);
  TOPOTUNE_FUZZ_CHECK(decoded.ok(), "%s: %s decodes but its re-encoding %s does not: %s", side,
                      SafeText(payload, 400).c_str(), SafeText(*again, 400).c_str(),
                      decoded.status().ToString().c_str());
  const nlohmann::json reencoded = ReencodeVariant(*decoded);
  TOPOTUNE_FUZZ_CHECK(reencoded == encoded, "%s: %s re-encodes as %s, then as %s", side,
                      SafeText(payload, 400).c_str(), DumpJson(encoded).c_str(),
                      DumpJson(reencoded).c_str());
}

void CheckPayload(const std::string& payload) {
  CheckRoundTrip(payload, DecodeWorkerFrame, "worker frame");
  CheckRoundTrip(payload, DecodeControllerFrame, "controller frame");
}

}  // namespace
}  // namespace topotune

TOPOTUNE_FUZZ_TARGET(FrameFuzzerTestOneInput) {
  using namespace topotune;
  fuzz::InputReader in(data, size);
  const uint8_t control = in.Byte();
  std::vector<size_t> chunk_sizes;
  for (int i = 0; i < (control & 7); ++i) chunk_sizes.push_back(size_t{in.Byte()} + 1);
  std::string stream;
  if (control & 8) {
    const std::string payload = in.Rest();
    std::string frame(4, '\0');
    const auto n = static_cast<uint32_t>(payload.size());
    for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
    frame += payload;
    stream = (control & 16) ? frame + frame : frame;
  } else {
    stream = in.Rest();
  }

  // Feed the reader chunk by chunk, decoding each payload as soon as it is complete.
  FrameReader reader;
  std::vector<std::string> payloads;
  size_t delivered = 0;
  bool refused = false;
  for (size_t i = 0; delivered < stream.size(); ++i) {
    size_t n = chunk_sizes.empty() ? stream.size() : chunk_sizes[i % chunk_sizes.size()];
    if (n > stream.size() - delivered) n = stream.size() - delivered;
    const Status s = reader.Append(stream.data() + delivered, n);
    delivered += n;
    if (!s.ok()) {
      refused = true;
      TOPOTUNE_FUZZ_CHECK(reader.Append("x", 1).code() == Status::Code::kInvalidArgument,
                          "a failed reader accepts more bytes");
      TOPOTUNE_FUZZ_CHECK(!reader.Next().has_value(), "a failed reader returns a frame");
      break;
    }
    while (std::optional<std::string> payload = reader.Next()) {
      CheckPayload(*payload);
      payloads.push_back(std::move(*payload));
    }
  }

  // The frames the delivered bytes hold, read independently of the reader.
  size_t at = 0;
  size_t complete = 0;
  bool bad_header = false;
  while (delivered - at >= 4) {
    const uint32_t n = DecodeFrameLength(reinterpret_cast<const unsigned char*>(&stream[at]));
    if (n == 0 || n > kMaxFrameBytes) {
      bad_header = true;
      break;
    }
    if (delivered - at - 4 < n) break;
    if (complete < payloads.size()) {
      TOPOTUNE_FUZZ_CHECK(payloads[complete] == stream.substr(at + 4, n),
                          "frame %zu differs from the stream's bytes", complete);
    }
    ++complete;
    at += 4 + n;
  }
  TOPOTUNE_FUZZ_CHECK(refused == bad_header, "the reader %s a stream that %s a bad length",
                      refused ? "refused" : "accepted", bad_header ? "has" : "has no");
  if (!refused) {
    TOPOTUNE_FUZZ_CHECK(payloads.size() == complete, "the reader returned %zu of %zu frames",
                        payloads.size(), complete);
    TOPOTUNE_FUZZ_CHECK(reader.buffered_bytes() == delivered - at,
                        "the reader holds %zu bytes, the stream %zu after its last frame",
                        reader.buffered_bytes(), delivered - at);
  }
  return 0;
}
