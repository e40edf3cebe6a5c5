#pragma once

// Reading a JSON object field by field, for the specs users send (jobs, topologies): every
// error names the field's path and what it must be, and fields nobody asked about are
// errors, so that a typo never falls back to a default silently.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

#include "api/json_input.h"
#include "tuner/status.h"

namespace topotune {

// A reader of one JSON object that names the path of every field in its errors and
// rejects fields it was not asked about.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string path) : j_(j), path_(std::move(path)) {}

  std::string Name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const nlohmann::json* Find(const std::string& key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  Status Required(const std::string& key, const nlohmann::json** out, const std::string& hint) {
    *out = Find(key);
    if (*out == nullptr) return Status::InvalidArgument(Name(key) + " is required: " + hint);
    return Status::OK();
  }
  Status Int(const std::string& key, int64_t lo, int64_t hi, int64_t* out) {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return Status::OK();
    if (!v->is_number_integer()) {
      return Status::InvalidArgument(Name(key) + " must be an integer, got " + Describe(*v));
    }
    const int64_t x =
        v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
    if (x < lo || x > hi) {
      return Status::InvalidArgument(Name(key) + " must be in [" + std::to_string(lo) + ", " +
                                     std::to_string(hi) + "], got " + std::to_string(x));
    }
    *out = x;
    return Status::OK();
  }
  template <typename T>
  Status IntAs(const std::string& key, int64_t lo, int64_t hi, T* out) {
    int64_t x = static_cast<int64_t>(*out);
    TOPOTUNE_RETURN_IF_ERROR(Int(key, lo, hi, &x));
    *out = static_cast<T>(x);
    return Status::OK();
  }
  Status Number(const std::string& key, double* out) {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return Status::OK();
    if (!v->is_number()) {
      return Status::InvalidArgument(Name(key) + " must be a number, got " + Describe(*v));
    }
    *out = v->get<double>();
    return Status::OK();
  }
  Status String(const std::string& key, std::string* out, size_t max_bytes = 1024) {
    const nlohmann::json* v = Find(key);
    if (v == nullptr) return Status::OK();
    if (!v->is_string()) {
      return Status::InvalidArgument(Name(key) + " must be a string, got " + Describe(*v));
    }
    if (v->get_ref<const std::string&>().size() > max_bytes) {
      return Status::InvalidArgument(Name(key) + " is longer than " + std::to_string(max_bytes) +
                                     " bytes");
    }
    *out = v->get<std::string>();
    return Status::OK();
  }
  Status Object(const std::string& key, const nlohmann::json** out) {
    *out = Find(key);
    if (*out != nullptr && !(*out)->is_object()) {
      return Status::InvalidArgument(Name(key) + " must be an object, got " + Describe(**out));
    }
    return Status::OK();
  }
  // Call last: any field nobody asked about is an error.
  Status NoOthers() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!seen_.count(it.key())) {
        return Status::InvalidArgument("unknown field " + SafeText(Name(it.key()), 80));
      }
    }
    return Status::OK();
  }
  static std::string Describe(const nlohmann::json& v) {
    return std::string(v.type_name()) + " " + SafeText(DumpJson(v), 40);
  }

 private:
  const nlohmann::json& j_;
  std::string path_;
  std::set<std::string> seen_;
};

}  // namespace topotune
