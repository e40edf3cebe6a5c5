#include "workers/memory_stats.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

namespace {

// LibTorch's CPU allocator with a limit on the bytes its tensors hold: past it, an
// allocation throws LibTorch's out-of-memory error, as the CUDA caching allocator does on
// a full GPU. Each block carries its size in a header of one alignment unit, so the data
// stays aligned and the raw interface (context == data) works. Written for both LibTorch
// 1.13 (Debian: `allocate` const) and 2.3 or later (the GPU kit: `allocate` not const, and
// `copy_data` to implement), hence no `override`: each version overrides what it has.
class BudgetAllocator final : public c10::Allocator {
 public:
  static BudgetAllocator& Instance() {
    static BudgetAllocator allocator;
    return allocator;
  }

  void SetLimit(int64_t bytes) { limit_ = bytes; }

  c10::DataPtr allocate(size_t n) const { return Allocate(n); }
  c10::DataPtr allocate(size_t n) { return Allocate(n); }
  c10::DeleterFnPtr raw_deleter() const { return &Delete; }
  void copy_data(void* dest, const void* src, size_t count) const { std::memcpy(dest, src, count); }

 private:
  static constexpr size_t kHeader = 64;  // c10's alignment of CPU tensors

  c10::DataPtr Allocate(size_t n) const {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &Delete, cpu};
    const int64_t bytes = static_cast<int64_t>(n);
    const int64_t in_use = used_.fetch_add(bytes) + bytes;
    if (in_use > limit_) {
      used_ -= bytes;
      C10_THROW_ERROR(OutOfMemoryError,
                      "out of memory: tried to allocate " + std::to_string(n) +
                          " bytes on the CPU, with " + std::to_string(in_use - bytes) + " of " +
                          std::to_string(limit_.load()) + " bytes of the memory budget in use");
    }
    char* block = nullptr;
    try {
      block = static_cast<char*>(c10::alloc_cpu(n + kHeader));
    } catch (...) {
      used_ -= bytes;
      throw;
    }
    *reinterpret_cast<size_t*>(block) = n;
    return {block + kHeader, block + kHeader, &Delete, cpu};
  }

  static void Delete(void* data) {
    if (data == nullptr) return;
    char* block = static_cast<char*>(data) - kHeader;
    Instance().used_ -= static_cast<int64_t>(*reinterpret_cast<size_t*>(block));
    c10::free_cpu(block);
  }

  mutable std::atomic<int64_t> used_{0};
  std::atomic<int64_t> limit_{INT64_MAX};
};

// Limits the tensors allocated from now on to `headroom`, the address space left under the
// cap, less a reserve (1/8, at least 64 MiB) for what the libraries allocate themselves.
// oneDNN writes through a null code buffer when its JIT cannot allocate one (a SIGSEGV in
// convolution_backward, at batch sizes that just fit), and its reorder buffers bypass
// LibTorch's allocator: under a cap, convolutions take ATen's own kernels instead, whose
// buffers are tensors. And one malloc arena: each arena a new thread opens (a trial's, a
// probe's) reserves 64 MiB of address space, room that a batch which fit may then lack.
void LimitTensors(int64_t headroom) {
  const int64_t reserve = std::max<int64_t>(int64_t{64} << 20, headroom / 8);
  BudgetAllocator& allocator = BudgetAllocator::Instance();
  allocator.SetLimit(std::max<int64_t>(0, headroom - reserve));
  c10::SetCPUAllocator(&allocator, /*priority=*/1);
  at::globalContext().setUserEnabledMkldnn(false);
  mallopt(M_ARENA_MAX, 1);
}

// The address space OpenBLAS maps for one thread's buffer (BUFFER_SIZE, 128 MiB on x86-64),
// with room to spare.
constexpr int64_t kBlasBufferBytes = int64_t{160} << 20;

// OpenBLAS maps a buffer of 128 MiB for each thread the first time that thread multiplies
// matrices, keeps it, and where the map fails retries forever (OpenBLAS issue 5289, fixed
// in 0.3.30; Debian bookworm has 0.3.21): under an address-space cap that leaves less room
// a worker hangs in its first convolution. So multiply once outside a parallel region
// (OpenBLAS's own threads) and once on every thread of LibTorch's pool at the same time,
// before the cap: the buffers are then mapped, counted in VmSize, and reused. They are
// address space, not memory: a multiplication touches a few MiB of one.
void MapBlasBuffers() {
  const at::Tensor a = at::ones({512, 512});
  at::mm(a, a);
  const int64_t threads = std::max(1, at::get_num_threads());
  std::atomic<int64_t> arrived{0};
  // Each waits until every thread has arrived (at most 1 s in all), so that the
  // multiplications overlap and each holds a buffer of its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      ++arrived;
      while (arrived < threads && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
      }
      at::mm(a, a);
    }
  });
}

}  // namespace

int64_t CapAddressSpace(int64_t budget_bytes) {
  if (budget_bytes <= 0) return 0;
  MapBlasBuffers();
  const int64_t size = ReadProcNumber("/proc/self/status", "VmSize:", 1024);
  if (size <= 0 || budget_bytes <= 0) return 0;
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(size + budget_bytes);
  if (setrlimit(RLIMIT_AS, &limit) != 0) return 0;
  LimitTensors(budget_bytes);
  return size + budget_bytes;
}

int64_t HonourAddressSpaceLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 0;
  const int64_t cap = static_cast<int64_t>(limit.rlim_cur);
  int64_t size = ReadProcNumber("/proc/self/status", "VmSize:", 1024);
  if (size <= 0 || cap <= size) return 0;
  // Where the cap leaves room for them, the BLAS's buffers are mapped now (above).
  if (cap - size > (at::get_num_threads() + 2) * kBlasBufferBytes) {
    MapBlasBuffers();
    size = ReadProcNumber("/proc/self/status", "VmSize:", 1024);
    if (size <= 0 || cap <= size) return 0;
  }
  LimitTensors(cap - size);
  return cap;
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
