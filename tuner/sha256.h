#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace topotune {

// SHA-256 (FIPS 180-4) over bytes fed in pieces: token hashes, and the integrity check of
// checkpoints that travel in chunks. Not thread-safe; one object per message.
class Sha256 {
 public:
  Sha256();
  void Update(std::string_view bytes);
  // The digest as 64 lowercase hex characters. Ends the message: call once.
  std::string HexDigest();

 private:
  std::array<uint32_t, 8> state_;
  std::array<unsigned char, 64> block_{};  // bytes of the block being filled
  size_t block_used_ = 0;
  uint64_t length_ = 0;  // bytes fed so far
};

// The SHA-256 digest of `bytes`, as 64 lowercase hex characters. Pure and thread-safe.
std::string Sha256Hex(const std::string& bytes);

}  // namespace topotune
