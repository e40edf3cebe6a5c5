#include "workers/link_test.h"

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <string>

namespace topotune {

namespace asio = boost::asio;
using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr size_t kChunkBytes = 64 * 1024;
constexpr int kNonceSeconds = 5;  // for a connection to the listener to send the nonce

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// Compares in time independent of where the two differ.
bool SameNonce(const std::array<char, kLinkNonceChars>& got, const std::string& want) {
  unsigned char diff = 0;
  for (size_t i = 0; i < kLinkNonceChars; ++i) {
    diff |= static_cast<unsigned char>(got[i] ^ want[i]);
  }
  return diff == 0;
}

}  // namespace

// One test's state, shared by the handlers in flight: each holds a reference, so it lives
// until the last completes after Cancel() closed everything.
struct LinkTestSide::Impl : std::enable_shared_from_this<LinkTestSide::Impl> {
  Impl(asio::io_context& io, int64_t id, std::string nonce, int64_t bytes, Report report)
      : acceptor(io),
        peer(io),
        timer(io),
        nonce_timer(io),
        id(id),
        nonce(std::move(nonce)),
        bytes(bytes),
        report(std::move(report)) {}

  tcp::acceptor acceptor;
  tcp::socket peer;
  asio::steady_timer timer;
  asio::steady_timer nonce_timer;
  int64_t id;
  std::string nonce;
  int64_t bytes;
  Report report;
  bool done = false;
  bool admitted = false;  // the listener's peer presented the nonce
  int attempts = 0;
  int64_t remaining = 0;
  std::array<char, kLinkNonceChars> got{};
  std::array<char, kChunkBytes> buffer{};
  char signal = 0;  // the one-byte messages: g(o), p(ing), q (pong), k (acknowledged)
  SteadyClock::time_point start;
  double rtt_s = 0.0;

  void Close() {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    peer.close(ignored);
    timer.cancel();
    nonce_timer.cancel();
  }

  void Finish(LinkReportFrame r) {
    if (done) return;
    done = true;
    Close();
    r.id = id;
    report(r);
  }

  void Fail(const std::string& why) {
    LinkReportFrame r;
    r.error = why;
    Finish(std::move(r));
  }

  void StartTimer() {
    timer.expires_after(std::chrono::milliseconds(static_cast<int64_t>(kLinkTestTimeoutS * 1000)));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->done) return;
      self->Fail("link test did not finish within " +
                 std::to_string(static_cast<int>(kLinkTestTimeoutS)) + " s");
    });
  }

  // Writes one byte `c`, then calls `next` (on success).
  template <typename Next>
  void Signal(char c, const char* step, Next next) {
    signal = c;
    asio::async_write(
        peer, asio::buffer(&signal, 1),
        [self = shared_from_this(), step, next](boost::system::error_code ec, size_t) {
          if (self->done) return;
          if (ec) return self->Fail(std::string(step) + ": " + ec.message());
          next();
        });
  }

  // Reads one byte, then calls `next` (on success).
  template <typename Next>
  void AwaitSignal(const char* step, Next next) {
    asio::async_read(peer, asio::buffer(&signal, 1),
                     [self = shared_from_this(), step, next](boost::system::error_code ec, size_t) {
                       if (self->done) return;
                       if (ec) return self->Fail(std::string(step) + ": " + ec.message());
                       next();
                     });
  }

  // Listener: the next connection, until one opens with the nonce. Connections are taken
  // one at a time, each given kNonceSeconds to send the nonce.
  void Accept() {
    acceptor.async_accept(peer, [self = shared_from_this()](boost::system::error_code ec) {
      if (self->done) return;
      if (ec) return self->Fail("accepting the sender failed: " + ec.message());
      const int attempt = ++self->attempts;
      self->nonce_timer.expires_after(std::chrono::seconds(kNonceSeconds));
      self->nonce_timer.async_wait([self, attempt](boost::system::error_code ec2) {
        if (ec2 || self->done || self->attempts != attempt || self->admitted) return;
        boost::system::error_code ignored;
        self->peer.close(ignored);  // fails the nonce's read below
      });
      asio::async_read(self->peer, asio::buffer(self->got),
                       [self](boost::system::error_code ec2, size_t) {
                         self->nonce_timer.cancel();
                         if (self->done) return;
                         if (!ec2 && SameNonce(self->got, self->nonce)) return self->Admit();
                         boost::system::error_code ignored;
                         self->peer.close(ignored);
                         if (self->attempts >= kLinkTestMaxAttempts) {
                           return self->Fail(std::to_string(self->attempts) +
                                             " connections without the test's nonce");
                         }
                         self->Accept();
                       });
    });
  }

  // Listener: the sender has come. Go; answer its ping; then its bytes.
  void Admit() {
    admitted = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    peer.set_option(tcp::no_delay(true), ignored);  // one-byte signals, sent at once
    Signal('g', "sending go", [this] {
      AwaitSignal("reading the sender's ping", [this] {
        Signal('q', "answering the ping", [this] {
          start = SteadyClock::now();
          remaining = bytes;
          Receive();
        });
      });
    });
  }

  // Listener: exactly `bytes` bytes, a chunk at a time, then the acknowledgement.
  void Receive() {
    if (remaining == 0) {
      const double seconds = SecondsSince(start);
      return Signal('k', "acknowledging", [this, seconds] {
        LinkReportFrame r;
        r.bytes = bytes;
        r.seconds = std::max(seconds, 1e-9);
        Finish(std::move(r));
      });
    }
    const size_t n = static_cast<size_t>(std::min<int64_t>(remaining, kChunkBytes));
    asio::async_read(peer, asio::buffer(buffer.data(), n),
                     [self = shared_from_this()](boost::system::error_code ec, size_t got) {
                       if (self->done) return;
                       self->remaining -= static_cast<int64_t>(got);
                       if (ec) {
                         return self->Fail("the sender stopped after " +
                                           std::to_string(self->bytes - self->remaining) + " of " +
                                           std::to_string(self->bytes) + " bytes: " + ec.message());
                       }
                       self->Receive();
                     });
  }

  // Sender: after the nonce, wait for go, time a ping, then send and time the bytes.
  void Start() {
    AwaitSignal("no go from the listener", [this] {
      const auto ping = SteadyClock::now();
      Signal('p', "sending the ping", [this, ping] {
        AwaitSignal("no answer to the ping", [this, ping] {
          rtt_s = SecondsSince(ping);
          start = SteadyClock::now();
          std::fill(buffer.begin(), buffer.end(), 0);
          remaining = bytes;
          SendNext();
        });
      });
    });
  }

  // Sender: `bytes` bytes of zeros, a chunk at a time, then the acknowledgement.
  void SendNext() {
    if (remaining == 0) {
      return AwaitSignal("no acknowledgement from the listener", [this] {
        LinkReportFrame r;
        r.bytes = bytes;
        r.seconds = std::max(SecondsSince(start), 1e-9);
        r.rtt_s = rtt_s;
        Finish(std::move(r));
      });
    }
    const size_t n = static_cast<size_t>(std::min<int64_t>(remaining, kChunkBytes));
    asio::async_write(peer, asio::buffer(buffer.data(), n),
                      [self = shared_from_this(), n](boost::system::error_code ec, size_t) {
                        if (self->done) return;
                        if (ec) return self->Fail("sending failed: " + ec.message());
                        self->remaining -= static_cast<int64_t>(n);
                        self->SendNext();
                      });
  }
};

