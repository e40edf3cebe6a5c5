#pragma once

// `topotune predict --curves TABLE.csv --profile PROFILE.csv --topology FILE`: the offline
// planner (tuner/planner.h) on files a user already has, with no server and no worker.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tuner/planner.h"

namespace topotune {

struct PredictOptions {
  std::string curves;                ///< a replay-format table (optional "# train_samples=N" line)
  std::string profile;               ///< PROFILE.csv
  std::string topology;              ///< examples/topologies/*.json
  double target_accuracy = 0.0;      ///< 0: the table's "# target_accuracy=" or "# bench_target="
  long long train_samples = 0;       ///< 0: the topology's, else the table's "# train_samples="
  std::string curves_class;          ///< the class the table was recorded on ("" = none)
  std::vector<int> what_if_batches;  ///< --batch-sizes: also ranked there, scaled (predicted)
  int top = 5;                       ///< configurations shown per target (text)
  bool as_json = false;
};

// Prints a planning answer (api/plan_json.h's PlansToJson) as text: each target's top
// `top` configurations with their terms, then the targets fastest first.
void PrintPlans(const nlohmann::json& answer, int top);

// The offline planner's answer (PlansToJson) on the text of the three files, which
// `options.curves`, `.profile` and `.topology` name in errors: what RunPredictOffline prints,
// without reading or printing anything. The target accuracy and the training samples come
// from `options`, else from the topology or the table's "# key=value" lines. Errors: a file
// that does not parse (its name and line), no target accuracy, or the planner's.
StatusOr<nlohmann::json> PredictOffline(const PredictOptions& options,
                                        const std::string& curves_text,
                                        const std::string& profile_text,
                                        const std::string& topology_text);

// Reads the three files and runs PredictOffline, then prints its answer on stdout (text or
// JSON); errors go to stderr. Returns the process exit status: 0, 1 for bad files or values.
int RunPredictOffline(const PredictOptions& options);

}  // namespace topotune
