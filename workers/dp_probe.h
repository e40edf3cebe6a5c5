#pragma once

// Measures one data-parallel placement for real: `world` processes, each training the model
// on its own batch of `local_batch` random samples, synchronise their gradients with a ring
// all-reduce (LibTorch's c10d over Gloo, TCP) after every backward pass, then step the
// optimizer: synchronous data-parallel SGD as DistributedDataParallel does it, without
// bucketing, so nothing overlaps. The model and its batches stay on the CPU: a GPU
// placement (NCCL, device memory) is not what this measures. Each process calls
// ProbeDataParallel with its rank; the ranks meet at a TCPStore that rank 0 serves. What
// one rank measures is its own step: the sync includes the wait for the slowest rank, as
// it does in training.
//
// This is the measurement the planner's PROFILE.csv rows with nodes x devices_per_node > 1
// record (tuner/planner.h): step_seconds = compute + sync, sync_seconds = sync.
// Keeps LibTorch and Gloo out of this header (dp_probe.cc includes them).

#include <cstdint>
#include <string>

#include "tuner/status.h"

namespace topotune {

struct DataParallelRequest {
  std::string model;
  std::string data_format = "cifar10-bin";
  std::string data_dir;  ///< the input shape is read from the dataset, as the probe does
  int local_batch = 0;   ///< samples per process per step
  int rank = 0;
  int world = 1;
  std::string store_host;  ///< rank 0's address: it serves the TCPStore there
  int store_port = 0;
  std::string bind_address;  ///< this process's address for Gloo's connections
  int warmup_steps = 3;      ///< untimed steps first (allocations, connections)
  int timed_steps = 20;      ///< then at least this many timed steps
  /// ... and until this many seconds have been timed, so that a CPU quota (a CFS period is
  /// 100 ms) shows in the means. Every rank runs the same steps: they agree through the
  /// all-reduce, and the first rank to have timed this long ends it (the others may be a
  /// step short). At most 600.
  double min_timed_s = 1.0;
  double timeout_s = 120.0;  ///< rendezvous and each collective give up after this
};

struct DataParallelProbe {
  int rank = 0;
  int world = 1;
  int local_batch = 0;
  int64_t gradient_bytes = 0;  ///< bytes all-reduced per step (every gradient, float32)
  int steps = 0;               ///< timed steps
  // Means over the timed steps: what training pays per step, waits included. Under a CPU
  // quota most steps run at full speed and a few wait out the rest of the period, so a
  // median would report the full speed.
  double step_s = 0.0;     ///< compute + sync
  double compute_s = 0.0;  ///< forward + backward + optimizer
  double sync_s = 0.0;     ///< the gradients' all-reduce (with its copies)
  double step_median_s = 0.0;
  double sync_p90_s = 0.0;
  /// The sum of every weight after the last step: equal on every rank when the gradients
  /// were all-reduced (the ranks start from the same weights and train on different data).
  double weights_checksum = 0.0;
};

// Runs the placement's steps as rank `request.rank` and returns what it measured. Never
// throws: a bad request is InvalidArgument; a failed rendezvous or collective (a peer that
// never came, a dropped connection) is Unavailable naming what failed.
StatusOr<DataParallelProbe> ProbeDataParallel(const DataParallelRequest& request);

}  // namespace topotune
