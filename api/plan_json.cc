#include "api/plan_json.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "api/protocol.h"

namespace topotune {
namespace {

using nlohmann::json;

json EstimateJson(const Estimate& e) {
  return {{"value", e.value}, {"lo", e.lo}, {"hi", e.hi}, {"measured", e.measured}};
}

}  // namespace

std::string DescribeTarget(const Target& t) {
  std::string s = std::string(TargetKindName(t.kind)) + ", " + t.device_class;
  if (t.kind == Target::Kind::kDataParallel) {
    s += " x" + std::to_string(t.devices) + " on " + std::to_string(t.nodes) + " node" +
         (t.nodes == 1 ? "" : "s");
  } else if (t.kind == Target::Kind::kFederated) {
    auto count = [](int n, const std::string& what) {
      return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
    };
    s += ", " + count(t.clients_per_edge, "client") + " at each of " + count(t.edges, "edge") +
         ", " + count(t.local_epochs, "local epoch") + " per round";
  }
  if (!t.site.empty()) s += " at " + t.site;
  return s;
}

const char* TargetKindName(Target::Kind kind) {
  switch (kind) {
    case Target::Kind::kSingle:
      return "single";
    case Target::Kind::kDataParallel:
      return "data_parallel";
    case Target::Kind::kFederated:
      return "federated";
  }
  return "?";
}

json PlansToJson(const std::vector<TargetPlan>& plans, double target_accuracy) {
  json out = {{"target_accuracy", target_accuracy}, {"targets", json::array()}};
  std::vector<std::pair<double, json>> best;
  for (const TargetPlan& plan : plans) {
    json t = {{"name", plan.target.name},
              {"kind", TargetKindName(plan.target.kind)},
              {"class", plan.target.device_class},
              {"site", plan.target.site},
              {"description", DescribeTarget(plan.target)},
              {"note", plan.note},
              {"left_out", plan.left_out},
              {"ranked", json::array()}};
    for (const PlannedConfig& p : plan.ranked) {
      const TtaBreakdown& c = p.cost;
      t["ranked"].push_back(
          {{"config",
            {{"batch_size", p.config.batch_size},
             {"learning_rate", p.config.learning_rate},
             {"optimizer", OptimizerName(p.config.optimizer)}}},
           {"local_batch", c.local_batch},
           {"global_batch", c.global_batch},
           {"steps_per_epoch", c.steps_per_epoch},
           {"tta_s", EstimateJson(c.tta)},
           {"terms",
            {{"epochs", EstimateJson(c.epochs)},
             {"step_compute_s", EstimateJson(c.step_compute)},
             {"step_sync_s", EstimateJson(c.step_sync)},
             {"epoch_s", EstimateJson(c.epoch)},
             {"rounds", EstimateJson(c.rounds)},
             {"round_s", EstimateJson(c.round)},
             {"transfer_s", EstimateJson(c.transfer)},
             {"warmup_steps", EstimateJson(c.warmup_steps)},
             {"warmup_s", EstimateJson(c.warmup)}}},
           {"epochs_from", p.epochs_from},
           {"step_from", p.step_from},
           {"sync_from", p.sync_from},
           {"transfer_from", p.transfer_from},
           {"measured_tta_s", p.measured_tta_s ? json(*p.measured_tta_s) : json(nullptr)}});
    }
    if (!plan.ranked.empty()) {
      best.push_back({plan.ranked.front().cost.tta.value,
                      {{"target", plan.target.name}, {"ranked_first", t["ranked"][0]}}});
    }
    out["targets"].push_back(std::move(t));
  }
  std::stable_sort(best.begin(), best.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  out["best"] = json::array();
  for (auto& [tta, j] : best) out["best"].push_back(std::move(j));
  out["data_move"] = json::array();
  for (const DataMoveVerdict& v : CompareDataMoves(plans)) {
    const bool never = !std::isfinite(v.min_bandwidth_bytes_s);
    out["data_move"].push_back(
        {{"moving", v.moving},
         {"staying", v.staying},
         {"moving_train_s", v.moving_train_s},
         {"transfer_s", v.transfer_s},
         {"staying_s", v.staying_s},
         {"data_bytes", v.data_bytes},
         {"bandwidth_bytes_s", v.bandwidth_bytes_s},
         {"break_even_transfer_s", v.break_even_transfer_s},
         {"min_bandwidth_bytes_s", never ? json(nullptr) : json(v.min_bandwidth_bytes_s)},
         {"max_data_bytes", v.max_data_bytes},
         {"pays", v.pays}});
  }
  return out;
}

json TopologyViewToJson(const TopologyView& view) {
  auto link_json = [](const std::optional<Link>& l) -> json {
    if (!l) return nullptr;
    return {{"bandwidth_mbit_s", l->bandwidth_bytes_s * 8e-6}, {"latency_ms", l->latency_s * 1e3}};
  };
  json sites = json::array();
  for (const SiteView& s : view.sites) {
    json measured = nullptr;
    if (s.measured > 0) {
      measured = {
          {"rtt_ms", s.median.rtt_s * 1e3},          {"down_mbit_s", s.median.down_bytes_s * 8e-6},
          {"up_mbit_s", s.median.up_bytes_s * 8e-6}, {"pad_bytes", s.median.pad_bytes},
          {"workers_measured", s.measured},          {"measured_at", s.median.measured_at}};
    }
    sites.push_back({{"site", s.site},
                     {"classes", s.classes},
                     {"declared_classes", s.declared},
                     {"workers", s.workers},
                     {"link_to_controller", measured}});
  }
  json links = json::array();
  for (const LinkView& l : view.links) {
    json direct = nullptr;
    if (l.direct) {
      const DirectLink& d = *l.direct;
      direct = {{"from", d.from_site},
                {"to", d.to_site},
                {"sender", d.sender},
                {"listener", d.listener},
                {"bytes", d.bytes},
                {"seconds", d.seconds},
                {"rtt_ms", d.rtt_s * 1e3},
                {"bandwidth_mbit_s", d.link.bandwidth_bytes_s * 8e-6},
                {"latency_ms", d.link.latency_s * 1e3},
                {"measured_at", d.measured_at}};
    }
    links.push_back({{"between", {l.a, l.b}},
                     {"declared", link_json(l.declared)},
                     {"measured", link_json(l.measured)},
                     {"direct", direct}});
  }
  return {{"sites", sites},
          {"links", links},
          {"how",
           "link_to_controller: the median over a site's connected workers of echoes timed "
           "over each worker's connection (the least round trip of small echoes; the fastest of "
           "three pads of pad_bytes each way for throughput, which includes the worker's "
           "handling of the frame). links.measured: the path worker -> "
           "controller -> worker, a bound on the link between the sites (half of each "
           "round trip; the least of the four throughputs), not a direct transfer. "
           "links.direct: the latest link test, a timed transfer of `bytes` from a worker at "
           "one site straight to a worker at the other: bandwidth = bytes / (seconds - one "
           "round trip), latency = half a one-byte round trip on the same connection"}};
}

}  // namespace topotune
