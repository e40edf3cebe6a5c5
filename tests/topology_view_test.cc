#include "tuner/topology_view.h"

#include <gtest/gtest.h>

namespace topotune {
namespace {

WorkerRecord Worker(const std::string& id, const std::string& device_class, const std::string& site,
                    const std::string& state = "idle") {
  WorkerRecord w;
  w.id = id;
  w.state = state;
  w.device.kind = "cpu";
  w.device.cores = 2;
  w.device.device_class = device_class;
  w.device.site = site;
  return w;
}

// Two edge workers (one measured at 8 and one at 12 Mbit/s: the site's median is 10), a
// cloud worker at 1 Gbit/s, and an offline one that does not count. The declared link
// between the sites stands beside the path through the controller: half of each site's
// round trip, the least of the four throughputs.
TEST(TopologyView, SitesTakeTheMedianOfTheirWorkersAndPairsThePathThroughTheController) {
  const std::vector<WorkerRecord> workers = {
      Worker("e1", "edge", "edge-1"), Worker("e2", "edge", "edge-1"),
      Worker("c1", "cloud", "cloud"), Worker("gone", "cloud", "cloud", "offline")};
  const std::map<std::string, WorkerLink> links = {{"e1", {0.010, 1e6, 0.9e6, 1 << 18, 100}},
                                                   {"e2", {0.030, 1.5e6, 1.1e6, 1 << 18, 100}},
                                                   {"c1", {0.002, 125e6, 125e6, 1 << 18, 100}},
                                                   {"gone", {9.0, 1.0, 1.0, 1 << 18, 100}}};
  Topology declared;
  declared.sites = {{"edge-1", {{"edge", 4}}}, {"cloud", {{"cloud", 2}}}, {"lab", {{"x", 1}}}};
  declared.links = {{"edge-1", "cloud", {1.25e6, 0.04}}};
  const TopologyView view = BuildTopologyView(workers, links, {}, &declared);

  ASSERT_EQ(view.sites.size(), 3u);
  const SiteView& cloud = view.sites[0];
  EXPECT_EQ(cloud.site, "cloud");
  EXPECT_EQ(cloud.workers, std::vector<std::string>({"c1"}));
  EXPECT_EQ(cloud.measured, 1);
  const SiteView& edge = view.sites[1];
  EXPECT_EQ(edge.classes.at("edge"), 2);
  EXPECT_EQ(edge.declared.at("edge"), 4);
  EXPECT_EQ(edge.measured, 2);
  EXPECT_DOUBLE_EQ(edge.median.rtt_s, 0.020);
  EXPECT_DOUBLE_EQ(edge.median.down_bytes_s, 1.25e6);
  EXPECT_DOUBLE_EQ(edge.median.up_bytes_s, 1e6);
  EXPECT_EQ(view.sites[2].measured, 0);  // declared only

  ASSERT_EQ(view.links.size(), 1u);
  const LinkView& l = view.links[0];
  EXPECT_EQ(l.a, "cloud");
  EXPECT_EQ(l.b, "edge-1");
  ASSERT_TRUE(l.declared.has_value());
  EXPECT_DOUBLE_EQ(l.declared->bandwidth_bytes_s, 1.25e6);
  ASSERT_TRUE(l.measured.has_value());
  EXPECT_DOUBLE_EQ(l.measured->bandwidth_bytes_s, 1e6);  // the edge's uplink
  EXPECT_DOUBLE_EQ(l.measured->latency_s, 0.5 * (0.020 + 0.002));

  // Without a declared topology, the measured pair alone.
  const TopologyView bare = BuildTopologyView(workers, links, {}, nullptr);
  ASSERT_EQ(bare.links.size(), 1u);
  EXPECT_FALSE(bare.links[0].declared.has_value());
  EXPECT_TRUE(bare.links[0].measured.has_value());
  EXPECT_EQ(bare.sites.size(), 2u);
}

// A link test's transfer: 4 MiB in 3.4 s on a connection with a 40 ms round trip is 4 MiB
// over 3.36 s (the last byte's way there and the acknowledgement's back are one round
// trip), with a latency of 20 ms; one that took under two round trips cannot be timed. The
// latest test of a pair is shown, beside the bound through the controller; a pair whose
// workers have left keeps its test, alone.
TEST(TopologyView, ALinkTestStandsBesideTheBoundAndTheLatestCounts) {
  const StatusOr<Link> l = DirectTransferLink(4 << 20, 3.4, 0.040);
  ASSERT_TRUE(l.ok());
  EXPECT_DOUBLE_EQ(l->bandwidth_bytes_s, (4 << 20) / 3.36);
  EXPECT_DOUBLE_EQ(l->latency_s, 0.020);
  const StatusOr<Link> short_one = DirectTransferLink(10, 0.003, 0.002);
  ASSERT_FALSE(short_one.ok());
  EXPECT_NE(short_one.status().message().find("under two round trips"), std::string::npos);
  // Over two round trips but under the clock's floor: 1 KiB in 0.17 ms, timed once at
  // 47 Mbit/s across loopback, is not a bandwidth.
  EXPECT_TRUE(DirectTransferLink(1024, 0.00017, 0.00003).ok());
  EXPECT_FALSE(DirectTransferLink(1024, 0.00017, 0.00003, 0.010).ok());
  EXPECT_TRUE(DirectTransferLink(64 << 20, 0.012, 0.00003, 0.010).ok());
  EXPECT_FALSE(DirectTransferLink(0, 1.0, 0.001).ok());

  const std::vector<WorkerRecord> workers = {Worker("e1", "edge", "edge-1"),
                                             Worker("c1", "cloud", "cloud")};
  const std::map<std::string, WorkerLink> links = {{"e1", {0.010, 1e6, 0.9e6, 1 << 18, 100}},
                                                   {"c1", {0.002, 125e6, 125e6, 1 << 18, 100}}};
  DirectLink older, latest, gone;
  older.from_site = "cloud";
  older.to_site = "edge-1";
  older.link = {1.0e6, 0.02};
  older.measured_at = 100;
  latest = older;
  latest.from_site = "edge-1";  // the other direction: the same pair
  latest.to_site = "cloud";
  latest.link = {1.2e6, 0.03};
  latest.measured_at = 200;
  gone.from_site = "lab";
  gone.to_site = "cloud";
  gone.link = {5e6, 0.001};
  // The newest first: the view must pick by measured_at, not by order.
  const TopologyView view = BuildTopologyView(workers, links, {latest, older, gone}, nullptr);
  ASSERT_EQ(view.links.size(), 2u);
  EXPECT_EQ(view.links[0].a, "cloud");
  EXPECT_EQ(view.links[0].b, "edge-1");
  ASSERT_TRUE(view.links[0].measured.has_value());
  ASSERT_TRUE(view.links[0].direct.has_value());
  EXPECT_DOUBLE_EQ(view.links[0].direct->link.bandwidth_bytes_s, 1.2e6);
  EXPECT_EQ(view.links[0].direct->from_site, "edge-1");
  EXPECT_EQ(view.links[1].a, "cloud");
  EXPECT_EQ(view.links[1].b, "lab");
  EXPECT_FALSE(view.links[1].measured.has_value());
  ASSERT_TRUE(view.links[1].direct.has_value());
  EXPECT_DOUBLE_EQ(view.links[1].direct->link.bandwidth_bytes_s, 5e6);
}

DirectLink Tested(const std::string& from, const std::string& to, double bytes_s, double latency_s,
                  double at) {
  DirectLink d;
  d.from_site = from;
  d.to_site = to;
  d.link = {bytes_s, latency_s};
  d.measured_at = at;
  return d;
}

// A data-parallel target across nodes and a federated one take the latest link test
// between the sites their links were named by (in either direction), keeping the declared
// latency where it is larger; links given inline, a target on one node, and a pair never
// tested keep what was declared.
TEST(TopologyView, ATargetsLinksBetweenSitesAreTheLatestLinkTests) {
  const std::vector<DirectLink> tests = {Tested("b", "a", 2e6, 0.001, 10),
                                         Tested("a", "b", 3e6, 0.001, 20),
                                         Tested("edge-1", "cloud", 1e6, 0.030, 5)};
  Target dp;
  dp.kind = Target::Kind::kDataParallel;
  dp.devices = 4;
  dp.nodes = 2;
  dp.inter_node = {1e9, 0.005};
  dp.inter_node_sites = {"a", "b"};
  ApplyLinkTests(tests, &dp);
  EXPECT_DOUBLE_EQ(dp.inter_node.bandwidth_bytes_s, 3e6);  // the later test
  EXPECT_DOUBLE_EQ(dp.inter_node.latency_s, 0.005);        // the declared one is larger
  EXPECT_NE(dp.links_measured.find("inter_node measured by a link test between a and b"),
            std::string::npos)
      << dp.links_measured;

  Target fed;
  fed.kind = Target::Kind::kFederated;
  fed.edge_cloud = {5e6, 0.010};
  fed.edge_cloud_sites = {"cloud", "edge-1"};
  ApplyLinkTests(tests, &fed);
  EXPECT_DOUBLE_EQ(fed.edge_cloud.bandwidth_bytes_s, 1e6);
  EXPECT_DOUBLE_EQ(fed.edge_cloud.latency_s, 0.030);  // the measured one is larger

  Target inline_link = dp;
  inline_link.inter_node = {1e9, 0.005};
  inline_link.inter_node_sites = {"", ""};
  inline_link.links_measured.clear();
  Target one_node = inline_link;
  one_node.nodes = 1;
  one_node.inter_node_sites = {"a", "b"};
  Target untested = one_node;
  untested.nodes = 2;
  untested.inter_node_sites = {"a", "c"};
  for (Target* t : {&inline_link, &one_node, &untested}) {
    ApplyLinkTests(tests, t);
    EXPECT_DOUBLE_EQ(t->inter_node.bandwidth_bytes_s, 1e9);
    EXPECT_EQ(t->links_measured, "");
  }
}

}  // namespace
}  // namespace topotune
