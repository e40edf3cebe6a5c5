#pragma once

// The SQLite schema as a numbered history. Private to storage/: the rest of the project
// sees only storage/store.h.

#include <vector>

#include "tuner/status.h"

struct sqlite3;

namespace topotune {

// One step of the schema, applied once, in version order, in its own transaction.
struct Migration {
  int version;      ///< 1, 2, 3 ... without gaps
  const char* sql;  ///< one or more statements; no bound values
};

// Every migration, oldest first. Append new ones; never edit one that has shipped.
const std::vector<Migration>& Migrations();

// Applies the migrations newer than the database's version to `db` (records each in
// schema_migrations and PRAGMA user_version) and returns the version after them.
// FailedPrecondition if the database is newer than this build. Safe against another
// process migrating the same file at the same time; `db` must not be used concurrently.
StatusOr<int> ApplyMigrations(sqlite3* db);

}  // namespace topotune
