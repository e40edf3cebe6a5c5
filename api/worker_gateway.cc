#include "api/worker_gateway.h"

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <thread>
#include <utility>
#include <variant>

#include "api/json_input.h"
#include "api/protocol.h"
#include "api/tokens.h"

namespace topotune {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr double kLinkTestSeconds = 3.0;          // a link test's length at the bound
constexpr int64_t kMinLinkTestBytes = 256 << 10;  // and its least transfer
// A transfer under this long is too short to time (one late wakeup is as long), unless it
// already carried kMaxLinkTestBytes: then two round trips suffice.
constexpr double kMinTimedSeconds = 0.010;
constexpr std::chrono::minutes kLinkRetry(5);  // a failed pair is tried again after

struct WorkerGateway::Impl {
  class Session;

  Options options;
  ControllerService* service = nullptr;
  TokenAuthority* tokens = nullptr;
  // Declared before io: sessions still queued in io when it is destroyed count down here.
  int connections = 0;  // only touched on the io thread
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  tcp::acceptor acceptor{io};
  std::thread thread;
  int port = 0;
  std::map<std::string, std::shared_ptr<Session>> sessions;  // only touched on the io thread

  // The link test in flight between two sites (one at a time): over once both sides have
  // reported, or at its deadline. Only touched on the io thread.
  struct LinkTest {
    int64_t id = 0;
    std::string nonce;
    std::string listener, sender;  // worker ids
    std::string listener_site, sender_site;
    std::string listener_host;  // the address the controller sees the listener at
    int64_t bytes = 0;
    bool listening = false;
    std::optional<LinkReportFrame> listener_report, sender_report;
    std::string failure;  // the first thing that went wrong
  };
  std::optional<LinkTest> link_test;
  int64_t link_tests = 0;  // ids handed out
  // The pairs of sites tried, with the workers that tried them: a pair is tried again once
  // one of them has left, or, after a failure, once retry_at has come.
  struct Tried {
    std::string listener, sender;
    bool measured = false;
    SteadyClock::time_point retry_at;
    int64_t next_bytes = 0;  // after a transfer too short to time: the next one's size
  };
  std::map<std::pair<std::string, std::string>, Tried> link_tried;
  // Workers whose side of a test may still run (its other side left): not asked again
  // before this, as they would answer busy.
  std::map<std::string, SteadyClock::time_point> link_busy_until;
  asio::steady_timer link_timer{io};        // the test in flight's deadline
  asio::steady_timer link_retry_timer{io};  // the next time a waiting pair may be tried
  std::random_device entropy;
  bool stopping = false;

