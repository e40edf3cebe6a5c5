#pragma once

// The JSON form of planning answers (tuner/planner.h), as `topotune predict --json` prints
// them and POST /v1/jobs/{id}/predict returns them.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuner/cost_model.h"
#include "tuner/planner.h"
#include "tuner/topology_view.h"

namespace topotune {

// "single", "data_parallel" or "federated".
const char* TargetKindName(Target::Kind kind);

// "data_parallel, a100 x4 on 1 node at cloud" and the like.
std::string DescribeTarget(const Target& t);

// The plans: each target's ranking, every term with its interval and whether it was
// measured, "best": the fastest configuration per target, fastest target first, and
// "data_move": CompareDataMoves's verdicts (min_bandwidth_bytes_s null where moving never
// pays).
nlohmann::json PlansToJson(const std::vector<TargetPlan>& plans, double target_accuracy);

// GET /v1/topology's body: "sites" (classes connected and declared, workers, the measured
// link to the controller: rtt_ms, down_mbit_s, up_mbit_s, or null) and "links" (declared
// beside measured through the controller, in the topology file's units: bandwidth_mbit_s,
// latency_ms; null where there is none), and "how" each was measured.
nlohmann::json TopologyViewToJson(const TopologyView& view);

}  // namespace topotune