LinkTestSide::LinkTestSide(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

LinkTestSide::~LinkTestSide() { Cancel(); }

void LinkTestSide::Cancel() {
  impl_->done = true;
  impl_->Close();
}

int LinkTestSide::port() const {
  boost::system::error_code ec;
  const tcp::endpoint local = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : local.port();
}

StatusOr<std::shared_ptr<LinkTestSide>> LinkTestSide::Listen(asio::io_context& io,
                                                             const std::string& local_address,
                                                             const LinkListenFrame& f,
                                                             Report report) {
  auto impl = std::make_shared<Impl>(io, f.id, f.nonce, f.bytes, std::move(report));
  boost::system::error_code ec;
  const asio::ip::address local = asio::ip::make_address(local_address, ec);
  if (ec) return Status::InvalidArgument("bad local address '" + local_address + "'");
  const tcp::endpoint endpoint(local, 0);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(1, ec);
  if (ec) {
    impl->done = true;
    impl->Close();
    return Status::IOError("cannot listen on " + local_address + ": " + ec.message());
  }
  impl->StartTimer();
  impl->Accept();
  return std::shared_ptr<LinkTestSide>(new LinkTestSide(impl));
}

std::shared_ptr<LinkTestSide> LinkTestSide::Send(asio::io_context& io, const LinkSendFrame& f,
                                                 Report report) {
  auto impl = std::make_shared<Impl>(io, f.id, f.nonce, f.bytes, std::move(report));
  std::shared_ptr<LinkTestSide> side(new LinkTestSide(impl));
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(f.host, ec);
  if (ec) {
    // Reported from the io thread, as every other outcome is.
    asio::post(io, [impl, host = f.host] { impl->Fail("bad listener address '" + host + "'"); });
    return side;
  }
  impl->StartTimer();
  impl->peer.async_connect(
      tcp::endpoint(address, static_cast<unsigned short>(f.port)),
      [impl](boost::system::error_code ec2) {
        if (impl->done) return;
        if (ec2) return impl->Fail("cannot connect to the listener: " + ec2.message());
        boost::system::error_code ignored;
        impl->peer.set_option(tcp::no_delay(true), ignored);
        std::copy(impl->nonce.begin(), impl->nonce.end(), impl->buffer.begin());
        asio::async_write(impl->peer, asio::buffer(impl->buffer.data(), kLinkNonceChars),
                          [impl](boost::system::error_code ec3, size_t) {
                            if (impl->done) return;
                            if (ec3) return impl->Fail("sending failed: " + ec3.message());
                            impl->Start();
                          });
      });
  return side;
}

}  // namespace topotune
