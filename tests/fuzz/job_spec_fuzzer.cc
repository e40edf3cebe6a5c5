// Fuzzes the job spec parser: any bytes as a POST /v1/jobs body. A spec that parses must
// survive what the controller does with it: stored as DumpJson(JobSpecToJson(spec)) and read
// back with ParseJobSpec, to the same normalised form.

#include <string>

#include "api/job_spec_json.h"
#include "api/json_input.h"
#include "tests/fuzz/fuzz_target.h"

TOPOTUNE_FUZZ_TARGET(JobSpecFuzzerTestOneInput) {
  using namespace topotune;
  const std::string text(reinterpret_cast<const char*>(data), size);
  StatusOr<JobSpec> spec = ParseJobSpec(text);
  if (!spec.ok()) {
    TOPOTUNE_FUZZ_CHECK(!spec.status().message().empty(), "an error without a message");
    return 0;
  }
  const nlohmann::json normal = JobSpecToJson(*spec);
  StatusOr<JobSpec> again = JobSpecFromJson(normal);
  TOPOTUNE_FUZZ_CHECK(again.ok(), "the normalised spec %s is refused: %s", DumpJson(normal).c_str(),
                      again.status().ToString().c_str());
  TOPOTUNE_FUZZ_CHECK(JobSpecToJson(*again) == normal,
                      "normalising twice changes the spec: %s became %s", DumpJson(normal).c_str(),
                      DumpJson(JobSpecToJson(*again)).c_str());
  // What GetJob decodes: the stored text of the normalised spec.
  const std::string stored = DumpJson(normal);
  StatusOr<JobSpec> reloaded = ParseJobSpec(stored);
  TOPOTUNE_FUZZ_CHECK(reloaded.ok(), "the stored spec %s is refused: %s", stored.c_str(),
                      reloaded.status().ToString().c_str());
  TOPOTUNE_FUZZ_CHECK(JobSpecToJson(*reloaded) == normal, "the stored spec %s reloads as %s",
                      stored.c_str(), DumpJson(JobSpecToJson(*reloaded)).c_str());
  return 0;
}
