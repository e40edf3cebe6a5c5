#include "api/predict_cli.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "api/plan_json.h"
#include "api/topology_json.h"
#include "tuner/curve_table.h"
#include "tuner/target.h"

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

// The table's "# train_samples=N" line: a whole number in [1, 2^40] (as --train-samples and
// a topology's "train_samples"); 0 without the line.
StatusOr<long long> TrainSamplesLine(const CurveTable& table, const std::string& name) {
  auto it = table.meta().find("train_samples");
  if (it == table.meta().end()) return 0LL;
  const std::string& text = it->second;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= 1 && v <= static_cast<double>(kMaxTrainSamples)) ||
      v != std::floor(v)) {
    return Status::InvalidArgument(name + ": '# train_samples=' must be a whole number in [1, " +
                                   std::to_string(kMaxTrainSamples) + "], got '" +
                                   text.substr(0, 32) + "'");
  }
  return static_cast<long long>(v);
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), s >= 100 ? "%.0f" : s >= 10 ? "%.1f" : "%.2f", s);
  return buf;
}

}  // namespace

void PrintPlans(const nlohmann::json& answer, int top) {
  using nlohmann::json;
  std::printf("time to accuracy %.3f per target (m = measured, p = predicted; intervals 80%%)\n",
              answer["target_accuracy"].get<double>());
  auto mark = [](const json& e) { return e["measured"].get<bool>() ? "m" : "p"; };
  auto value = [](const json& e, double scale = 1.0) {
    return Seconds(e["value"].get<double>() * scale);
  };
  for (const json& t : answer["targets"]) {
    std::printf("\ntarget %s (%s)\n", t["name"].get<std::string>().c_str(),
                t["description"].get<std::string>().c_str());
    if (t["ranked"].empty()) {
      std::printf("  no answer: %s\n", t["note"].get<std::string>().c_str());
      continue;
    }
    // Totals over the run explain a ranking: compute = (epochs x steps + the warm-up's steps)
    // x step, sync epochs x steps x the per-step synchronisation (a larger batch syncs fewer
    // times per epoch).
    const bool federated = t["kind"] == "federated";
    std::printf("  %4s %6s %6s %9s %-5s %10s %19s %9s %7s %11s %11s %10s %10s\n", "rank", "batch",
                "local", "lr", "opt", "tta_s", "80% interval", "epochs", "steps", "compute_s",
                federated ? "rounds" : "sync_s", "transfer_s", "measured_s");
    const int shown = std::min<int>(top, static_cast<int>(t["ranked"].size()));
    for (int i = 0; i < shown; ++i) {
      const json& p = t["ranked"][i];
      const json& terms = p["terms"];
      char lr[32];
      std::snprintf(lr, sizeof(lr), "%.3g", p["config"]["learning_rate"].get<double>());
      const std::string interval =
          Seconds(p["tta_s"]["lo"].get<double>()) + "-" + Seconds(p["tta_s"]["hi"].get<double>());
      const double steps =
          terms["epochs"]["value"].get<double>() * p["steps_per_epoch"].get<double>();
      const double warmup =
          terms.contains("warmup_steps") ? terms["warmup_steps"]["value"].get<double>() : 0.0;
      const std::string third =
          federated ? value(terms["rounds"]) + " " + mark(terms["rounds"])
                    : value(terms["step_sync_s"], steps) + " " + mark(terms["step_sync_s"]);
      // Measured on the target's class, where a trial there reached the target.
      const json& measured = p.contains("measured_tta_s") ? p["measured_tta_s"] : json();
      const std::string measured_s =
          measured.is_number() ? Seconds(measured.get<double>()) : std::string("-");
      std::printf("  %4d %6d %6d %9s %-5s %10s %19s %7s %s %7lld %9s %s %11s %8s %s %10s\n", i + 1,
                  p["config"]["batch_size"].get<int>(), p["local_batch"].get<int>(), lr,
                  p["config"]["optimizer"].get<std::string>().c_str(), value(p["tta_s"]).c_str(),
                  interval.c_str(), value(terms["epochs"]).c_str(), mark(terms["epochs"]),
                  p["steps_per_epoch"].get<long long>(),
                  value(terms["step_compute_s"], steps + warmup).c_str(),
                  mark(terms["step_compute_s"]), third.c_str(), value(terms["transfer_s"]).c_str(),
                  mark(terms["transfer_s"]), measured_s.c_str());
    }
    const json& best = t["ranked"][0];
    const std::string sync = best["sync_from"].get<std::string>();
    std::printf("  best: epochs %s; step %s%s\n", best["epochs_from"].get<std::string>().c_str(),
                best["step_from"].get<std::string>().c_str(),
                sync.empty() ? "" : ("; sync " + sync).c_str());
    const std::string transfer = best.value("transfer_from", "");
    if (!transfer.empty()) std::printf("  data moved over: %s\n", transfer.c_str());
    const std::string left_out = t.value("left_out", "");
    if (!left_out.empty()) std::printf("  left out: %s\n", left_out.c_str());
  }
  // The comparison: which target, at which batch size ("best" is fastest first).
  const json& best = answer["best"];
  if (best.empty()) return;
  std::printf("\nfastest first:\n");
  for (const json& b : best) {
    const json& p = b["ranked_first"];
    const double transfer = p["terms"]["transfer_s"]["value"].get<double>();
    std::printf(
        "  %-20s %10s s  (80%%: %s-%s s)  batch %d, lr %.3g, %s%s\n",
        b["target"].get<std::string>().c_str(), value(p["tta_s"]).c_str(),
        Seconds(p["tta_s"]["lo"].get<double>()).c_str(),
        Seconds(p["tta_s"]["hi"].get<double>()).c_str(), p["config"]["batch_size"].get<int>(),
        p["config"]["learning_rate"].get<double>(),
        p["config"]["optimizer"].get<std::string>().c_str(),
        transfer > 0 ? (", of which moving the data " + Seconds(transfer) + " s").c_str() : "");
  }
  if (best.size() > 1) {
    const json& first = best[0]["ranked_first"]["tta_s"];
    const json& second = best[1]["ranked_first"]["tta_s"];
    const bool overlap = first["hi"].get<double>() >= second["lo"].get<double>();
    std::printf("answer: %s, %.2fx faster than %s%s\n",
                best[0]["target"].get<std::string>().c_str(),
                second["value"].get<double>() / first["value"].get<double>(),
                best[1]["target"].get<std::string>().c_str(),
                overlap ? " (the 80% intervals overlap: not a clear win)" : "");
  }
  // When moving the data pays off: the break-even link and data size.
  for (const json& v : answer.value("data_move", json::array())) {
    const double mbit = 8e-6;
    std::printf(
        "data: %s trains in %s s after moving %.3g MB in %s s (%.3g Mbit/s); %s trains where "
        "the data is in %s s:\n",
        v["moving"].get<std::string>().c_str(), Seconds(v["moving_train_s"].get<double>()).c_str(),
        v["data_bytes"].get<double>() * 1e-6, Seconds(v["transfer_s"].get<double>()).c_str(),
        v["bandwidth_bytes_s"].get<double>() * mbit, v["staying"].get<std::string>().c_str(),
        Seconds(v["staying_s"].get<double>()).c_str());
    if (v["min_bandwidth_bytes_s"].is_null()) {
      std::printf("  moving the data never pays: %s is faster even on a free link\n",
                  v["staying"].get<std::string>().c_str());
    } else {
      const bool pays = v["pays"].get<bool>();
      std::printf(
          "  moving the data %s: it would %s with a transfer %s %s s, i.e. a link %s %.3g Mbit/s "
          "for these bytes, or %s %.3g MB on this link\n",
          pays ? "pays here" : "does NOT pay here", pays ? "stop paying" : "pay",
          pays ? "over" : "under", Seconds(v["break_even_transfer_s"].get<double>()).c_str(),
          pays ? "below" : "of at least", v["min_bandwidth_bytes_s"].get<double>() * mbit,
          pays ? "over" : "at most", v["max_data_bytes"].get<double>() * 1e-6);
    }
  }
}

