#include "api/worker_gateway.h"

#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <thread>

#include "api/protocol.h"

namespace topotune {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

bool ValidWorkerId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

struct WorkerGateway::Impl {
  class Session;

  Options options;
  ControllerService* service = nullptr;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  tcp::acceptor acceptor{io};
  std::thread thread;
  int port = 0;
  std::map<std::string, std::shared_ptr<Session>> sessions;  // only touched on the io thread

  void Accept();
  void Post(const std::string& worker_id, std::string frame);
};

// One worker connection. Lives on the io thread only.
class WorkerGateway::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl* gateway, tcp::socket socket)
      : gateway_(gateway), socket_(std::move(socket)), timer_(gateway->io) {}

  void Start() {
    last_seen_ = SteadyClock::now();
    ReadHeader();
    Tick();
  }

  void Send(std::string frame) {
    if (closed_) return;
    const bool idle = writes_.empty();
    writes_.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  // Sends an error frame naming the problem, then closes once it is written.
  void Reject(const std::string& message) {
    std::fprintf(stderr, "topotuned: worker %s: %s\n", Name().c_str(), message.c_str());
    Send(EncodeFrame({{"type", "error"}, {"message", message}}));
    close_after_write_ = true;
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
    if (!worker_id_.empty()) {
      auto it = gateway_->sessions.find(worker_id_);
      if (it != gateway_->sessions.end() && it->second.get() == this) gateway_->sessions.erase(it);
      gateway_->service->WorkerDisconnected(worker_id_);
    }
  }

 private:
  std::string Name() const { return worker_id_.empty() ? "(unregistered)" : worker_id_; }

  void ReadHeader() {
    auto self = shared_from_this();
    asio::async_read(
        socket_, asio::buffer(header_), [this, self](boost::system::error_code ec, size_t) {
          if (ec || closed_) return Close();
          const uint32_t n = DecodeFrameLength(header_);
          if (n == 0 || n > kMaxFrameBytes) {
            return Reject("frame of " + std::to_string(n) + " bytes: frames must be 1 to " +
                          std::to_string(kMaxFrameBytes) + " bytes");
          }
          payload_.resize(n);
          ReadPayload();
        });
  }

  void ReadPayload() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(payload_),
                     [this, self](boost::system::error_code ec, size_t) {
                       if (ec || closed_) return Close();
                       last_seen_ = SteadyClock::now();
                       Status s = Handle(payload_);
                       if (!s.ok()) return Reject(s.message());
                       ReadHeader();
                     });
  }

  void WriteNext() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(writes_.front()),
                      [this, self](boost::system::error_code ec, size_t) {
                        if (ec) return Close();
                        writes_.pop_front();
                        if (!writes_.empty()) return WriteNext();
                        if (close_after_write_) Close();
                      });
  }

  void Tick() {
    auto self = shared_from_this();
    timer_.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>(gateway_->options.heartbeat_s * 1000)));
    timer_.async_wait([this, self](boost::system::error_code ec) {
      if (ec || closed_) return;
      const double silent = std::chrono::duration<double>(SteadyClock::now() - last_seen_).count();
      if (silent > gateway_->options.lease_s) {
        std::fprintf(stderr, "topotuned: worker %s silent for %.1f s; lease lost\n", Name().c_str(),
                     silent);
        return Close();
      }
      if (!worker_id_.empty()) Send(EncodeFrame({{"type", "heartbeat"}}));
      Tick();
    });
  }

  Status Handle(const std::string& payload) {
    StatusOr<json> parsed = ParseMessage(payload);
    if (!parsed.ok()) return parsed.status();
    const json& m = *parsed;
    const std::string type = m["type"].get<std::string>();
    if (worker_id_.empty() && type != "hello") {
      return Status::InvalidArgument("the first frame must be 'hello', got '" + type + "'");
    }
    if (type == "hello") return Hello(m);
    if (type == "heartbeat") return gateway_->service->WorkerHeartbeat(worker_id_);
    if (type == "progress") return Progress(m);
    if (type == "result") return Result(m);
    if (type == "probe_result") return ProbeResult(m);
    return Status::InvalidArgument("unknown frame type '" + type + "'");
  }

  Status Hello(const json& m) {
    if (!worker_id_.empty()) return Status::InvalidArgument("a second 'hello' on one connection");
    if (m.value("protocol", 0) != kProtocolVersion) {
      return Status::InvalidArgument("protocol version must be " +
                                     std::to_string(kProtocolVersion));
    }
    const std::string id = m.value("worker_id", std::string());
    if (!ValidWorkerId(id)) {
      return Status::InvalidArgument(
          "hello.worker_id must be 1-64 characters of letters, digits, '-', '_' or '.'");
    }
    StatusOr<DeviceProfile> device = DeviceProfileFromJson(m.value("device", json()));
    if (!device.ok()) return Status::InvalidArgument("hello." + device.status().message());
    WorkerRecord record;
    record.id = id;
    record.device = *device;
    // Register first, so that an assignment made during WorkerConnected finds the session;
    // the welcome is queued before it, as the assignment arrives by post.
    worker_id_ = id;
    if (gateway_->sessions.count(id)) {
      worker_id_.clear();
      return Status::FailedPrecondition("a worker named '" + id + "' is already connected");
    }
    gateway_->sessions[id] = shared_from_this();
    Send(EncodeFrame({{"type", "welcome"},
                      {"heartbeat_s", gateway_->options.heartbeat_s},
                      {"lease_s", gateway_->options.lease_s}}));
    Status s = gateway_->service->WorkerConnected(record);
    if (!s.ok()) {
      gateway_->sessions.erase(id);
      worker_id_.clear();
      return s;
    }
    std::fprintf(stderr, "topotuned: worker %s connected (%s, %s, %d cores)\n", id.c_str(),
                 record.device.kind.c_str(), record.device.name.c_str(), record.device.cores);
    return Status::OK();
  }

  Status Progress(const json& m) {
    auto trial = m.find("trial_id");
    if (trial == m.end() || !trial->is_number_integer()) {
      return Status::InvalidArgument("progress.trial_id must be an integer");
    }
    auto attempt = m.find("attempt");
    if (attempt == m.end() || !attempt->is_number_integer()) {
      return Status::InvalidArgument("progress.attempt must be an integer");
    }
    StatusOr<CurvePoint> point = CurvePointFromJson(m.value("point", json()));
    if (!point.ok()) return Status::InvalidArgument("progress.point: " + point.status().message());
    const int64_t trial_id = trial->get<int64_t>();
    StatusOr<EpochVerdict> verdict =
        gateway_->service->OnEpoch(worker_id_, trial_id, attempt->get<int>(), *point);
    if (!verdict.ok()) return verdict.status();
    if (verdict->stop) {
      Send(EncodeFrame({{"type", "stop"}, {"trial_id", trial_id}, {"reason", verdict->reason}}));
    }
    return Status::OK();
  }

  Status Result(const json& m) {
    auto trial = m.find("trial_id");
    auto status = m.find("status");
    if (trial == m.end() || !trial->is_number_integer()) {
      return Status::InvalidArgument("result.trial_id must be an integer");
    }
    if (status == m.end() || !status->is_string()) {
      return Status::InvalidArgument("result.status must be a string");
    }
    auto attempt = m.find("attempt");
    if (attempt == m.end() || !attempt->is_number_integer()) {
      return Status::InvalidArgument("result.attempt must be an integer");
    }
    std::optional<SegmentStatus> parsed = ParseSegmentStatus(status->get<std::string>());
    if (!parsed) {
      return Status::InvalidArgument(
          "result.status must be completed, stopped, infeasible or failed");
    }
    SegmentResult outcome{trial->get<int64_t>(), attempt->get<int>(), *parsed,
                          m.value("message", std::string())};
    Status s = gateway_->service->OnSegmentEnded(worker_id_, outcome);
    if (!s.ok()) {
      std::fprintf(stderr, "topotuned: result of trial %lld: %s\n",
                   static_cast<long long>(trial->get<int64_t>()), s.ToString().c_str());
    }
    return Status::OK();
  }

  Status ProbeResult(const json& m) {
    auto key = m.find("key");
    if (key == m.end() || !key->is_string()) {
      return Status::InvalidArgument("probe_result.key must be a string");
    }
    StatusOr<DeviceProbe> probe = Status::Unavailable("");
    if (auto error = m.find("error"); error != m.end()) {
      probe = Status::FailedPrecondition(error->is_string() ? error->get<std::string>()
                                                            : error->dump());
    } else {
      probe = DeviceProbeFromJson(m.value("probe", json()));
      if (!probe.ok()) return Status::InvalidArgument("probe_result." + probe.status().message());
    }
    return gateway_->service->OnProbeResult(worker_id_, key->get<std::string>(), probe);
  }

  Impl* gateway_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  unsigned char header_[4] = {0, 0, 0, 0};
  std::string payload_;
  std::deque<std::string> writes_;
  std::string worker_id_;
  SteadyClock::time_point last_seen_;
  bool closed_ = false;
  bool close_after_write_ = false;
};