  void Accept();
  void Post(const std::string& worker_id, std::string frame);
  void MaybeTestLinks();
  void StartLinkTest(Session& listener, Session& sender);
  // Fails the test in flight (a side left, or its deadline passed), then tries the next.
  void AbandonLinkTest(const std::string& why);
  // Ends the test once both sides have reported: stores the link, or logs the failure.
  void MaybeFinishLinkTest();
  void EndLinkTest();
  Status OnLinkListening(Session& from, const LinkListeningFrame& f);
  Status OnLinkReport(Session& from, const LinkReportFrame& f);
  // Whether `id` names a test ever started; the current one, if it is still in flight.
  Status CheckLinkId(const char* frame, int64_t id) const;
};

// One worker connection. Lives on the io thread only.
class WorkerGateway::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* gateway, tcp::socket socket)
      : gateway_(gateway),
        socket_(std::move(socket)),
        timer_(gateway->io),
        echo_timer_(gateway->io) {
    ++gateway_->connections;
  }
  ~Session() { --gateway_->connections; }

  void Start() {
    opened_ = last_seen_ = SteadyClock::now();
    Read();
    Tick();
  }

  void Send(std::string frame) {
    if (closed_) return;
    const bool idle = writes_.empty();
    writes_.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  // Sends the checkpoint file at `path` as chunk frames (a chunk at a time, as writes
  // complete), then `then` (the assign that resumes from it). If the file cannot be read,
  // `then` goes alone and the worker reports the checkpoint missing.
  void SendCheckpoint(const std::string& path, const CheckpointChunk& header, std::string then) {
    if (closed_) return;
    StatusOr<std::unique_ptr<ChunkedFileReader>> reader = ChunkedFileReader::Open(path, header);
    if (!reader.ok()) {
      std::fprintf(stderr, "topotuned: worker %s: %s\n", Name().c_str(),
                   reader.status().message().c_str());
      return Send(std::move(then));
    }
    transfers_.push_back({std::move(*reader), std::move(then)});
    const bool idle = writes_.empty();
    FeedTransfer();
    if (idle && !writes_.empty()) WriteNext();
  }

  // Sends an error frame naming the problem, then closes once it is written.
  void Reject(const ErrorFrame& error) {
    if (closed_ || close_after_write_) return;
    std::fprintf(stderr, "topotuned: worker %s: %s\n", Name().c_str(), error.message.c_str());
    Send(EncodeFrame(ToJson(error)));
    close_after_write_ = true;
    reading_ = false;
  }

  // Closes the connection; a registered worker is reported lost unless `replaced`.
  void Close(bool replaced = false) {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    echo_timer_.cancel();
    transfers_.clear();
    if (!worker_id_.empty()) {
      auto it = gateway_->sessions.find(worker_id_);
      if (it != gateway_->sessions.end() && it->second.get() == this) gateway_->sessions.erase(it);
      if (!replaced) gateway_->service->WorkerDisconnected(worker_id_);
      const auto& test = gateway_->link_test;
      if (test && (test->listener == worker_id_ || test->sender == worker_id_)) {
        gateway_->AbandonLinkTest("worker " + worker_id_ + " left");
      }
    }
  }

  int64_t token_id() const { return token_id_; }
  const std::string& worker_id() const { return worker_id_; }
  const std::string& site() const { return site_; }
  // Registered, of protocol 4 or later, at a named site, its echoes done: a link test
  // would neither be refused nor slowed by the echoes.
  bool LinkReady() const {
    return !closed_ && !close_after_write_ && !worker_id_.empty() && protocol_ >= 4 &&
           !site_.empty() && (echo_step_ >= kEchoSteps || gateway_->options.echo_pad_bytes == 0);
  }
  // The address the controller sees this worker at, as another worker could connect to it:
  // an IPv4-mapped IPv6 address as IPv4; "" if the socket has none, or if it is scoped (a
  // link-local IPv6 address means nothing on another host).
  std::string RemoteAddress() const {
    std::optional<asio::ip::address> a = Remote();
    if (!a) return "";
    if (a->is_v6() && a->to_v6().scope_id() != 0) return "";
    return a->to_string();
  }
  bool AtLoopback() const {
    std::optional<asio::ip::address> a = Remote();
    return a && a->is_loopback();
  }
  // Its link to the controller, once its echoes are done.
  const std::optional<WorkerLink>& link() const { return link_; }

 private:
  std::string Name() const { return worker_id_.empty() ? "(unregistered)" : worker_id_; }

  std::optional<asio::ip::address> Remote() const {
    boost::system::error_code ec;
    const tcp::endpoint remote = socket_.remote_endpoint(ec);
    if (ec) return std::nullopt;
    const asio::ip::address a = remote.address();
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
      return asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()));
    }
    return a;
  }

  // Reads what arrives, a few KiB at a time: memory follows the bytes received.
  void Read() {
    reading_ = true;
    auto self = shared_from_this();
    socket_.async_read_some(
        asio::buffer(chunk_), [this, self](boost::system::error_code ec, size_t n) {
          if (ec && !closed_ && !worker_id_.empty()) {
            std::fprintf(stderr, "topotuned: worker %s disconnected (%s)\n", Name().c_str(),
                         ec == asio::error::eof ? "connection closed" : ec.message().c_str());
          }
          if (ec || closed_) return Close();
          if (!reading_) return;  // an error frame is on its way; ignore the rest
          if (!frames_.InFrame()) frame_started_ = SteadyClock::now();
          Status s = frames_.Append(chunk_.data(), n);
          if (!s.ok()) return Reject(ErrorFrameOf(s));
          while (std::optional<std::string> payload = frames_.Next()) {
            last_seen_ = SteadyClock::now();
            frame_started_ = last_seen_;
            Status handled = Handle(*payload);
            if (!handled.ok()) return Reject(error_ ? *error_ : ErrorFrameOf(handled));
            if (closed_) return;
          }
          Read();
        });
  }

  void WriteNext() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(writes_.front()),
                      [this, self](boost::system::error_code ec, size_t) {
                        if (ec) return Close();
                        writes_.pop_front();
                        FeedTransfer();
                        if (!writes_.empty()) return WriteNext();
                        if (close_after_write_) Close();
                      });
  }

  // Queues the next chunk of the first transfer while the queue is short, so a checkpoint
  // of any size holds one chunk in memory; after its last chunk, the frame that follows it.
  // Only queues: the caller starts the write if none is in flight.
  void FeedTransfer() {
    if (transfers_.empty() || writes_.size() > 1 || closed_) return;
    Transfer& t = transfers_.front();
    StatusOr<std::optional<CheckpointChunk>> chunk = t.reader->Next();
    if (chunk.ok() && chunk->has_value()) {
      writes_.push_back(EncodeFrame(ToJson(CheckpointFrame{std::move(**chunk)})));
      return;
    }
    if (!chunk.ok()) {
      std::fprintf(stderr, "topotuned: worker %s: %s\n", Name().c_str(),
                   chunk.status().message().c_str());
    }
    writes_.push_back(std::move(t.then));
    transfers_.pop_front();
  }

  void Tick() {
    auto self = shared_from_this();
    timer_.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(gateway_->options.heartbeat_s * 1000)));
    timer_.async_wait([this, self](boost::system::error_code ec) {
      if (ec || closed_) return;
      const auto now = SteadyClock::now();
      const auto seconds = [&](SteadyClock::time_point t) {
        return std::chrono::duration<double>(now - t).count();
      };
      const Options& o = gateway_->options;
      if (close_after_write_ && seconds(last_seen_) > o.hello_timeout_s) return Close();
      if (worker_id_.empty() && seconds(opened_) > o.hello_timeout_s) {
        std::fprintf(stderr, "topotuned: a connection sent no valid hello in %.0f s; closed\n",
                     o.hello_timeout_s);
        return Close();
      }
      if (frames_.InFrame() && seconds(frame_started_) > o.frame_timeout_s) {
        std::fprintf(stderr, "topotuned: worker %s: a frame took over %.0f s; closed\n",
                     Name().c_str(), o.frame_timeout_s);
        return Close();
      }
      if (seconds(last_seen_) > o.lease_s) {
        std::fprintf(stderr, "topotuned: worker %s silent for %.1f s; lease lost\n", Name().c_str(),
                     seconds(last_seen_));
        return Close();
      }
      if (!worker_id_.empty()) Send(EncodeFrame(HeartbeatJson()));
      Tick();
    });
  }

  // Handles one payload. An error status closes the connection with an error frame: the
  // frame in error_ when set, else the status's.
  Status Handle(const std::string& payload) {
    StatusOr<WorkerFrame> frame = DecodeWorkerFrame(payload);
    if (!frame.ok()) return frame.status();
    if (worker_id_.empty() && !std::holds_alternative<HelloFrame>(*frame)) {
      return Status::InvalidArgument("the first frame must be 'hello'");
    }
    return std::visit([this](const auto& f) { return On(f); }, *frame);
  }

  Status On(const HelloFrame& f) {
    if (!worker_id_.empty()) return Status::InvalidArgument("a second 'hello' on one connection");
    if (f.protocol < kMinProtocolVersion || f.protocol > kProtocolVersion) {
      error_ = ProtocolVersionError(f.protocol);
      return Status::InvalidArgument(error_->message);
    }
    StatusOr<Principal> who = gateway_->tokens->Authenticate(f.token);
    if (!who.ok()) {
      if (who.status().code() == Status::Code::kUnauthenticated) {
        return Status::Unauthenticated("hello.token: " + who.status().message());
      }
      return Status::Unavailable("cannot check the token now: " + who.status().message());
    }
    if (who->role != Role::kWorker) {
      return Status::PermissionDenied("hello.token is a " + std::string(RoleName(who->role)) +
                                      " token; registering a worker needs a worker token");
    }
    auto existing = gateway_->sessions.find(f.worker_id);
    if (existing != gateway_->sessions.end()) {
      if (existing->second->token_id() != who->token_id) {
        return Status::FailedPrecondition("a worker named '" + f.worker_id +
                                          "' is connected with another token");
      }
      // The same worker, reconnected before its old connection timed out: that one is stale.
      std::fprintf(stderr, "topotuned: worker %s reconnected; its old connection is closed\n",
                   f.worker_id.c_str());
      std::shared_ptr<Session> stale = existing->second;
      gateway_->sessions.erase(existing);
      stale->Close(/*replaced=*/true);
      gateway_->service->WorkerDisconnected(f.worker_id);
    }
    WorkerRecord record;
    record.id = f.worker_id;
    record.device = f.device;
    // Register first, so that an assignment made during WorkerConnected finds the session;
    // the welcome is queued before it, as the assignment arrives by post.
    worker_id_ = f.worker_id;
    token_id_ = who->token_id;
    gateway_->sessions[f.worker_id] = shared_from_this();
    WelcomeFrame welcome{gateway_->options.heartbeat_s, gateway_->options.lease_s};
    Send(EncodeFrame(ToJson(welcome)));
    Status s = gateway_->service->WorkerConnected(record);
    if (!s.ok()) {
      gateway_->sessions.erase(f.worker_id);
      worker_id_.clear();
      // The controller's own trouble is never fatal to the worker: it retries later.
      if (s.code() != Status::Code::kFailedPrecondition) {
        return Status::Unavailable("cannot register the worker now: " + s.message());
      }
      return s;
    }
    std::fprintf(stderr, "topotuned: worker %s connected (%s, %s, %d cores)\n", f.worker_id.c_str(),
                 record.device.kind.c_str(), SafeText(record.device.name, 80).c_str(),
                 record.device.cores);
    protocol_ = f.protocol;
    site_ = record.device.site;
    if (f.protocol >= 3 && gateway_->options.echo_pad_bytes > 0) {
      NextEcho();
    } else {
      gateway_->MaybeTestLinks();
    }
    return Status::OK();
  }

  // The link probe's steps: kEchoRepeats small round trips, then kEchoRepeats pads down,
  // then up. The fastest of each counts: a worker busy with something else (a probe, its
  // CPU quota spent) answers late, never early.
  static constexpr int kEchoRepeats = 3;
  static constexpr int kEchoSteps = 3 * kEchoRepeats;

  // Sends the link probe's next echo once nothing else is being written (so that the time
  // is the link's, not a checkpoint's); reports the link after the last.
  void NextEcho() {
    if (closed_ || echo_step_ >= kEchoSteps) return;
    if (!writes_.empty()) {
      auto self = shared_from_this();
      echo_timer_.expires_after(std::chrono::milliseconds(50));
      echo_timer_.async_wait([this, self](boost::system::error_code ec) {
        if (!ec) NextEcho();
      });
      return;
    }
    const uint32_t pad = gateway_->options.echo_pad_bytes;
    EchoFrame echo;
    echo.id = ++echo_id_;
    const int kind = echo_step_ / kEchoRepeats;  // 0 small, 1 down, 2 up
    if (kind == 1) echo.pad.assign(pad, 'x');
    if (kind == 2) echo.reply_bytes = pad;
    expected_reply_bytes_ = echo.reply_bytes;
    echo_sent_ = SteadyClock::now();
    echo_outstanding_ = true;
    Send(EncodeFrame(ToJson(echo)));
  }

  Status On(const EchoReplyFrame& f) {
    if (!echo_outstanding_ || f.id != echo_id_) {
      return Status::InvalidArgument("echo_reply " + std::to_string(f.id) +
                                     " answers no outstanding echo");
    }
    if (f.pad.size() != expected_reply_bytes_) {
      return Status::InvalidArgument("echo_reply.pad has " + std::to_string(f.pad.size()) +
                                     " bytes; the echo asked for " +
                                     std::to_string(expected_reply_bytes_));
    }
    echo_outstanding_ = false;
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - echo_sent_).count();
    echo_seconds_[echo_step_++] = seconds;
    if (echo_step_ < kEchoSteps) {
      NextEcho();
      return Status::OK();
    }
    WorkerLink link;
    auto fastest = [&](int kind) {
      return *std::min_element(echo_seconds_.begin() + kind * kEchoRepeats,
                               echo_seconds_.begin() + (kind + 1) * kEchoRepeats);
    };
    link.rtt_s = fastest(0);
    link.pad_bytes = gateway_->options.echo_pad_bytes;
    // The pad's time: the echo's less a round trip, at least a microsecond.
    auto throughput = [&](double s) { return link.pad_bytes / std::max(s - link.rtt_s, 1e-6); };
    link.down_bytes_s = throughput(fastest(1));
    link.up_bytes_s = throughput(fastest(2));
    link.measured_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    gateway_->service->WorkerLinkMeasured(worker_id_, link);
    link_ = link;
    std::fprintf(stderr, "topotuned: worker %s link: rtt %.2f ms, %.3g Mbit/s down, %.3g up\n",
                 worker_id_.c_str(), link.rtt_s * 1e3, link.down_bytes_s * 8e-6,
                 link.up_bytes_s * 8e-6);
    gateway_->MaybeTestLinks();
    return Status::OK();
  }

  Status On(const LinkListeningFrame& f) { return gateway_->OnLinkListening(*this, f); }
  Status On(const LinkReportFrame& f) { return gateway_->OnLinkReport(*this, f); }

  Status On(const HeartbeatFrame&) {
    Status s = gateway_->service->WorkerHeartbeat(worker_id_);
    if (!s.ok()) {
      std::fprintf(stderr, "topotuned: heartbeat of %s: %s\n", worker_id_.c_str(),
                   s.ToString().c_str());
    }
    return Status::OK();
  }

  Status On(const ProgressFrame& f) {
    StatusOr<EpochVerdict> verdict =
        gateway_->service->OnEpoch(worker_id_, f.trial_id, f.attempt, f.point);
    if (!verdict.ok()) {
      if (verdict.status().code() == Status::Code::kInvalidArgument) return verdict.status();
      // Not the worker's fault (storage, a job that just ended): stop the segment, so it is
      // rerun or dropped by the engine, and keep the connection.
      std::fprintf(stderr, "topotuned: progress of trial %lld from %s: %s\n",
                   static_cast<long long>(f.trial_id), worker_id_.c_str(),
                   verdict.status().ToString().c_str());
      Send(EncodeFrame(ToJson(StopFrame{f.trial_id, "the controller could not record it"})));
      return Status::OK();
    }
    if (verdict->stop) Send(EncodeFrame(ToJson(StopFrame{f.trial_id, verdict->reason})));
    return Status::OK();
  }

  Status On(const ResultFrame& f) {
    Status s = gateway_->service->OnSegmentEnded(worker_id_, f.result);
    if (!s.ok()) {
      std::fprintf(stderr, "topotuned: result of trial %lld: %s\n",
                   static_cast<long long>(f.result.trial_id), s.ToString().c_str());
    }
    return Status::OK();
  }

  Status On(const CheckpointFrame& f) {
    Status s = gateway_->service->OnCheckpointChunk(worker_id_, f.chunk);
    if (s.code() == Status::Code::kInvalidArgument) return s;
    if (!s.ok()) {
      // The controller's trouble (a full disk): the trial stays resumable on this worker.
      std::fprintf(stderr, "topotuned: checkpoint from %s: %s\n", worker_id_.c_str(),
                   s.ToString().c_str());
    }
    return Status::OK();
  }

  Status On(const ProbeResultFrame& f) {
    StatusOr<DeviceProbe> probe = f.probe
                                      ? StatusOr<DeviceProbe>(*f.probe)
                                      : StatusOr<DeviceProbe>(Status::FailedPrecondition(f.error));
    Status s = gateway_->service->OnProbeResult(worker_id_, f.key, probe);
    if (s.code() == Status::Code::kInvalidArgument) return s;
    if (!s.ok()) {
      std::fprintf(stderr, "topotuned: probe result of %s: %s\n", worker_id_.c_str(),
                   s.ToString().c_str());
    }
    return Status::OK();
  }

  Impl* gateway_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::steady_timer echo_timer_;
  std::array<char, 4096> chunk_{};
  FrameReader frames_;
  std::deque<std::string> writes_;
  struct Transfer {
    std::unique_ptr<ChunkedFileReader> reader;
    std::string then;
  };
  std::deque<Transfer> transfers_;
  std::string worker_id_;
  std::string site_;
  int protocol_ = 0;
  std::optional<WorkerLink> link_;
  int64_t token_id_ = 0;
  std::optional<ErrorFrame> error_;  // the error frame to close with, when not the status's
  SteadyClock::time_point opened_;
  SteadyClock::time_point last_seen_;
  SteadyClock::time_point frame_started_;
  bool closed_ = false;
  bool close_after_write_ = false;
  bool reading_ = false;
  // The link probe (NextEcho).
  int echo_step_ = 0;
  int64_t echo_id_ = 0;
  bool echo_outstanding_ = false;
  uint32_t expected_reply_bytes_ = 0;
  SteadyClock::time_point echo_sent_;
  std::array<double, kEchoSteps> echo_seconds_{};
};

