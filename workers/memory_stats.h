#pragma once

// Memory figures of the worker: the peak memory of what it trains, for curve points and
// device probes (the CUDA caching allocator's peak of reserved bytes on a GPU, the
// process's peak resident set, VmHWM, on the CPU), and numbers read from /proc. Keeps
// LibTorch out of this header.

#include <cstdint>
#include <string>

namespace topotune {

// The first number after `key` in a /proc file such as "VmHWM:   1234 kB", times
// `multiplier`; 0 if absent.
int64_t ReadProcNumber(const char* path, const std::string& key, int64_t multiplier);

// The limits of the cgroups this process is in (cgroup v1 memory and cpu controllers, or
// v2 memory.max and cpu.max): what a worker under a container's or the testbed's limits
// really has. 0 where there is no limit or no cgroup.
int64_t CgroupMemoryLimit();
// CPUs the quota allows (quota / period, e.g. 0.25); 0 without a quota.
double CgroupCpuLimit();

// Starts a new peak. cuda_device: the GPU's index, or -1 for the CPU. On a GPU it first
// releases the caching allocator's free blocks; on the CPU it gives back to the kernel what
// malloc holds free (an earlier, larger run's buffers), then resets VmHWM to the current
// RSS (/proc/self/clear_refs "5", Linux >= 4.0).
void ResetPeakMemory(int cuda_device);

// Bytes at the peak since the last ResetPeakMemory; 0 if unknown.
int64_t PeakMemory(int cuda_device);

}  // namespace topotune
