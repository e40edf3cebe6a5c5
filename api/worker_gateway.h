#pragma once

#include <memory>
#include <string>

#include "tuner/controller_service.h"
#include "tuner/status.h"

namespace topotune {

class TokenAuthority;

// The controller's end of the worker protocol (api/protocol.h) on Boost.Asio TCP: framing
// and authentication, no application logic. One thread runs every connection; frames from
// workers go to the ControllerService, frames to workers are queued from any thread.
//
// Every byte is untrusted. A connection must say hello with a worker token within
// hello_timeout_s; a frame's bytes are buffered only as they arrive (never what a header
// announces), and a begun frame must complete within frame_timeout_s. A worker that sends
// garbage gets an error frame naming the problem and is disconnected; one that misses
// heartbeats for lease_s loses its lease, and its trial goes back to the dispatcher. A hello
// under the name of a connected worker, with the same token, replaces that stale session.
//
// Links: once a worker of protocol 3 or later registers, the gateway times echoes over its
// connection (api/protocol.h), one at a time and only while nothing else is being written:
// three small ones for the round trip, then three pads of echo_pad_bytes down and three up
// for the throughput each way (the time less the round trip); the fastest of each three
// counts. The times include the worker's handling of the frame: on a worker starved of
// CPU the throughput reads low. The result
// goes to ControllerService::WorkerLinkMeasured. An echo_reply that answers no outstanding
// echo, or with a pad of the wrong size, is a protocol error.
//
// Between sites: once two workers of protocol 4 at different named sites have finished
// their echoes, the gateway runs a link test between them (api/protocol.h), one test at a
// time, once per pair of sites while the two workers stay connected. Its transfer lasts
// about 3 s at the bound through the controller (at least 256 KiB, at most
// link_test_bytes), so that a slow link finishes within the test's limit. The listener is the
// one the controller does not see at a loopback address (a loopback address is reachable
// from this host only); the sender is told the address the controller sees the listener
// at. The sender's report goes to ControllerService::DirectLinkMeasured. A link frame that
// names a test never started is a protocol error; one about a test already over is ignored.
// A test that fails, or takes over kLinkTestTimeoutS + 30 s, is logged, and its pair is
// tried again after 5 minutes or once one of its workers reconnects. A transfer too short
// to time (under two round trips or 10 ms: a link faster than the echoes showed) is
// repeated at once with 8 times the bytes, up to kMaxLinkTestBytes, which needs only the
// two round trips.
class WorkerGateway final : public WorkerChannel {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 7701;                       ///< 0 picks a free port
    double heartbeat_s = 2.0;              ///< how often both ends send a heartbeat
    double lease_s = 15.0;                 ///< silence after which a worker is dropped
    double hello_timeout_s = 10.0;         ///< a new connection must register within this
    double frame_timeout_s = 30.0;         ///< a begun frame must complete within this
    int max_connections = 1024;            ///< more are closed at once
    uint32_t echo_pad_bytes = 256u << 10;  ///< the throughput echoes' pad; 0 = no link probe
    int64_t link_test_bytes = 4 << 20;     ///< a link test's largest transfer; 0 = no tests
  };
  explicit WorkerGateway(Options options);
  ~WorkerGateway() override;
  WorkerGateway(const WorkerGateway&) = delete;
  WorkerGateway& operator=(const WorkerGateway&) = delete;

  // Must be called once before Start(); both must outlive the gateway.
  void Attach(ControllerService* service, TokenAuthority* tokens);
  // Binds and starts the network thread.
  Status Start();
  // The bound port (after Start).
  int port() const;
  // Closes every connection and joins the thread. Idempotent.
  void Stop();

  void SendSegment(const std::string& worker_id, const SegmentSpec& segment,
                   const std::string& checkpoint_file) override;
  void SendStop(const std::string& worker_id, int64_t trial_id, const std::string& reason) override;
  void SendProbe(const std::string& worker_id, const std::string& key, const std::string& model,
                 const DatasetSpec& dataset, const std::vector<int>& batch_sizes) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace topotune