void WorkerGateway::Impl::Accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
    } else if (connections >= options.max_connections) {
      boost::system::error_code ignored;
      socket.close(ignored);  // over the limit: a flood must not exhaust descriptors
    } else {
      // Frames are small and answered at once: Nagle's algorithm would hold them back.
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(this, std::move(socket))->Start();
    }
    Accept();
  });
}

void WorkerGateway::Impl::MaybeTestLinks() {
  if (options.link_test_bytes <= 0 || link_test || stopping) return;
  const auto now = SteadyClock::now();
  // Forget pairs tried by a worker that has left (they are tried again), and workers no
  // longer busy, so that names of workers long gone do not pile up.
  for (auto it = link_tried.begin(); it != link_tried.end();) {
    const bool both_here =
        sessions.count(it->second.listener) > 0 && sessions.count(it->second.sender) > 0;
    it = both_here ? std::next(it) : link_tried.erase(it);
  }
  for (auto it = link_busy_until.begin(); it != link_busy_until.end();) {
    it = it->second <= now || sessions.count(it->first) == 0 ? link_busy_until.erase(it)
                                                             : std::next(it);
  }
  std::vector<Session*> ready;
  for (auto& [id, session] : sessions) {
    if (session->LinkReady() && link_busy_until.count(id) == 0) ready.push_back(session.get());
  }
  std::optional<SteadyClock::time_point> next_try;
  const auto later = [&](SteadyClock::time_point t) {
    if (!next_try || t < *next_try) next_try = t;
  };
  for (const auto& [id, until] : link_busy_until) later(until);
  for (size_t i = 0; i < ready.size(); ++i) {
    for (size_t j = i + 1; j < ready.size(); ++j) {
      Session* listener = ready[i];
      Session* sender = ready[j];
      if (listener->site() == sender->site()) continue;
      auto tried = link_tried.find(std::minmax(listener->site(), sender->site()));
      if (tried != link_tried.end()) {
        if (tried->second.measured) continue;
        if (now < tried->second.retry_at) {
          later(tried->second.retry_at);
          continue;
        }
      }
      // The listener is one another worker can reach at the address the controller sees.
      if (listener->AtLoopback() && !sender->AtLoopback()) std::swap(listener, sender);
      if (!ValidLinkHost(listener->RemoteAddress())) std::swap(listener, sender);
      if (!ValidLinkHost(listener->RemoteAddress())) continue;
      return StartLinkTest(*listener, *sender);
    }
  }
  if (next_try) {
    link_retry_timer.expires_at(*next_try + std::chrono::milliseconds(10));
    link_retry_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) MaybeTestLinks();
    });
  }
}

