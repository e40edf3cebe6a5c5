#pragma once

#include <memory>
#include <string>

#include "tuner/status.h"

namespace topotune {

struct AgentOptions {
  std::string controller_host = "127.0.0.1";
  int controller_port = 7701;
  std::string worker_id;                       ///< stable name; default: the host name
  std::string device_class;                    ///< --class; "" = the controller's default
  std::string site;                            ///< --site; "" = none
  std::string data_root = ".";                 ///< relative dataset paths start here
  std::string checkpoint_dir = "checkpoints";  ///< where segments save and resume
  int threads = 0;                             ///< intra-op threads; 0 = LibTorch's default
  std::string token;                           ///< the worker token sent in hello
  /// > 0: give up when the controller stays unreachable this long; 0 = retry forever
  double connect_timeout_s = 0;
  double backoff_initial_s = 0.25;  ///< first reconnect delay; doubles, with jitter, ...
  double backoff_max_s = 30.0;      ///< ... up to this
  /// > 0: cap the address space (RLIMIT_AS, as `ulimit -v` does) this far above its size
  /// once LibTorch is up, to emulate a device with little memory.
  int64_t memory_budget_bytes = 0;
  std::string replay_table;     ///< non-empty: answer trials from this replay table, no training
  double replay_speedup = 1.0;  ///< simulated seconds per real second; 0 = no waiting
  /// Seconds of steps a probe times per batch size (ProbeRequest::min_timed_s). Longer
  /// averages over more of a device's variation (a CPU quota's periods, a shared machine's
  /// spells, a board's clocks settling) and delays the worker's first trial of a model by
  /// about this much per batch size of the job's space.
  double probe_seconds = 1.0;
};

// The worker agent: connects to topotuned's gateway, registers its device profile with its
// token, trains the segments it is assigned on a training thread, streams an epoch report
// after every epoch, stops when told, and reconnects with jittered, capped exponential
// backoff whenever the connection drops or the controller reports a non-fatal error. Run()
// blocks.
class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves until Shutdown(), a fatal refusal (an error frame with "fatal": its protocol
  // version or its token was rejected), or, with connect_timeout_s > 0, a controller
  // unreachable that long. Returns OK only after Shutdown().
  Status Run();
  // Thread- and signal-safe: asks Run() to return.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace topotune
