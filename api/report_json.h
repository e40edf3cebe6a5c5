#pragma once

// JSON renderings of stored records and reports, shared by the REST server and the CLI
// (which can rebuild a report from the database file alone).

#include <nlohmann/json.hpp>
#include <vector>

#include "tuner/report.h"
#include "tuner/types.h"

namespace topotune {

nlohmann::json ToJson(const TrialRecord& t);
nlohmann::json ToJson(const JobRecord& job);  // without the spec
nlohmann::json ToJson(const WorkerRecord& w);
// An API token without its hash: id, name, role, external, created_at, revoked_at and
// last_used_at (null while 0).
nlohmann::json ToJson(const TokenRecord& token);
nlohmann::json ToJson(const JobProgress& p);
nlohmann::json ToJson(const Report& r);
// A trial with its learning curve (points of that trial, by epoch).
nlohmann::json TrialWithCurve(const TrialRecord& t, const std::vector<CurvePoint>& points);

}  // namespace topotune
