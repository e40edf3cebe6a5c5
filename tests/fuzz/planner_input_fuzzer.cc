// Fuzzes the offline planner's files: any bytes as a replay table (CurveTable::Parse) and a
// PROFILE.csv (ParseProfileCsv), then `topotune predict`'s own path (PredictOffline) on them
// with a fixed topology. A file that does not parse gets an error that names it; files that
// parse plan without crashing, and every configuration ranked has finite terms with each
// value inside its interval.
//
// The input: byte 0 is the target accuracy (0: none given, so the table's
// "# target_accuracy=" or "# bench_target=" line, as without --target-accuracy; else
// byte / 255); byte 1 holds flags (kRecordedOn, kTrainSamples, and two bits that pick a set
// of what-if batch sizes); the rest is the table, a NUL byte, then the profile.
//
// Inputs are cut at kMaxInputBytes (and run.sh's -max_len is the same): the planner's work
// grows faster than the table, since each curve stopped short of the target is forecast by
// the curve model against all the others. Under ASan a 4 KiB table (up to ~100 such curves)
// plans in about 10 ms, a 64 KiB one in about 200 ms; 4 KiB holds every shape of table and
// profile (several optimizers, batch sizes, seeds, curves stopped short) and keeps the
// fuzzer at about a thousand inputs a second on one core.

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/predict_cli.h"
#include "tests/fuzz/fuzz_target.h"
#include "tuner/curve_table.h"
#include "tuner/planner.h"

namespace {

using nlohmann::json;

constexpr size_t kMaxInputBytes = 4096;

constexpr uint8_t kRecordedOn = 1 << 0;    ///< --curves-class cpu-1t (the "recorder" target's)
constexpr uint8_t kTrainSamples = 1 << 1;  ///< --train-samples 2000 (else the table's line)
constexpr int kWhatIfShift = 2;            ///< two bits: an index into kWhatIfBatches

const std::vector<int> kWhatIfBatches[4] = {{}, {32}, {8, 48, 1024}, {1, 100, 1 << 20}};

// Every kind of target: single (one of them on the class a table is recorded on), data moved
// over a link, data-parallel within a node and over nodes, federated. No train_samples: the
// table's "# train_samples=" line or the flag gives it, as for `topotune predict`.
const char kTopology[] = R"({
  "name": "planner-fuzz",
  "sites": {"edge": {"cpu-q25": 4, "cpu-1t": 1}, "cloud": {"cpu-2t": 8}},
  "links": [{"between": ["edge", "cloud"], "bandwidth_mbit_s": 10, "latency_ms": 40}],
  "data": {"site": "edge", "bytes": 6.2e6},
  "model_bytes": 248000,
  "targets": [
    {"name": "edge", "kind": "single", "class": "cpu-q25", "site": "edge"},
    {"name": "recorder", "kind": "single", "class": "cpu-1t", "site": "edge"},
    {"name": "cloud", "kind": "single", "class": "cpu-2t", "site": "cloud"},
    {"name": "cloud-x2", "kind": "data_parallel", "class": "cpu-2t", "site": "cloud",
     "devices": 2, "nodes": 1, "intra_node": {"bandwidth_mbit_s": 8000, "latency_ms": 0.05}},
    {"name": "cloud-x4", "kind": "data_parallel", "class": "cpu-2t", "site": "cloud",
     "devices": 4, "nodes": 2, "overlap": 0.5,
     "inter_node": {"bandwidth_mbit_s": 1000, "latency_ms": 0.2},
     "intra_node": {"bandwidth_mbit_s": 8000, "latency_ms": 0.05}},
    {"name": "edge-fedavg", "kind": "federated", "class": "cpu-q25", "site": "cloud",
     "clients_per_edge": 4, "edges": 1, "local_epochs": 2,
     "client_edge": {"bandwidth_mbit_s": 100, "latency_ms": 2},
     "edge_cloud": ["edge", "cloud"]}
  ]
})";

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// An estimate as PlansToJson writes it: finite, 0 <= lo <= value <= hi.
void CheckEstimate(const json& e, const std::string& target, const char* term) {
  const double value = e.at("value").get<double>();
  const double lo = e.at("lo").get<double>();
  const double hi = e.at("hi").get<double>();
  TOPOTUNE_FUZZ_CHECK(std::isfinite(value) && std::isfinite(lo) && std::isfinite(hi),
                      "target %s: %s %g [%g, %g] is not finite", target.c_str(), term, value, lo,
                      hi);
  TOPOTUNE_FUZZ_CHECK(0 <= lo && lo <= value && value <= hi,
                      "target %s: %s %g is not inside [%g, %g] (>= 0)", target.c_str(), term, value,
                      lo, hi);
}