void WorkerGateway::Impl::StartLinkTest(Session& listener, Session& sender) {
  LinkTest t;
  t.id = ++link_tests;
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < kLinkNonceChars; ++i) t.nonce += kHex[entropy() % 16];
  t.listener = listener.worker_id();
  t.sender = sender.worker_id();
  t.listener_site = listener.site();
  t.sender_site = sender.site();
  t.listener_host = listener.RemoteAddress();
  // About kLinkTestSeconds at the bound through the controller (the least of the sender's
  // way up and the listener's way down), so that a slow link is timed within the test's
  // time limit; at most link_test_bytes, at least kMinLinkTestBytes.
  t.bytes = options.link_test_bytes;
  if (listener.link() && sender.link()) {
    const double bound = std::min(listener.link()->down_bytes_s, sender.link()->up_bytes_s);
    t.bytes =
        std::clamp(static_cast<int64_t>(bound * kLinkTestSeconds),
                   std::min(kMinLinkTestBytes, options.link_test_bytes), options.link_test_bytes);
  }
  Tried& tried = link_tried[std::minmax(t.listener_site, t.sender_site)];
  t.bytes = std::max(t.bytes, tried.next_bytes);
  tried = {t.listener, t.sender, false, {}, 0};
  std::fprintf(stderr, "topotuned: link test %lld: %s (%s) -> %s (%s), %lld bytes\n",
               static_cast<long long>(t.id), t.sender.c_str(), SafeText(t.sender_site, 64).c_str(),
               t.listener.c_str(), SafeText(t.listener_site, 64).c_str(),
               static_cast<long long>(t.bytes));
  listener.Send(EncodeFrame(ToJson(LinkListenFrame{t.id, t.nonce, t.bytes})));
  const int64_t id = t.id;
  link_test = std::move(t);
  // Both sides give up by kLinkTestTimeoutS; their reports get a little longer to arrive.
  link_timer.expires_after(
      std::chrono::milliseconds(static_cast<int64_t>((kLinkTestTimeoutS + 30) * 1000)));
  link_timer.async_wait([this, id](boost::system::error_code ec) {
    if (ec || !link_test || link_test->id != id) return;
    AbandonLinkTest(std::string("no report from the ") +
                    (link_test->listener_report ? "sender" : "listener") + " within " +
                    std::to_string(static_cast<int>(kLinkTestTimeoutS + 30)) + " s");
  });
}

