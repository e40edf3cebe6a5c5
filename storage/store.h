#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tuner/journal.h"

namespace topotune {

// The controller's database: the journal the engine writes through and reads from, plus
// what only the adapters need (the schema version). Thread-safe: writes are serialised on one connection (the
// single writer), reads may run beside them (WAL).
class Store : public Journal {
 public:
  // Opens (creating if needed) the SQLite file at `path` and applies pending migrations.
  static StatusOr<std::unique_ptr<Store>> Open(const std::string& path);

  // The schema version after migrations (the number of the last one applied).
  virtual int SchemaVersion() const = 0;
};

}  // namespace topotune
