#pragma once

// Untrusted JSON: every body, frame and file that arrives from the network goes through
// ParseUntrustedJson before any field is read, and every text that may hold such bytes goes
// through SafeText or DumpJson before it is written out. Together they make sure that no
// input can overflow the stack (nesting), exhaust memory (huge strings), throw from a dump
// (invalid UTF-8) or overflow a number.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tuner/status.h"

namespace topotune {

struct JsonLimits {
  size_t max_bytes = 1 << 20;          ///< the whole text
  size_t max_depth = 32;               ///< nested arrays and objects
  size_t max_string_bytes = 64 << 10;  ///< one string or key, as encoded
};

// Parses `text` as one JSON value, or says what is wrong and at which byte: not UTF-8,
// nested deeper than limits.max_depth, a string longer than limits.max_string_bytes, a
// number out of double's range, or a syntax error. Never throws.
StatusOr<nlohmann::json> ParseUntrustedJson(std::string_view text, const JsonLimits& limits = {});

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). On failure, *bad_offset is the first bad byte's offset.
bool IsValidUtf8(std::string_view text, size_t* bad_offset = nullptr);

// `text` made safe to quote in a message: at most max_bytes bytes, cut at a character
// boundary with "..." appended when cut, invalid UTF-8 bytes and control characters shown as
// \xHH.
std::string SafeText(std::string_view text, size_t max_bytes = 120);

// value.dump(), with invalid UTF-8 replaced by U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& value);

}  // namespace topotune