void WorkerGateway::Impl::AbandonLinkTest(const std::string& why) {
  if (!link_test) return;
  // A side that has not reported may still be running: leave it be until it has timed out.
  const auto until = SteadyClock::now() + std::chrono::seconds(static_cast<int>(kLinkTestTimeoutS));
  if (!link_test->listener_report) link_busy_until[link_test->listener] = until;
  if (!link_test->sender_report) link_busy_until[link_test->sender] = until;
  if (link_test->failure.empty()) link_test->failure = why;
  EndLinkTest();
}

void WorkerGateway::Impl::MaybeFinishLinkTest() {
  if (!link_test || !link_test->listener_report || !link_test->sender_report) return;
  EndLinkTest();
}

void WorkerGateway::Impl::EndLinkTest() {
  LinkTest t = std::move(*link_test);
  link_test.reset();
  link_timer.cancel();
  auto tried = link_tried.find(std::minmax(t.listener_site, t.sender_site));
  StatusOr<Link> link = Status::InvalidArgument(t.failure);
  if (t.failure.empty() && t.sender_report) {
    link =
        DirectTransferLink(t.sender_report->bytes, t.sender_report->seconds, t.sender_report->rtt_s,
                           t.bytes < kMaxLinkTestBytes ? kMinTimedSeconds : 0.0);
  }
  if (link.ok()) {
    DirectLink d;
    d.from_site = t.sender_site;
    d.to_site = t.listener_site;
    d.sender = t.sender;
    d.listener = t.listener;
    d.bytes = t.sender_report->bytes;
    d.seconds = t.sender_report->seconds;
    d.rtt_s = t.sender_report->rtt_s;
    d.link = *link;
    d.measured_at =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    service->DirectLinkMeasured(d);
    if (tried != link_tried.end()) tried->second.measured = true;
    std::fprintf(stderr,
                 "topotuned: link test %lld between %s and %s: %.3g Mbit/s, latency %.2f ms "
                 "(%.3f s; round trip %.2f ms; the listener read for %.3f s)\n",
                 static_cast<long long>(t.id), t.sender.c_str(), t.listener.c_str(),
                 d.link.bandwidth_bytes_s * 8e-6, d.link.latency_s * 1e3, d.seconds, d.rtt_s * 1e3,
                 t.listener_report ? t.listener_report->seconds : 0.0);
  } else if (t.failure.empty() && t.sender_report && t.bytes < kMaxLinkTestBytes &&
             tried != link_tried.end()) {
    // The bytes crossed, too fast to time against the round trip or the clock: a link faster
    // than the echoes through the controller showed. Again at once, with 8 times the bytes.
    tried->second.next_bytes = std::min(kMaxLinkTestBytes, t.bytes * 8);
    std::fprintf(stderr, "topotuned: link test %lld between %s and %s: %s; again with %lld bytes\n",
                 static_cast<long long>(t.id), t.sender.c_str(), t.listener.c_str(),
                 SafeText(link.status().message(), 300).c_str(),
                 static_cast<long long>(tried->second.next_bytes));
  } else {
    if (tried != link_tried.end()) tried->second.retry_at = SteadyClock::now() + kLinkRetry;
    std::fprintf(
        stderr, "topotuned: link test %lld between %s and %s failed: %s; retried in %d s\n",
        static_cast<long long>(t.id), t.sender.c_str(), t.listener.c_str(),
        SafeText(link.status().message(), 300).c_str(),
        static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(kLinkRetry).count()));
  }
  MaybeTestLinks();
}