StatusOr<nlohmann::json> PredictOffline(const PredictOptions& options,
                                        const std::string& curves_text,
                                        const std::string& profile_text,
                                        const std::string& topology_text) {
  StatusOr<CurveTable> table = CurveTable::Parse(curves_text, options.curves);
  if (!table.ok()) return table.status();
  StatusOr<std::vector<PlacementMeasurement>> profile =
      ParseProfileCsv(profile_text, options.profile);
  if (!profile.ok()) return profile.status();
  StatusOr<Topology> topology = ParseTopology(topology_text);
  if (!topology.ok()) {
    return Status::InvalidArgument(options.topology + ": " + topology.status().message());
  }

  PlanInput input;
  input.curves = &*table;
  input.profile = *profile;
  input.targets = topology->targets;
  input.curves_class = options.curves_class;
  input.what_if_batches = options.what_if_batches;
  input.workload = topology->workload;
  auto meta_number = [&](const char* key) {
    auto it = table->meta().find(key);
    return it == table->meta().end() ? 0.0 : std::atof(it->second.c_str());
  };
  input.target_accuracy = options.target_accuracy > 0          ? options.target_accuracy
                          : meta_number("target_accuracy") > 0 ? meta_number("target_accuracy")
                                                               : meta_number("bench_target");
  if (!(input.target_accuracy > 0 && input.target_accuracy <= 1)) {
    return Status::InvalidArgument(
        "needs --target-accuracy X in (0, 1] (the table has no '# target_accuracy=' line)");
  }
  if (options.train_samples > 0) {
    input.workload.train_samples = options.train_samples;
  } else if (input.workload.train_samples == 0) {
    StatusOr<long long> samples = TrainSamplesLine(*table, options.curves);
    if (!samples.ok()) return samples.status();
    input.workload.train_samples = *samples;
  }
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  if (!plans.ok()) return plans.status();
  return PlansToJson(*plans, input.target_accuracy);
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
  StatusOr<std::string> profile_text = ReadFile(options.profile, "profile");
  if (!profile_text.ok()) return fail(profile_text.status());
  StatusOr<std::string> topology_text = ReadFile(options.topology, "topology");
  if (!topology_text.ok()) return fail(topology_text.status());
  StatusOr<nlohmann::json> answer =
      PredictOffline(options, *curves_text, *profile_text, *topology_text);
  if (!answer.ok()) return fail(answer.status());
  if (options.as_json) {
    std::printf("%s\n", answer->dump(2).c_str());
  } else {
    PrintPlans(*answer, options.top);
  }
  return 0;
}

}  // namespace topotune
