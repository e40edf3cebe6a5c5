#include "workers/memory_stats.h"

#include <malloc.h>

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
