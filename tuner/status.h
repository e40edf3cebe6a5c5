#pragma once

#include <optional>
#include <string>
#include <utility>

namespace topotune {

// The outcome of an operation that can fail: ok, or a code and a message that says what
// was wrong and where. Cheap to copy; not thread-safe to mutate. [[nodiscard]]: a
// returned status must be checked, propagated, logged, or explicitly discarded.
class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,     // the caller's input is wrong (HTTP 400)
    kNotFound,            // no such job, trial or worker (HTTP 404)
    kFailedPrecondition,  // valid input, wrong state (HTTP 409)
    kPayloadTooLarge,     // the request is bigger than allowed (HTTP 413)
    kUnauthenticated,     // no valid credentials: missing, malformed or revoked (HTTP 401)
    kPermissionDenied,    // valid credentials whose role may not do this (HTTP 403)
    kUnavailable,         // try again later (HTTP 503)
    kIOError,             // disk, database or socket failure (HTTP 500)
    kInternal,            // a bug (HTTP 500)
  };

  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Status PayloadTooLarge(std::string m) { return {Code::kPayloadTooLarge, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", or "OK".
  std::string ToString() const;
  // The wire name of a code: "INVALID_ARGUMENT", "NOT_FOUND", ...
  static const char* CodeName(Code code);

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the status that explains why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design
  StatusOr(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace topotune

#define TOPOTUNE_RETURN_IF_ERROR(expr) \
  do {                                 \
    ::topotune::Status _st = (expr);   \
    if (!_st.ok()) return _st;         \
  } while (0)
