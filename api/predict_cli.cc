#include "api/predict_cli.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/topology_json.h"
#include "tuner/curve_table.h"

namespace topotune {
namespace {

using nlohmann::json;

StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(std::string("cannot read the ") + what + " " + path);
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().size() > (size_t{256} << 20)) {
    return Status::InvalidArgument(path + " is larger than 256 MiB");
  }
  return text.str();
}

const char* KindName(Target::Kind kind) {
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

json EstimateJson(const Estimate& e) {
  return {{"value", e.value}, {"lo", e.lo}, {"hi", e.hi}, {"measured", e.measured}};
}

std::string Describe(const Target& t) {
  std::string s = std::string(KindName(t.kind)) + ", " + t.device_class;
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

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), s >= 100 ? "%.0f" : s >= 10 ? "%.1f" : "%.2f", s);
  return buf;
}

// "m" for a measured term, "p" for a predicted one.
const char* Mark(const Estimate& e) { return e.measured ? "m" : "p"; }

void PrintPlans(const std::vector<TargetPlan>& plans, double target_accuracy, int top) {
  std::printf("time to accuracy %.3f per target (m = measured, p = predicted; intervals 80%%)\n",
              target_accuracy);
  for (const TargetPlan& plan : plans) {
    std::printf("\ntarget %s (%s)\n", plan.target.name.c_str(), Describe(plan.target).c_str());
    if (plan.ranked.empty()) {
      std::printf("  no answer: %s\n", plan.note.c_str());
      continue;
    }
    const bool federated = plan.target.kind == Target::Kind::kFederated;
    std::printf("  %4s %6s %6s %9s %-5s %10s %19s %9s %10s %10s %10s\n", "rank", "batch", "local",
                "lr", "opt", "tta_s", "80% interval", "epochs", "step_ms",
                federated ? "rounds" : "sync_ms", "transfer_s");
    const int shown = std::min<int>(top, static_cast<int>(plan.ranked.size()));
    for (int i = 0; i < shown; ++i) {
      const PlannedConfig& p = plan.ranked[i];
      const TtaBreakdown& c = p.cost;
      char lr[32];
      std::snprintf(lr, sizeof(lr), "%.3g", p.config.learning_rate);
      const std::string interval = Seconds(c.tta.lo) + "-" + Seconds(c.tta.hi);
      const std::string third = federated
                                    ? Seconds(c.rounds.value) + " " + Mark(c.rounds)
                                    : Seconds(c.step_sync.value * 1e3) + " " + Mark(c.step_sync);
      std::printf("  %4d %6d %6d %9s %-5s %10s %19s %7s %s %8s %s %10s %8s %s\n", i + 1,
                  p.config.batch_size, c.local_batch, lr, OptimizerName(p.config.optimizer),
                  Seconds(c.tta.value).c_str(), interval.c_str(), Seconds(c.epochs.value).c_str(),
                  Mark(c.epochs), Seconds(c.step_compute.value * 1e3).c_str(), Mark(c.step_compute),
                  third.c_str(), Seconds(c.transfer.value).c_str(), Mark(c.transfer));
    }
    const PlannedConfig& best = plan.ranked.front();
    std::printf("  best: epochs %s; step %s%s\n", best.epochs_from.c_str(), best.step_from.c_str(),
                best.sync_from.empty() ? "" : ("; sync " + best.sync_from).c_str());
  }
  // The comparison: which target, at which batch size.
  std::vector<const TargetPlan*> answered;
  for (const TargetPlan& plan : plans) {
    if (!plan.ranked.empty()) answered.push_back(&plan);
  }
  std::sort(answered.begin(), answered.end(), [](const TargetPlan* a, const TargetPlan* b) {
    return a->ranked.front().cost.tta.value < b->ranked.front().cost.tta.value;
  });
  if (answered.empty()) return;
  std::printf("\nfastest first:\n");
  for (const TargetPlan* plan : answered) {
    const PlannedConfig& p = plan->ranked.front();
    std::printf(
        "  %-20s %10s s  (80%%: %s-%s s)  batch %d, lr %.3g, %s%s\n", plan->target.name.c_str(),
        Seconds(p.cost.tta.value).c_str(), Seconds(p.cost.tta.lo).c_str(),
        Seconds(p.cost.tta.hi).c_str(), p.config.batch_size, p.config.learning_rate,
        OptimizerName(p.config.optimizer),
        p.cost.transfer.value > 0
            ? (", of which moving the data " + Seconds(p.cost.transfer.value) + " s").c_str()
            : "");
  }
  const TargetPlan* first = answered.front();
  if (answered.size() > 1) {
    const TargetPlan* second = answered[1];
    const double a = first->ranked.front().cost.tta.value;
    const double b = second->ranked.front().cost.tta.value;
    const bool overlap = first->ranked.front().cost.tta.hi >= second->ranked.front().cost.tta.lo;
    std::printf("answer: %s, %.2fx faster than %s%s\n", first->target.name.c_str(), b / a,
                second->target.name.c_str(),
                overlap ? " (the 80% intervals overlap: not a clear win)" : "");
  }
}

}  // namespace

