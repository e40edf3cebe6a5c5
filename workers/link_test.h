#pragma once

// A worker's side of a link test (api/protocol.h, protocol 4): a timed transfer from one
// worker to another, which measures the link between their sites. No LibTorch.
//
// On the connection, after the sender's nonce: the listener answers "g" (go); the sender
// times a one-byte round trip ("p", answered "q"), then sends the test's bytes and times
// them up to the listener's one-byte acknowledgement ("k"). Neither clock runs while the
// listener is still busy with someone else's connection, so a stranger ahead of the
// sender delays the test but does not skew it.
//
// The listener accepts only what the test allows: connections one at a time, each given
// 5 s to open with the test's nonce, until one does (at most kLinkTestMaxAttempts), then
// exactly the test's bytes, read into a fixed 64 KiB buffer, all within kLinkTestTimeoutS.
// Nothing a peer sends can make it hold more memory, wait longer, or answer anyone but the
// controller.

#include <functional>
#include <memory>
#include <string>

#include "api/protocol.h"
#include "tuner/status.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace topotune {

class LinkTestSide {
 public:
  // Called once, on the io thread, with the report to send to the controller (its error set
  // when the test failed). Never called after Cancel().
  using Report = std::function<void(const LinkReportFrame&)>;

  // Listens on an ephemeral port of `local_address` (the address the worker reaches the
  // controller from) for the sender of test `f`; the port to announce in link_listening, or
  // why not.
  static StatusOr<std::shared_ptr<LinkTestSide>> Listen(boost::asio::io_context& io,
                                                        const std::string& local_address,
                                                        const LinkListenFrame& f, Report report);
  // Connects to the listener of test `f` and sends its bytes.
  static std::shared_ptr<LinkTestSide> Send(boost::asio::io_context& io, const LinkSendFrame& f,
                                            Report report);

  // The listening port (a listener's; 0 for a sender).
  int port() const;
  // Closes what is open; no report follows. Idempotent.
  void Cancel();

  ~LinkTestSide();
  LinkTestSide(const LinkTestSide&) = delete;
  LinkTestSide& operator=(const LinkTestSide&) = delete;

 private:
  struct Impl;
  explicit LinkTestSide(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace topotune
