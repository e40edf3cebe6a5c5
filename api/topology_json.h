#pragma once

// The JSON form of a topology (examples/topologies/*.json), as `topotune predict --topology`
// reads it:
//
//   {"name": "edge-or-cloud",
//    "sites": {"edge-1": {"jetson-nano": 4}, "cloud": {"a100": 8}},
//    "links": [{"between": ["edge-1", "cloud"], "bandwidth_mbit_s": 10, "latency_ms": 40}],
//    "data": {"site": "edge-1", "bytes": 2e9},
//    "model_bytes": 9.4e7, "train_samples": 50000,
//    "targets": [
//      {"name": "jetson", "kind": "single", "class": "jetson-nano", "site": "edge-1"},
//      {"name": "a100x4", "kind": "data_parallel", "class": "a100", "site": "cloud",
//       "devices": 4, "nodes": 1, "intra_node": {"bandwidth_mbit_s": 2400000,
//       "latency_ms": 0.005}, "overlap": 0.5},
//      {"name": "fedavg", "kind": "federated", "class": "jetson-nano", "site": "cloud",
//       "clients_per_edge": 4, "edges": 1, "local_epochs": 1,
//       "client_edge": {"bandwidth_mbit_s": 100, "latency_ms": 2},
//       "edge_cloud": ["edge-1", "cloud"]}]}
//
// A link field is an inline {"bandwidth_mbit_s", "latency_ms"} or the two sites of a link in
// "links". A target whose site is not the data's site moves the data over the link between
// the two (federated clients hold their own data). "model_bytes" and "train_samples" are
// optional (0: from the caller). Unknown fields are errors; so are a site, class or link
// that is not declared, and a target that needs more devices than its site has.

#include <nlohmann/json.hpp>
#include <string>

#include "tuner/cost_model.h"
#include "tuner/status.h"

namespace topotune {

// Errors are InvalidArgument naming the field: "targets[1].devices: ...".
StatusOr<Topology> TopologyFromJson(const nlohmann::json& j);
// Parses untrusted text (size, depth and UTF-8 limits first), then TopologyFromJson.
StatusOr<Topology> ParseTopology(const std::string& text);

}  // namespace topotune