Status WorkerGateway::Impl::CheckLinkId(const char* frame, int64_t id) const {
  if (id < 1 || id > link_tests) {
    return Status::InvalidArgument(std::string(frame) + " " + std::to_string(id) +
                                   " answers no link test");
  }
  return Status::OK();
}

Status WorkerGateway::Impl::OnLinkListening(Session& from, const LinkListeningFrame& f) {
  TOPOTUNE_RETURN_IF_ERROR(CheckLinkId("link_listening", f.id));
  if (!link_test || link_test->id != f.id) return Status::OK();  // a test already over
  if (from.worker_id() != link_test->listener || link_test->listening) {
    return Status::InvalidArgument("link_listening " + std::to_string(f.id) +
                                   ": this worker was not asked to listen");
  }
  link_test->listening = true;
  auto sender = sessions.find(link_test->sender);
  if (sender == sessions.end()) {
    AbandonLinkTest("the sender left");
    return Status::OK();
  }
  sender->second->Send(EncodeFrame(ToJson(
      LinkSendFrame{f.id, link_test->nonce, link_test->listener_host, f.port, link_test->bytes})));
  return Status::OK();
}

Status WorkerGateway::Impl::OnLinkReport(Session& from, const LinkReportFrame& f) {
  TOPOTUNE_RETURN_IF_ERROR(CheckLinkId("link_report", f.id));
  if (!link_test || link_test->id != f.id) return Status::OK();
  const bool is_sender = from.worker_id() == link_test->sender;
  if (!is_sender && from.worker_id() != link_test->listener) {
    return Status::InvalidArgument("link_report " + std::to_string(f.id) +
                                   ": this worker has no part in that link test");
  }
  std::optional<LinkReportFrame>& slot =
      is_sender ? link_test->sender_report : link_test->listener_report;
  if (slot) {
    return Status::InvalidArgument("link_report " + std::to_string(f.id) + ": a second report");
  }
  if (f.error.empty() && f.bytes != link_test->bytes) {
    return Status::InvalidArgument("link_report " + std::to_string(f.id) + ": " +
                                   std::to_string(f.bytes) + " bytes; the test moves " +
                                   std::to_string(link_test->bytes));
  }
  slot = f;
  if (!f.error.empty() && link_test->failure.empty()) {
    link_test->failure =
        std::string("failed at the ") + (is_sender ? "sender" : "listener") + ": " + f.error;
  }
  // The sender never reports when the listener failed before it was told to send.
  if (!is_sender && !f.error.empty() && !link_test->listening) {
    link_test->sender_report = LinkReportFrame{f.id, 0, 0.0, 0.0, "not started"};
  }
  MaybeFinishLinkTest();
  return Status::OK();
}

