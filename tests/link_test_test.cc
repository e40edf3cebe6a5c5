// A worker's side of a link test (workers/link_test.h) on loopback: a real transfer between
// a listener and a sender, and peers that do not follow the protocol.

#include "workers/link_test.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace topotune {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

const std::string kNonce = "0123456789abcdef0123456789abcdef";

// An io_context run on its own thread for the test's length.
class IoThread {
 public:
  IoThread() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~IoThread() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  asio::io_context& io() { return io_; }
  // Runs `f` on the io thread and waits for it.
  template <typename F>
  auto Do(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

// A report, delivered once from the io thread.
struct Reported {
  std::promise<LinkReportFrame> promise;
  std::future<LinkReportFrame> future = promise.get_future();
  LinkTestSide::Report Callback() {
    return [this](const LinkReportFrame& r) { promise.set_value(r); };
  }
  // The report, or one whose error says none came (never blocks past 20 s).
  LinkReportFrame Wait() {
    if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "no report within 20 s";
      LinkReportFrame none;
      none.error = "no report";
      return none;
    }
    return future.get();
  }
  bool Came(std::chrono::milliseconds within) {
    return future.wait_for(within) == std::future_status::ready;
  }
};

std::shared_ptr<LinkTestSide> Listen(IoThread& t, int64_t bytes, Reported& reported) {
  return t.Do([&] {
    StatusOr<std::shared_ptr<LinkTestSide>> side =
        LinkTestSide::Listen(t.io(), "127.0.0.1", {7, kNonce, bytes}, reported.Callback());
    EXPECT_TRUE(side.ok()) << side.status().ToString();
    return side.ok() ? *side : nullptr;
  });
}

// A peer that speaks raw bytes to the listener, blocking.
struct RawPeer {
  asio::io_context io;
  tcp::socket socket{io};
  explicit RawPeer(int port) {
    socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  }
  // Writes what the listener will take: it may close once it has read its bytes.
  void Write(const std::string& bytes) {
    boost::system::error_code ignored;
    asio::write(socket, asio::buffer(bytes), ignored);
  }
  // The sender's part before its bytes: the nonce, the listener's go, a ping and its answer.
  void Handshake() {
    Write(kNonce);
    char c = 0;
    asio::read(socket, asio::buffer(&c, 1));
    EXPECT_EQ(c, 'g');
    Write("p");
    asio::read(socket, asio::buffer(&c, 1));
    EXPECT_EQ(c, 'q');
  }
  // Whether the other end closed (reading gives EOF or a reset).
  bool ClosedByListener() {
    char c;
    boost::system::error_code ec;
    socket.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
};

TEST(LinkTest, ATransferIsTimedAndBothSidesReportIt) {
  IoThread t;
  Reported listener_report, sender_report;
  const int64_t bytes = 3 << 20;
  std::shared_ptr<LinkTestSide> listener = Listen(t, bytes, listener_report);
  ASSERT_TRUE(listener);
  const int port = t.Do([&] { return listener->port(); });
  ASSERT_GT(port, 0);
  std::shared_ptr<LinkTestSide> sender = t.Do([&] {
    return LinkTestSide::Send(t.io(), {7, kNonce, "127.0.0.1", port, bytes},
                              sender_report.Callback());
  });
  const LinkReportFrame s = sender_report.Wait();
  const LinkReportFrame l = listener_report.Wait();
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(l.error, "");
  EXPECT_EQ(s.id, 7);
  EXPECT_EQ(l.id, 7);
  EXPECT_EQ(s.bytes, bytes);
  EXPECT_EQ(l.bytes, bytes);
  EXPECT_GT(s.seconds, 0.0);
  EXPECT_GT(l.seconds, 0.0);
  EXPECT_GT(s.rtt_s, 0.0);
  EXPECT_EQ(l.rtt_s, 0.0);
  // The sender's clock runs from before the first byte to after the acknowledgement, which
  // the listener sends once its own clock has stopped.
  EXPECT_GE(s.seconds, l.seconds);
  t.Do([&] {
    listener.reset();
    sender.reset();
    return 0;
  });
}

TEST(LinkTest, ConnectionsWithoutTheNonceAreClosedUntilTheListenerGivesUp) {
  IoThread t;
  Reported reported;
  std::shared_ptr<LinkTestSide> listener = Listen(t, 1024, reported);
  ASSERT_TRUE(listener);
  const int port = t.Do([&] { return listener->port(); });
  for (int i = 0; i < kLinkTestMaxAttempts; ++i) {
    RawPeer peer(port);
    peer.Write(std::string(kLinkNonceChars, 'f'));  // 32 hex digits, not the test's
    EXPECT_TRUE(peer.ClosedByListener()) << "attempt " << i;
  }
  const LinkReportFrame r = reported.Wait();
  EXPECT_NE(
      r.error.find(std::to_string(kLinkTestMaxAttempts) + " connections without the test's nonce"),
      std::string::npos)
      << r.error;
  t.Do([&] {
    listener.reset();
    return 0;
  });
}

TEST(LinkTest, AStrangerBeforeTheSenderDoesNotSpoilTheTest) {
  IoThread t;
  Reported listener_report, sender_report;
  std::shared_ptr<LinkTestSide> listener = Listen(t, 256 << 10, listener_report);
  ASSERT_TRUE(listener);
  const int port = t.Do([&] { return listener->port(); });
  {
    RawPeer stranger(port);
    stranger.Write("GET / HTTP/1.1\r\nHost: x\r\n\r\n.....");  // 32 bytes, not a nonce
    EXPECT_TRUE(stranger.ClosedByListener());
  }
  // One that says nothing, connected while the sender waits behind it: the listener drops
  // it after a few seconds, and the sender's clock does not run meanwhile.
  RawPeer silent(port);
  std::shared_ptr<LinkTestSide> sender = t.Do([&] {
    return LinkTestSide::Send(t.io(), {7, kNonce, "127.0.0.1", port, 256 << 10},
                              sender_report.Callback());
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.ClosedByListener());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  const LinkReportFrame s = sender_report.Wait();
  EXPECT_EQ(s.error, "");
  EXPECT_EQ(listener_report.Wait().error, "");
  // 256 KiB on loopback: milliseconds, not the seconds spent behind the silent one.
  EXPECT_LT(s.seconds, 1.0);
  EXPECT_LT(s.rtt_s, 1.0);
  t.Do([&] {
    listener.reset();
    sender.reset();
    return 0;
  });
}

TEST(LinkTest, ASenderThatStopsShortOrSendsTooMuchIsHandled) {
  {
    IoThread t;
    Reported reported;
    std::shared_ptr<LinkTestSide> listener = Listen(t, 1 << 20, reported);
    ASSERT_TRUE(listener);
    const int port = t.Do([&] { return listener->port(); });
    {
      RawPeer peer(port);
      peer.Handshake();
      peer.Write(std::string(1000, 'x'));
    }  // closed after 1,000 of 1 MiB
    const LinkReportFrame r = reported.Wait();
    EXPECT_NE(r.error.find("the sender stopped after 1000 of 1048576 bytes"), std::string::npos)
        << r.error;
    t.Do([&] {
      listener.reset();
      return 0;
    });
  }
  {
    // Four times the bytes: the listener reads exactly its own, acknowledges, and is done
    // (closing with the rest unread).
    IoThread t;
    Reported reported;
    std::shared_ptr<LinkTestSide> listener = Listen(t, 64 << 10, reported);
    ASSERT_TRUE(listener);
    const int port = t.Do([&] { return listener->port(); });
    RawPeer peer(port);
    peer.Handshake();
    peer.Write(std::string(256 << 10, 'x'));
    const LinkReportFrame r = reported.Wait();
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.bytes, 64 << 10);
    t.Do([&] {
      listener.reset();
      return 0;
    });
  }
}

TEST(LinkTest, ACancelledSideNeverReports) {
  IoThread t;
  Reported reported;
  std::shared_ptr<LinkTestSide> listener = Listen(t, 1024, reported);
  ASSERT_TRUE(listener);
  const int port = t.Do([&] { return listener->port(); });
  t.Do([&] {
    listener->Cancel();
    return 0;
  });
  // Its port is closed, and no report comes, not even at the connection's refusal.
  asio::io_context io;
  tcp::socket probe(io);
  boost::system::error_code ec;
  probe.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
  EXPECT_TRUE(ec) << "the cancelled listener still accepts";
  EXPECT_FALSE(reported.Came(std::chrono::milliseconds(300)));
  t.Do([&] {
    listener.reset();
    return 0;
  });
}

TEST(LinkTest, ASenderSaysWhyItCouldNotReachTheListener) {
  IoThread t;
  Reported bad_address, nobody;
  std::shared_ptr<LinkTestSide> a = t.Do([&] {
    return LinkTestSide::Send(t.io(), {1, kNonce, "999.1.2.3", 9, 10}, bad_address.Callback());
  });
  EXPECT_NE(bad_address.Wait().error.find("bad listener address '999.1.2.3'"), std::string::npos);
  // A port nobody listens on: take a free one, then let it go.
  int port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  std::shared_ptr<LinkTestSide> b = t.Do([&] {
    return LinkTestSide::Send(t.io(), {2, kNonce, "127.0.0.1", port, 10}, nobody.Callback());
  });
  EXPECT_NE(nobody.Wait().error.find("cannot connect to the listener"), std::string::npos);
  t.Do([&] {
    a.reset();
    b.reset();
    return 0;
  });
}

}  // namespace
}  // namespace topotune
