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
  const TopologyView view = BuildTopologyView(workers, links, &declared);

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
  const TopologyView bare = BuildTopologyView(workers, links, nullptr);
  ASSERT_EQ(bare.links.size(), 1u);
  EXPECT_FALSE(bare.links[0].declared.has_value());
  EXPECT_TRUE(bare.links[0].measured.has_value());
  EXPECT_EQ(bare.sites.size(), 2u);
}

}  // namespace
}  // namespace topotune
