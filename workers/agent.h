#pragma once

#include <memory>
#include <string>

#include "tuner/status.h"

namespace topotune {

struct AgentOptions {
  std::string controller_host = "127.0.0.1";
  int controller_port = 7701;
  std::string worker_id;                       ///< stable name; default: the host name
  std::string data_root = ".";                 ///< relative dataset paths start here
  std::string checkpoint_dir = "checkpoints";  ///< where segments save and resume
  int threads = 0;                             ///< intra-op threads; 0 = LibTorch's default
  double connect_timeout_s = 60;               ///< give up reconnecting after this long
  /// > 0: cap the address space (RLIMIT_AS, as `ulimit -v` does) this far above its size
  /// once LibTorch is up, to emulate a device with little memory.
  int64_t memory_budget_bytes = 0;
  std::string replay_table;     ///< non-empty: answer trials from this replay table, no training
  double replay_speedup = 1.0;  ///< simulated seconds per real second; 0 = no waiting
};

// The worker agent: connects to topotuned's gateway, registers its device profile, trains
// the segments it is assigned on a training thread, streams an epoch report after every
// epoch, stops when told, and reconnects when the connection drops. Run() blocks.
class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves until Shutdown(), the controller refuses the worker, or the controller stays
  // unreachable for connect_timeout_s. Returns OK only after Shutdown().
  Status Run();
  // Thread- and signal-safe: asks Run() to return.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace topotune
