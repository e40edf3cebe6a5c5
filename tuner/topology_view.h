#pragma once

// GET /v1/topology: what the controller measured of the links to its workers, beside what a
// topology file declares. Pure functions over the workers' records and links.
//
// The controller times echoes over each worker's own connection (api/protocol.h, protocol
// 3): the least round trip of small echoes, and the throughput of the fastest of three large pads
// each way. A site's link to the controller is the median over its measured workers. Between two
// sites that both have measured workers, the path through the controller (worker -> controller
// -> worker) gives a bound on their link: its latency is half of each side's round trip,
// its bandwidth the least of the four directions. It is not a direct transfer between the
// two sites, and the view says so.
//
// A link test (api/protocol.h, protocol 4) measures the link itself: a worker at one site
// sends a timed transfer straight to a worker at the other. Its bandwidth is the bytes over
// the transfer's time less one round trip (the last byte's way there and the
// acknowledgement's way back), its latency half that round trip, timed with one byte on
// the same connection. The latest test per pair of sites is kept and shown beside the
// bound.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuner/cost_model.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// The link between the controller and one worker, measured over its connection.
struct WorkerLink {
  double rtt_s = 0.0;         ///< the least round trip of small echoes
  double down_bytes_s = 0.0;  ///< controller -> worker, a pad of `pad_bytes`
  double up_bytes_s = 0.0;    ///< worker -> controller
  uint32_t pad_bytes = 0;
  double measured_at = 0.0;  ///< seconds since the Unix epoch
};

struct SiteView {
  std::string site;                     ///< "" = workers that named no site
  std::map<std::string, int> classes;   ///< class -> workers connected now
  std::vector<std::string> workers;     ///< ids, sorted
  int measured = 0;                     ///< workers with a measured link
  WorkerLink median;                    ///< over the measured workers (when measured > 0)
  std::map<std::string, int> declared;  ///< class -> devices the topology declares
};

// A link between two sites measured by a direct transfer between their workers.
struct DirectLink {
  std::string from_site, to_site;  ///< the sender's and the listener's
  std::string sender, listener;    ///< worker ids
  int64_t bytes = 0;
  double seconds = 0.0;  ///< from the first byte sent to the acknowledgement
  double rtt_s = 0.0;    ///< a one-byte round trip on the same connection
  Link link;
  double measured_at = 0.0;  ///< seconds since the Unix epoch
};

// The link of a transfer of `bytes` that took `seconds` on a connection with a round trip
// of `rtt_s` (see the header). InvalidArgument when the transfer took under two round
// trips or under `min_seconds`: too short to time a bandwidth from. Below some
// milliseconds one late wakeup of either side is as long as the transfer itself (1 KiB
// across loopback has timed at 47 Mbit/s and 8 KiB at 33 Gbit/s).
StatusOr<Link> DirectTransferLink(int64_t bytes, double seconds, double rtt_s,
                                  double min_seconds = 0.0);

struct LinkView {
  std::string a, b;                  ///< site names, a < b
  std::optional<Link> declared;      ///< the topology's
  std::optional<Link> measured;      ///< through the controller (a bound), when both measured
  std::optional<DirectLink> direct;  ///< the latest link test between the two sites
};

struct TopologyView {
  std::vector<SiteView> sites;  ///< sorted by name
  std::vector<LinkView> links;  ///< declared ones, then measured-only pairs
};

// The view of `workers` (connected ones: state != "offline") with their `links` (by worker
// id) and the `direct` link tests between sites, beside `declared` when given.
TopologyView BuildTopologyView(const std::vector<WorkerRecord>& workers,
                               const std::map<std::string, WorkerLink>& links,
                               const std::vector<DirectLink>& direct, const Topology* declared);

// Replaces `target`'s links between sites by the latest link test between the same two
// sites in `tests`, where the topology named those sites: a data-parallel target's
// inter_node (when it spans nodes) and a federated one's edge_cloud. The latency stays the
// declared one where that is larger: a link test sees no latency below its connection's
// setup (and the testbed's kernel emulates none). Says how in target->links_measured.
void ApplyLinkTests(const std::vector<DirectLink>& tests, Target* target);

// The site-to-site bound through the controller from the two sites' measured links.
Link ThroughController(const WorkerLink& a, const WorkerLink& b);

}  // namespace topotune