json PlansToJson(const std::vector<TargetPlan>& plans, double target_accuracy) {
  json out = {{"target_accuracy", target_accuracy}, {"targets", json::array()}};
  std::vector<std::pair<double, json>> best;
  for (const TargetPlan& plan : plans) {
    json t = {{"name", plan.target.name},
              {"kind", KindName(plan.target.kind)},
              {"class", plan.target.device_class},
              {"site", plan.target.site},
              {"note", plan.note},
              {"ranked", json::array()}};
    for (const PlannedConfig& p : plan.ranked) {
      const TtaBreakdown& c = p.cost;
      t["ranked"].push_back({{"config",
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
                               {"transfer_s", EstimateJson(c.transfer)}}},
                             {"epochs_from", p.epochs_from},
                             {"step_from", p.step_from},
                             {"sync_from", p.sync_from}});
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
  return out;
}

int RunPredictOffline(const PredictOptions& options) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "topotune predict: %s\n", s.message().c_str());
    return 1;
  };
  if (options.curves.empty() || options.profile.empty() || options.topology.empty()) {
    return fail(
        Status::InvalidArgument("needs --curves TABLE.csv, --profile PROFILE.csv and "
                                "--topology FILE"));
  }
  StatusOr<std::string> curves_text = ReadFile(options.curves, "curves");
  if (!curves_text.ok()) return fail(curves_text.status());
  StatusOr<CurveTable> table = CurveTable::Parse(*curves_text, options.curves);
  if (!table.ok()) return fail(table.status());
  StatusOr<std::string> profile_text = ReadFile(options.profile, "profile");
  if (!profile_text.ok()) return fail(profile_text.status());
  StatusOr<std::vector<PlacementMeasurement>> profile =
      ParseProfileCsv(*profile_text, options.profile);
  if (!profile.ok()) return fail(profile.status());
  StatusOr<std::string> topology_text = ReadFile(options.topology, "topology");
  if (!topology_text.ok()) return fail(topology_text.status());
  StatusOr<Topology> topology = ParseTopology(*topology_text);
  if (!topology.ok()) {
    return fail(Status::InvalidArgument(options.topology + ": " + topology.status().message()));
  }

  PlanInput input;
  input.curves = &*table;
  input.profile = *profile;
  input.targets = topology->targets;
  input.curves_class = options.curves_class;
  input.workload = topology->workload;
  auto meta_number = [&](const char* key) {
    auto it = table->meta().find(key);
    return it == table->meta().end() ? 0.0 : std::atof(it->second.c_str());
  };
  input.target_accuracy = options.target_accuracy > 0          ? options.target_accuracy
                          : meta_number("target_accuracy") > 0 ? meta_number("target_accuracy")
                                                               : meta_number("bench_target");
  if (!(input.target_accuracy > 0 && input.target_accuracy <= 1)) {
    return fail(Status::InvalidArgument(
        "needs --target-accuracy X in (0, 1] (the table has no '# target_accuracy=' line)"));
  }
  if (options.train_samples > 0) {
    input.workload.train_samples = options.train_samples;
  } else if (input.workload.train_samples == 0) {
    input.workload.train_samples = static_cast<long long>(meta_number("train_samples"));
  }
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  if (!plans.ok()) return fail(plans.status());
  if (options.as_json) {
    std::printf("%s\n", PlansToJson(*plans, input.target_accuracy).dump(2).c_str());
  } else {
    PrintPlans(*plans, input.target_accuracy, options.top);
  }
  return 0;
}

}  // namespace topotune
