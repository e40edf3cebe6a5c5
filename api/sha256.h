#pragma once

#include <string>

namespace topotune {

// The SHA-256 digest (FIPS 180-4) of `bytes`, as 64 lowercase hex characters. Pure and
// thread-safe.
std::string Sha256Hex(const std::string& bytes);

}  // namespace topotune
