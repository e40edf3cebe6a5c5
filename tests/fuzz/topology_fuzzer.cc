// Fuzzes the topology parser and the planner behind it: any bytes as a topology file (the
// body of a what-if request, later). A topology that parses must plan without crashing on a
// small curve table and profile, and every answer must be a number with its value inside
// its interval: never NaN, never lo > value or value > hi.

#include <cmath>
#include <string>
#include <vector>

#include "api/topology_json.h"
#include "tests/fuzz/fuzz_target.h"
#include "tuner/planner.h"

namespace {

// Batch 16 reaches 0.5 at epoch 3 and 4 (two seeds), 64 at epoch 6, 256 never does.
const char kCurves[] =
    "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds\n"
    "16,0.01,sgd,0,1,0.2,1\n16,0.01,sgd,0,2,0.4,1\n16,0.01,sgd,0,3,0.5,1\n"
    "16,0.01,sgd,1,1,0.2,1\n16,0.01,sgd,1,2,0.3,1\n16,0.01,sgd,1,3,0.4,1\n16,0.01,sgd,1,4,0.6,1\n"
    "64,0.01,adam,0,1,0.1,0.5\n64,0.01,adam,0,2,0.2,0.5\n64,0.01,adam,0,3,0.3,0.5\n"
    "64,0.01,adam,0,4,0.4,0.5\n64,0.01,adam,0,5,0.45,0.5\n64,0.01,adam,0,6,0.5,0.5\n"
    "256,0.1,sgd,0,1,0.1,0.2\n256,0.1,sgd,0,2,0.1,0.2\n";

bool Sane(const topotune::Estimate& e) {
  return !std::isnan(e.value) && !std::isnan(e.lo) && !std::isnan(e.hi) && e.lo <= e.value &&
         e.value <= e.hi && e.lo >= 0;
}

}  // namespace

TOPOTUNE_FUZZ_TARGET(TopologyFuzzerTestOneInput) {
  using namespace topotune;
  const std::string text(reinterpret_cast<const char*>(data), size);
  StatusOr<Topology> topology = ParseTopology(text);
  if (!topology.ok()) {
    TOPOTUNE_FUZZ_CHECK(!topology.status().message().empty(), "an error without a message");
    return 0;
  }
  static const CurveTable table = *CurveTable::Parse(kCurves, "fuzz.csv");
  PlanInput input;
  input.curves = &table;
  input.target_accuracy = 0.5;
  input.workload = topology->workload;
  if (input.workload.train_samples == 0) input.workload.train_samples = 1000;
  input.curves_class = "cpu-1t";
  input.targets = topology->targets;
  for (const char* cls : {"cpu-1t", "edge", "cloud", "a100", "jetson-nano"}) {
    input.profile.push_back({cls, 1, 1, 16, 0.004, 0});
    input.profile.push_back({cls, 1, 1, 64, 0.011, 0});
    input.profile.push_back({cls, 1, 2, 16, 0.004, 0.001});
    input.profile.push_back({cls, 2, 2, 16, 0.004, 0.003});
  }
  StatusOr<std::vector<TargetPlan>> plans = Plan(input);
  TOPOTUNE_FUZZ_CHECK(plans.ok(), "a parsed topology does not plan: %s",
                      plans.status().ToString().c_str());
  TOPOTUNE_FUZZ_CHECK(plans->size() == topology->targets.size(), "%zu plans for %zu targets",
                      plans->size(), topology->targets.size());
  for (const TargetPlan& plan : *plans) {
    TOPOTUNE_FUZZ_CHECK(!plan.ranked.empty() || !plan.note.empty(),
                        "target %s has neither a ranking nor a note", plan.target.name.c_str());
    double last = 0.0;
    for (const PlannedConfig& p : plan.ranked) {
      const TtaBreakdown& c = p.cost;
      for (const Estimate* e : {&c.epochs, &c.step_compute, &c.step_sync, &c.epoch, &c.rounds,
                                &c.round, &c.transfer, &c.tta}) {
        TOPOTUNE_FUZZ_CHECK(Sane(*e), "target %s: an estimate %g [%g, %g] is not sane",
                            plan.target.name.c_str(), e->value, e->lo, e->hi);
      }
      TOPOTUNE_FUZZ_CHECK(c.tta.value >= last, "target %s: the ranking does not ascend",
                          plan.target.name.c_str());
      TOPOTUNE_FUZZ_CHECK(c.local_batch >= 1 && c.global_batch >= c.local_batch,
                          "target %s: local %d, global %d", plan.target.name.c_str(),
                          c.local_batch, c.global_batch);
      last = c.tta.value;
    }
  }
  return 0;
}
