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

  // API tokens (api/tokens.h issues and checks them; only hashes are stored).
  // Inserts a token and returns its id (the record's id field is ignored).
  virtual StatusOr<int64_t> CreateToken(const TokenRecord& token) = 0;
  virtual StatusOr<TokenRecord> GetToken(int64_t id) = 0;       // NotFound if absent
  virtual StatusOr<std::vector<TokenRecord>> ListTokens() = 0;  // by id, revoked too
  // The external tokens (active or revoked) whose hash_hex is `hash_hex`, by id.
  virtual StatusOr<std::vector<TokenRecord>> FindExternalTokens(const std::string& hash_hex) = 0;
  // Sets revoked_at = `at`; NotFound if absent, FailedPrecondition if already revoked.
  virtual Status RevokeToken(int64_t id, double at) = 0;
  // Sets last_used_at = `at`; NotFound if absent.
  virtual Status TouchToken(int64_t id, double at) = 0;

  // The schema version after migrations (the number of the last one applied).
  virtual int SchemaVersion() const = 0;
};

}  // namespace topotune