void WorkerGateway::Impl::Accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
    } else {
      // Frames are small and answered at once: Nagle's algorithm would hold them back.
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(this, std::move(socket))->Start();
    }
    Accept();
  });
}

void WorkerGateway::Impl::Post(const std::string& worker_id, std::string frame) {
  asio::post(io, [this, worker_id, frame = std::move(frame)]() mutable {
    auto it = sessions.find(worker_id);
    if (it != sessions.end()) it->second->Send(std::move(frame));
  });
}

WorkerGateway::WorkerGateway(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

WorkerGateway::~WorkerGateway() { Stop(); }

void WorkerGateway::Attach(ControllerService* service) { impl_->service = service; }

Status WorkerGateway::Start() {
  if (impl_->service == nullptr) return Status::Internal("WorkerGateway::Attach not called");
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
    auto sessions = impl_->sessions;
    for (auto& [id, session] : sessions) session->Close();
    impl_->work.reset();
    impl_->io.stop();
  });
  impl_->thread.join();
}

void WorkerGateway::SendSegment(const std::string& worker_id, const SegmentSpec& segment) {
  impl_->Post(worker_id, EncodeFrame({{"type", "assign"}, {"assignment", ToJson(segment)}}));
}

void WorkerGateway::SendStop(const std::string& worker_id, int64_t trial_id,
                             const std::string& reason) {
  impl_->Post(worker_id,
              EncodeFrame({{"type", "stop"}, {"trial_id", trial_id}, {"reason", reason}}));
}

void WorkerGateway::SendProbe(const std::string& worker_id, const std::string& key,
                              const std::string& model, const DatasetSpec& dataset,
                              const std::vector<int>& batch_sizes) {
  impl_->Post(worker_id, EncodeFrame({{"type", "probe"},
                                      {"key", key},
                                      {"model", model},
                                      {"dataset", ToJson(dataset)},
                                      {"batch_sizes", batch_sizes}}));
}

}  // namespace topotune
