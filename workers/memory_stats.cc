#include "workers/memory_stats.h"

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

// The caching allocator's statistics need a CUDA build of LibTorch; a CPU build has no
// such header and measures the CPU only.
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#define TOPOTUNE_HAVE_CUDA_ALLOCATOR 1
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace topotune {

int64_t ReadProcNumber(const char* path, const std::string& key, int64_t multiplier) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    std::istringstream fields(line.substr(key.size()));
    int64_t value = 0;
    if (fields >> value) return value * multiplier;
  }
  return 0;
}

namespace {

// The path of this process's cgroup for `controller` ("memory", "cpu"; "" = cgroup v2),
// from /proc/self/cgroup ("4:memory:/a/b", "0::/a/b"); empty if it is not listed.
std::string OwnCgroup(const std::string& controller) {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::stringstream list(controllers);
    std::string c;
    bool match = controller.empty() && controllers.empty();
    while (!match && std::getline(list, c, ',')) match = c == controller;
    if (match) return line.substr(b + 1);
  }
  return "";
}

// The first word of a file, or "" if unreadable.
std::string FirstWord(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  in >> word;
  return word;
}

// A v1 number; a limit of 2^62 or more is "none" (the kernel's unlimited value).
int64_t V1Limit(const std::string& path) {
  const std::string word = FirstWord(path);
  if (word.empty()) return 0;
  const long long v = std::atoll(word.c_str());
  return v <= 0 || v >= (1LL << 62) ? 0 : v;
}

// cgroup v2's files are under /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host.
std::string V2File(const std::string& cgroup, const std::string& name) {
  for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    const std::string path = std::string(root) + cgroup + "/" + name;
    if (std::ifstream(path)) return path;
  }
  return "";
}

}  // namespace

int64_t CgroupMemoryLimit() {
  const std::string v1 = OwnCgroup("memory");
  if (!v1.empty()) {
    const int64_t limit = V1Limit("/sys/fs/cgroup/memory" + v1 + "/memory.limit_in_bytes");
    if (limit > 0) return limit;
  }
  const std::string v2 = V2File(OwnCgroup(""), "memory.max");
  const std::string word = v2.empty() ? "" : FirstWord(v2);
  return word.empty() || word == "max" ? 0 : std::atoll(word.c_str());
}

int64_t CgroupMemoryBudget() {
  const int64_t limit = CgroupMemoryLimit();
  if (limit <= 0) return 0;
  const int64_t resident = ReadProcNumber("/proc/self/status", "VmRSS:", 1024);
  const int64_t margin = std::max<int64_t>(int64_t{64} << 20, limit / 16);
  return std::max<int64_t>(0, limit - resident - margin);
}

int64_t CapAddressSpace(int64_t budget_bytes) {
  const int64_t size = ReadProcNumber("/proc/self/status", "VmSize:", 1024);
  if (size <= 0 || budget_bytes <= 0) return 0;
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(size + budget_bytes);
  return setrlimit(RLIMIT_AS, &limit) == 0 ? size + budget_bytes : 0;
}

double CgroupCpuLimit() {
  const std::string v1 = OwnCgroup("cpu");
  if (!v1.empty()) {
    const std::string dir = "/sys/fs/cgroup/cpu" + v1;
    const long long quota = std::atoll(FirstWord(dir + "/cpu.cfs_quota_us").c_str());
    const long long period = std::atoll(FirstWord(dir + "/cpu.cfs_period_us").c_str());
    if (quota > 0 && period > 0) return static_cast<double>(quota) / period;
  }
  const std::string v2 = V2File(OwnCgroup(""), "cpu.max");
  if (v2.empty()) return 0.0;
  std::ifstream in(v2);
  std::string quota;
  long long period = 0;
  in >> quota >> period;
  return quota.empty() || quota == "max" || period <= 0 ? 0.0 : std::atof(quota.c_str()) / period;
}

void ResetPeakMemory(int cuda_device) {
#ifdef TOPOTUNE_HAVE_CUDA_ALLOCATOR
  if (cuda_device >= 0) {
    // Release the blocks an earlier run left cached, or the new peak would start at them.
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(cuda_device));
    return;
  }
#endif
  if (cuda_device >= 0) return;
  malloc_trim(0);
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
}

int64_t PeakMemory(int cuda_device) {
#ifdef TOPOTUNE_HAVE_CUDA_ALLOCATOR
  if (cuda_device >= 0) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(cuda_device));
    // Index 0 is StatType::AGGREGATE (all pools) in every version; the enum itself moved
    // from c10::cuda::CUDACachingAllocator to c10::CachingDeviceAllocator in PyTorch 2.x.
    return stats.reserved_bytes[0].peak;
  }
#endif
  if (cuda_device >= 0) return 0;
  return ReadProcNumber("/proc/self/status", "VmHWM:", 1024);
}

}  // namespace topotune