void CheckAnswer(const json& answer) {
  size_t ranked_targets = 0;
  for (const json& t : answer.at("targets")) {
    const std::string name = t.at("name").get<std::string>();
    const json& ranked = t.at("ranked");
    TOPOTUNE_FUZZ_CHECK(!ranked.empty() || !t.at("note").get<std::string>().empty(),
                        "target %s has neither a ranking nor a note", name.c_str());
    if (!ranked.empty()) ++ranked_targets;
    double last = 0.0;
    for (const json& p : ranked) {
      CheckEstimate(p.at("tta_s"), name, "tta_s");
      for (const auto& [term, e] : p.at("terms").items()) CheckEstimate(e, name, term.c_str());
      const double tta = p.at("tta_s").at("value").get<double>();
      TOPOTUNE_FUZZ_CHECK(tta >= last, "target %s: the ranking does not ascend (%g after %g)",
                          name.c_str(), tta, last);
      last = tta;
      const int local = p.at("local_batch").get<int>();
      const int global = p.at("global_batch").get<int>();
      TOPOTUNE_FUZZ_CHECK(
          local >= 1 && global >= local && p.at("config").at("batch_size").get<int>() == global,
          "target %s: local batch %d, global %d, configuration's %d", name.c_str(), local, global,
          p.at("config").at("batch_size").get<int>());
      TOPOTUNE_FUZZ_CHECK(p.at("steps_per_epoch").get<long long>() >= 1,
                          "target %s: %lld steps per epoch", name.c_str(),
                          p.at("steps_per_epoch").get<long long>());
      const double lr = p.at("config").at("learning_rate").get<double>();
      TOPOTUNE_FUZZ_CHECK(lr > 0 && std::isfinite(lr), "target %s: learning rate %g", name.c_str(),
                          lr);
    }
  }
  TOPOTUNE_FUZZ_CHECK(answer.at("best").size() == ranked_targets,
                      "%zu targets in \"best\", %zu ranked", answer.at("best").size(),
                      ranked_targets);
  // What `topotune predict --json` prints.
  try {
    (void)answer.dump(2);
  } catch (const json::exception& e) {
    TOPOTUNE_FUZZ_CHECK(false, "the answer does not print: %s", e.what());
  }
}

}  // namespace

TOPOTUNE_FUZZ_TARGET(PlannerInputFuzzerTestOneInput) {
  using namespace topotune;
  if (size > kMaxInputBytes) size = kMaxInputBytes;
  fuzz::InputReader in(data, size);
  const uint8_t accuracy = in.Byte();
  const uint8_t flags = in.Byte();
  const std::string rest = in.Rest();
  const size_t nul = rest.find('\0');
  const std::string curves_text = rest.substr(0, nul);
  const std::string profile_text = nul == std::string::npos ? "" : rest.substr(nul + 1);

  PredictOptions options;
  options.curves = "curves.csv";
  options.profile = "profile.csv";
  options.topology = "topology.json";
  options.target_accuracy = accuracy / 255.0;
  if (flags & kRecordedOn) options.curves_class = "cpu-1t";
  if (flags & kTrainSamples) options.train_samples = 2000;
  options.what_if_batches = kWhatIfBatches[(flags >> kWhatIfShift) & 3];

  // The parsers alone: an error starts with the name of the file at fault.
  StatusOr<CurveTable> table = CurveTable::Parse(curves_text, options.curves);
  if (!table.ok()) {
    TOPOTUNE_FUZZ_CHECK(StartsWith(table.status().message(), options.curves),
                        "a table's error does not name the file: '%s'",
                        table.status().message().c_str());
  }
  StatusOr<std::vector<PlacementMeasurement>> profile =
      ParseProfileCsv(profile_text, options.profile);
  if (!profile.ok()) {
    TOPOTUNE_FUZZ_CHECK(StartsWith(profile.status().message(), options.profile),
                        "a profile's error does not name the file: '%s'",
                        profile.status().message().c_str());
  }

  // The whole of `topotune predict`, less reading and printing.
  StatusOr<json> answer = PredictOffline(options, curves_text, profile_text, kTopology);
  if (!table.ok() || !profile.ok()) {
    TOPOTUNE_FUZZ_CHECK(!answer.ok(), "predict answers on a file that does not parse");
    const Status& first = !table.ok() ? table.status() : profile.status();
    TOPOTUNE_FUZZ_CHECK(answer.status().message() == first.message(),
                        "predict's error '%s' is not the parser's '%s'",
                        answer.status().message().c_str(), first.message().c_str());
    return 0;
  }
  if (!answer.ok()) {
    TOPOTUNE_FUZZ_CHECK(!answer.status().message().empty(), "an error without a message");
    // With the target accuracy and the training samples given, a table and a profile that
    // parse must plan: what the planner cannot cost is a note on the target, not an error.
    TOPOTUNE_FUZZ_CHECK(options.target_accuracy == 0 || options.train_samples == 0,
                        "parsed files do not plan: %s", answer.status().message().c_str());
    return 0;
  }
  CheckAnswer(*answer);
  return 0;
}
