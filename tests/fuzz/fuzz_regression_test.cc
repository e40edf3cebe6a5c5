// Replays every input of tests/fuzz/corpus/<harness>/ and tests/fuzz/regressions/<harness>/
// through the harness, built with g++ as ordinary code: a crash or a failed check aborts
// the test binary (the file being replayed is printed first).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int JobSpecFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int FrameFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int RestRouterFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int TopologyFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int PlannerInputFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

// The files of corpus/<harness>/ and regressions/<harness>/, sorted; dot files skipped.
std::vector<fs::path> InputsOf(const std::string& harness) {
  std::vector<fs::path> inputs;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(TOPOTUNE_FUZZ_DIR) / kind / harness;
    if (!fs::is_directory(dir)) continue;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') {
        inputs.push_back(entry.path());
      }
    }
  }
  std::sort(inputs.begin(), inputs.end());
  return inputs;
}

// Runs every input of `harness` through `target`; returns how many there were.
size_t Replay(const std::string& harness, int (*target)(const uint8_t*, size_t)) {
  const std::vector<fs::path> inputs = InputsOf(harness);
  for (const fs::path& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replaying %s (%zu bytes)\n", path.c_str(), bytes.size());
    EXPECT_EQ(target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0) << path;
  }
  return inputs.size();
}

TEST(FuzzRegression, JobSpecInputs) {
  EXPECT_GT(Replay("job_spec_fuzzer", JobSpecFuzzerTestOneInput), 0u);
}

TEST(FuzzRegression, FrameInputs) {
  EXPECT_GT(Replay("frame_fuzzer", FrameFuzzerTestOneInput), 0u);
}

TEST(FuzzRegression, RestRouterInputs) {
  EXPECT_GT(Replay("rest_router_fuzzer", RestRouterFuzzerTestOneInput), 0u);
}

TEST(FuzzRegression, TopologyInputs) {
  EXPECT_GT(Replay("topology_fuzzer", TopologyFuzzerTestOneInput), 0u);
}

TEST(FuzzRegression, PlannerInputs) {
  EXPECT_GT(Replay("planner_input_fuzzer", PlannerInputFuzzerTestOneInput), 0u);
}

}  // namespace
