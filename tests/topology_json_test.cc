#include "api/topology_json.h"

#include <gtest/gtest.h>

#include <string>

namespace topotune {
namespace {

const char kTopology[] = R"({
  "name": "edge-or-cloud",
  "sites": {"edge-1": {"jetson-nano": 4}, "cloud": {"a100": 8}},
  "links": [{"between": ["edge-1", "cloud"], "bandwidth_mbit_s": 10, "latency_ms": 40}],
  "data": {"site": "edge-1", "bytes": 2e9},
  "model_bytes": 9.4e7, "train_samples": 50000,
  "targets": [
    {"name": "jetson", "kind": "single", "class": "jetson-nano", "site": "edge-1"},
    {"name": "a100x4", "kind": "data_parallel", "class": "a100", "site": "cloud",
     "devices": 4, "nodes": 1, "intra_node": {"bandwidth_mbit_s": 2400000, "latency_ms": 0.005},
     "overlap": 0.5},
    {"name": "fedavg", "kind": "federated", "class": "jetson-nano", "site": "cloud",
     "clients_per_edge": 4, "edges": 1, "local_epochs": 2,
     "client_edge": {"bandwidth_mbit_s": 100, "latency_ms": 2},
     "edge_cloud": ["edge-1", "cloud"]}]})";

TEST(TopologyJson, ParsesSitesLinksDataAndResolvesEachTargetsLinks) {
  StatusOr<Topology> t = ParseTopology(kTopology);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->sites.at("cloud").at("a100"), 8);
  EXPECT_EQ(t->workload.train_samples, 50000);
  ASSERT_EQ(t->targets.size(), 3u);
  // The jetson trains where the data is: nothing moves.
  EXPECT_EQ(t->targets[0].data_bytes, 0.0);
  // The cloud needs the data over the 10 Mbit/s link: 1.25 MB/s, 40 ms.
  const Target& dp = t->targets[1];
  EXPECT_EQ(dp.kind, Target::Kind::kDataParallel);
  EXPECT_EQ(dp.devices, 4);
  EXPECT_DOUBLE_EQ(dp.data_bytes, 2e9);
  EXPECT_DOUBLE_EQ(dp.data_link.bandwidth_bytes_s, 1.25e6);
  EXPECT_DOUBLE_EQ(dp.data_link.latency_s, 0.04);
  EXPECT_DOUBLE_EQ(dp.intra_node.bandwidth_bytes_s, 3e11);
  EXPECT_DOUBLE_EQ(dp.overlap, 0.5);
  const Target& fed = t->targets[2];
  EXPECT_EQ(fed.local_epochs, 2);
  EXPECT_DOUBLE_EQ(fed.edge_cloud.bandwidth_bytes_s, 1.25e6);  // by the sites' link
  EXPECT_DOUBLE_EQ(fed.client_edge.latency_s, 0.002);
  EXPECT_EQ(fed.data_bytes, 0.0);  // clients hold their own data
}

// Each mistake gets an error that names the field.
TEST(TopologyJson, MistakesNameTheField) {
  struct Case {
    std::string from, to, field;
  };
  const Case cases[] = {
      {R"("devices": 4, "nodes": 1)", R"("devices": 16, "nodes": 1)", "targets[1]"},  // 8 a100
      {R"("devices": 4, "nodes": 1)", R"("devices": 4, "nodes": 3)", "targets[1].devices"},
      {R"("overlap": 0.5)", R"("overlap": 1.5)", "targets[1].overlap"},
      {R"("edge_cloud": ["edge-1", "cloud"])", R"("edge_cloud": ["edge-1", "mars"])",
       "targets[2].edge_cloud"},
      {R"("kind": "federated")", R"("kind": "gossip")", "targets[2].kind"},
      {R"("latency_ms": 40})", R"("latency_ms": 40, "jitter": 1})",
       "unknown field links[0].jitter"},
      {R"("bandwidth_mbit_s": 10,)", R"("bandwidth_mbit_s": -10,)", "links[0].bandwidth_mbit_s"},
      {R"("data": {"site": "edge-1")", R"("data": {"site": "edge-2")", "data.site"},
      {R"("site": "edge-1"},)", R"("site": "edge-9"},)", "targets[0].site"},
      {R"("train_samples": 50000)", R"("train_samples": 0)", "train_samples"},
      {R"({"name": "jetson")", R"({"name": "fedavg")", "targets[2].name"},
      {R"("client_edge": {"bandwidth_mbit_s": 100, "latency_ms": 2},)", "",
       "targets[2].client_edge"},
  };
  for (const Case& c : cases) {
    std::string text = kTopology;
    const size_t at = text.find(c.from);
    ASSERT_NE(at, std::string::npos) << c.from;
    text.replace(at, c.from.size(), c.to);
    StatusOr<Topology> t = ParseTopology(text);
    ASSERT_FALSE(t.ok()) << c.to;
    EXPECT_EQ(t.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(t.status().message().find(c.field), std::string::npos)
        << c.field << " not in: " << t.status().message();
  }
  // No link between the data and the cloud: the cloud target cannot say what moving costs.
  StatusOr<Topology> unlinked = ParseTopology(R"({
    "sites": {"edge-1": {"jetson-nano": 1}, "cloud": {"a100": 1}},
    "data": {"site": "edge-1", "bytes": 1e9},
    "targets": [{"name": "a100", "class": "a100", "site": "cloud"}]})");
  ASSERT_FALSE(unlinked.ok());
  EXPECT_NE(unlinked.status().message().find("no link joins them"), std::string::npos)
      << unlinked.status().message();
  EXPECT_FALSE(ParseTopology("[]").ok());
  EXPECT_FALSE(ParseTopology(std::string(2 << 20, '{')).ok());
}

}  // namespace
}  // namespace topotune
