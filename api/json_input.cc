#include "api/json_input.h"

#include <cstdio>

namespace topotune {
namespace {

// The length of the UTF-8 sequence starting at text[i], or 0 if it is not a valid one.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t min = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2, min = 0x80, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, min = 0x800, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

std::string Offset(size_t at) { return " at byte " + std::to_string(at); }

}  // namespace

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

std::string SafeText(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 4);
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    const unsigned char c = static_cast<unsigned char>(text[i]);
    std::string piece;
    if (n == 0 || c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02X", c);
      piece = hex;
      i += 1;
    } else {
      piece.assign(text.substr(i, n));
      i += n;
    }
    if (out.size() + piece.size() > max_bytes) return out + "...";
    out += piece;
  }
  return out;
}

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

StatusOr<nlohmann::json> ParseUntrustedJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Status::PayloadTooLarge("JSON text of " + std::to_string(text.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(limits.max_bytes));
  }
  size_t bad = 0;
  if (!IsValidUtf8(text, &bad))
    return Status::InvalidArgument("JSON is not valid UTF-8" + Offset(bad));
  // One pass outside the parser bounds what it will build: depth and string sizes.
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  size_t string_start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
        if (i - string_start > limits.max_string_bytes) {
          return Status::InvalidArgument("a JSON string of " + std::to_string(i - string_start) +
                                         " bytes exceeds the limit of " +
                                         std::to_string(limits.max_string_bytes) +
                                         Offset(string_start));
        }
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      string_start = i + 1;
    } else if (c == '[' || c == '{') {
      if (++depth > limits.max_depth) {
        return Status::InvalidArgument("JSON nests deeper than " +
                                       std::to_string(limits.max_depth) + " levels" + Offset(i));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  if (in_string && text.size() - string_start > limits.max_string_bytes) {
    return Status::InvalidArgument("an unterminated JSON string exceeds " +
                                   std::to_string(limits.max_string_bytes) + " bytes");
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::out_of_range& e) {
    return Status::InvalidArgument("a JSON number is out of range: " + SafeText(e.what(), 200));
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument("not valid JSON: " + SafeText(e.what(), 200));
  } catch (const std::exception& e) {
    return Status::InvalidArgument("not valid JSON: " + SafeText(e.what(), 200));
  }
}

}  // namespace topotune
