#pragma once

// Where a job's configurations would train (a target) and the links between its devices:
// value types shared by the job's spec, which counts its seconds on one target, and the
// cost model (tuner/cost_model.h), which predicts time-to-accuracy on any.

#include <string>
#include <utility>

namespace topotune {

// What a topology, a profile, a replay table or the CLI may hold; parsers refuse more.
constexpr int kMaxDevices = 1 << 20;               ///< devices of a target or a placement
constexpr int kMaxBatchSize = 1 << 20;             ///< a configuration's batch size
constexpr long long kMaxTrainSamples = 1LL << 40;  ///< a workload's training samples

// A network path: bandwidth in bytes per second and one-way latency in seconds.
struct Link {
  double bandwidth_bytes_s = 0.0;
  double latency_s = 0.0;
};

// Where and how a configuration would train.
struct Target {
  enum class Kind { kSingle, kDataParallel, kFederated };
  std::string name;
  Kind kind = Kind::kSingle;
  std::string device_class;
  std::string site;  ///< where the devices are (federated: the cloud); "" = not said
  // Data-parallel: `devices` in all, on `nodes` nodes; devices of a node talk over
  // `intra_node`, nodes over `inter_node`.
  int devices = 1;
  int nodes = 1;
  Link intra_node;
  Link inter_node;
  double overlap = 0.0;  ///< share of the synchronisation hidden behind compute, [0, 1]
  // Federated: clients_per_edge x edges clients of device_class, each training
  // local_epochs over its shard per round; then client -> edge -> cloud averaging.
  int clients_per_edge = 0;
  int edges = 0;
  int local_epochs = 1;
  Link client_edge;
  Link edge_cloud;
  // Training data that must move to the devices once before training; 0 bytes = none.
  double data_bytes = 0.0;
  Link data_link;
  /// How data_link is known: "" = declared (its transfer is predicted); otherwise how it
  /// was measured (the transfer is then marked measured).
  std::string data_link_measured;
  /// The two sites whose declared link inter_node / edge_cloud is, when the topology named
  /// it by its sites ({"", ""}: given inline), so that a measured link can replace it.
  std::pair<std::string, std::string> inter_node_sites;
  std::pair<std::string, std::string> edge_cloud_sites;
  /// Which of those links were replaced by measured ones, and how; "" = all as declared.
  std::string links_measured;
};

// Whether `t` trains on more than one device (data-parallel over several, or federated).
inline bool OnSeveralDevices(const Target& t) {
  return t.kind == Target::Kind::kFederated ||
         (t.kind == Target::Kind::kDataParallel && t.devices > 1);
}

// What the job trains.
struct Workload {
  long long train_samples = 0;
  double model_bytes = 0.0;  ///< the parameters (and, for federated, the update) in bytes
};

}  // namespace topotune
