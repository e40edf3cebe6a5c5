#pragma once

// What the harnesses share. Each harness is an ordinary C++ file: clang builds it with
// -fsanitize=fuzzer into a libFuzzer binary (TOPOTUNE_FUZZ=ON, tests/fuzz/run.sh), and g++
// builds all of them into fuzz_regression_test, which replays the committed corpus and every
// input a fuzzer ever crashed on. There each entry point gets its own name
// (TOPOTUNE_FUZZ_REGRESSION is defined), since they share one binary.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef TOPOTUNE_FUZZ_REGRESSION
#define TOPOTUNE_FUZZ_TARGET(name) extern "C" int name(const uint8_t* data, size_t size)
#else
#define TOPOTUNE_FUZZ_TARGET(name) \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#endif

// Aborts with a message when `condition` is false: the fuzzer saves the input as a crash, and
// fuzz_regression_test dies on it.
#define TOPOTUNE_FUZZ_CHECK(condition, ...)                                              \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #condition); \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace topotune {
namespace fuzz {

// Reads a fuzz input front to back; past the end every read returns zeros or nothing.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  // The bytes up to the next '\n' (consumed, not returned), at most max_bytes of them.
  std::string Line(size_t max_bytes) {
    std::string line;
    while (at_ < size_ && line.size() < max_bytes) {
      const char c = static_cast<char>(data_[at_++]);
      if (c == '\n') break;
      line.push_back(c);
    }
    return line;
  }
  // Everything not read yet.
  std::string Rest() {
    std::string rest(reinterpret_cast<const char*>(data_ + at_), size_ - at_);
    at_ = size_;
    return rest;
  }
  size_t remaining() const { return size_ - at_; }
  const uint8_t* position() const { return data_ + at_; }
  void Skip(size_t n) { at_ = n < size_ - at_ ? at_ + n : size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

}  // namespace fuzz
}  // namespace topotune