void WorkerGateway::Impl::Post(const std::string& worker_id, std::string frame) {
  asio::post(io, [this, worker_id, frame = std::move(frame)]() mutable {
    auto it = sessions.find(worker_id);
    if (it != sessions.end()) it->second->Send(std::move(frame));
  });
}

WorkerGateway::WorkerGateway(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  // A worker refuses a link_listen over kMaxLinkTestBytes: never send one.
  impl_->options.link_test_bytes = std::min(impl_->options.link_test_bytes, kMaxLinkTestBytes);
}

WorkerGateway::~WorkerGateway() { Stop(); }

void WorkerGateway::Attach(ControllerService* service, TokenAuthority* tokens) {
  impl_->service = service;
  impl_->tokens = tokens;
}

Status WorkerGateway::Start() {
  if (impl_->service == nullptr || impl_->tokens == nullptr) {
    return Status::Internal("WorkerGateway::Attach not called");
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) return Status::InvalidArgument("bad worker listen address '" + impl_->options.host + "'");
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(impl_->options.port));
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IOError("cannot listen for workers on " + impl_->options.host + ":" +
                           std::to_string(impl_->options.port) + ": " + ec.message());
  }
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return Status::OK();
}

int WorkerGateway::port() const { return impl_->port; }

void WorkerGateway::Stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->stopping = true;  // no link test starts as the sessions close
    impl_->link_retry_timer.cancel();
    auto sessions = impl_->sessions;
    for (auto& [id, session] : sessions) session->Close();
    impl_->work.reset();
    impl_->io.stop();
  });
  impl_->thread.join();
}

