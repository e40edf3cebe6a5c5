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

// The address-space budget a worker training on the CPU under a cgroup memory limit gives
// itself (CapAddressSpace): the limit, less what the process already holds resident
// (VmRSS) and a margin for what else the cgroup charges (1/16 of the limit, at least
// 64 MiB). 0 without a limit, or where nothing would be left. Over a cgroup's limit the
// kernel kills the process; past its address space an allocation fails, and the trainer
// and the probe catch that as out of memory.
int64_t CgroupMemoryBudget();

// Caps this process's address space (RLIMIT_AS) at its current size (VmSize), once the
// BLAS has mapped its per-thread buffers (OpenBLAS hangs where it cannot), plus
// `budget_bytes`, and the bytes LibTorch's CPU tensors allocated from now on hold at the
// budget less a reserve (1/8 of it, at least 64 MiB) for what the libraries allocate
// themselves: a tensor past that throws LibTorch's out-of-memory error before the address
// space runs out inside a library that would crash on it (oneDNN's JIT, which it also
// turns off). malloc then keeps one arena, as each reserves 64 MiB of address space.
// Returns the cap in bytes, or 0 if it could not be set.
int64_t CapAddressSpace(int64_t budget_bytes);

// Where the address space is already capped (`ulimit -v`), limits the tensors to the room
// left under that cap as CapAddressSpace does (mapping the BLAS's buffers first where the
// room allows). Returns the cap in bytes, 0 without one.
int64_t HonourAddressSpaceLimit();

// Starts a new peak. cuda_device: the GPU's index, or -1 for the CPU. On a GPU it first
// releases the caching allocator's free blocks; on the CPU it gives back to the kernel what
// malloc holds free (an earlier, larger run's buffers), then resets VmHWM to the current
// RSS (/proc/self/clear_refs "5", Linux >= 4.0).
void ResetPeakMemory(int cuda_device);

// Bytes at the peak since the last ResetPeakMemory; 0 if unknown.
int64_t PeakMemory(int cuda_device);

}  // namespace topotune