void WorkerGateway::SendSegment(const std::string& worker_id, const SegmentSpec& segment,
                                const std::string& checkpoint_file) {
  std::string assign = EncodeFrame({{"type", "assign"}, {"assignment", ToJson(segment)}});
  if (checkpoint_file.empty()) return impl_->Post(worker_id, std::move(assign));
  CheckpointChunk header;
  header.trial_id = segment.trial_id;
  header.attempt = segment.attempt;
  header.stem = segment.checkpoint;
  header.epoch = segment.start_epoch;
  asio::post(impl_->io,
             [this, worker_id, checkpoint_file, header, assign = std::move(assign)]() mutable {
               auto it = impl_->sessions.find(worker_id);
               if (it != impl_->sessions.end()) {
                 it->second->SendCheckpoint(checkpoint_file, header, std::move(assign));
               }
             });
}

void WorkerGateway::SendStop(const std::string& worker_id, int64_t trial_id,
                             const std::string& reason) {
  impl_->Post(worker_id, EncodeFrame(ToJson(StopFrame{trial_id, reason})));
}

void WorkerGateway::SendProbe(const std::string& worker_id, const std::string& key,
                              const std::string& model, const DatasetSpec& dataset,
                              const std::vector<int>& batch_sizes) {
  impl_->Post(worker_id, EncodeFrame(ToJson(ProbeFrame{key, model, dataset, batch_sizes})));
}

}  // namespace topotune
