#include "workers/agent.h"

#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>
#include <variant>

#include "api/protocol.h"
#include "workers/device_probe.h"
#include "workers/link_test.h"
#include "workers/memory_stats.h"
#include "workers/replay_table.h"
#include "workers/trainer.h"

namespace topotune {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;

// The "uploader" name under which the worker's own store receives the controller's chunks.
constexpr char kFromController[] = "controller";

struct Agent::Impl {
  explicit Impl(AgentOptions o) : options(std::move(o)), trainer(options.threads) {}

  AgentOptions options;
  Trainer trainer;
  DeviceProber prober;
  std::optional<ReplayTable> replay;
  asio::io_context io;
  std::unique_ptr<tcp::socket> socket;
  std::unique_ptr<asio::steady_timer> heartbeat;
  unsigned char header[4] = {0, 0, 0, 0};
  std::string payload;
  std::deque<std::string> writes;
  // This worker's checkpoint folder; the controller sends checkpoints into it.
  std::unique_ptr<CheckpointStore> checkpoints;
  // A checkpoint being uploaded, a chunk at a time as writes complete, and the segment's
  // result frame that follows it.
  struct Upload {
    std::unique_ptr<ChunkedFileReader> reader;
    std::string result_frame;
  };
  std::optional<Upload> upload;
  // This worker's side of the link test in flight (one at a time).
  std::shared_ptr<LinkTestSide> link_test;
  bool connected = false;
  double heartbeat_s = 2.0;
  double backoff_s = 0;  // the last reconnect delay; 0 after a welcome
  std::mt19937_64 rng{std::random_device{}()};
  bool welcomed = false;  // on this connection
  std::atomic<bool> shutdown{false};
  Status fatal;  // set when the controller refuses us for good

  // The training thread and the trial it runs.
  std::thread training;
  std::atomic<bool> stop_training{false};
  std::optional<int64_t> current_trial;

  void Log(const std::string& message) {
    std::fprintf(stderr, "topotune-worker %s: %s\n", options.worker_id.c_str(), message.c_str());
  }

  // Sleeps `seconds`, waking early on Shutdown().
  void Sleep(double seconds) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    while (!shutdown && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // The next reconnect delay: exponential from backoff_initial_s to backoff_max_s, each
  // drawn uniformly from [delay/2, delay] so that many workers do not retry in step.
  double NextBackoff() {
    backoff_s =
        backoff_s <= 0 ? options.backoff_initial_s : std::min(options.backoff_max_s, backoff_s * 2);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return backoff_s * jitter(rng);
  }

  bool Connect() {
    const auto started = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(options.controller_host, ec);
    tcp::resolver resolver(io);
    bool said = false;
    while (!shutdown) {
      socket = std::make_unique<tcp::socket>(io);
      if (!ec) {
        socket->connect(
            tcp::endpoint(address, static_cast<unsigned short>(options.controller_port)), ec);
      } else {
        auto endpoints =
            resolver.resolve(options.controller_host, std::to_string(options.controller_port), ec);
        if (!ec) asio::connect(*socket, endpoints, ec);
      }
      if (!ec) {
        socket->set_option(tcp::no_delay(true), ec);  // small frames, sent at once
        return true;
      }
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (options.connect_timeout_s > 0 && waited > options.connect_timeout_s) {
        fatal =
            Status::Unavailable("cannot reach the controller at " + options.controller_host + ":" +
                                std::to_string(options.controller_port) + ": " + ec.message());
        return false;
      }
      if (!said) {
        Log("cannot reach the controller (" + ec.message() + "); retrying");
        said = true;
      }
      ec.clear();
      Sleep(NextBackoff());
    }
    return false;
  }

  void Send(std::string frame) {
    if (!connected) return;
    const bool idle = writes.empty();
    writes.push_back(std::move(frame));
    if (idle) WriteNext();
  }

  void WriteNext() {
    asio::async_write(*socket, asio::buffer(writes.front()),
                      [this](boost::system::error_code ec, size_t) {
                        // A write that completed as the connection dropped: Disconnect
                        // cleared the queue, so there is nothing to pop.
                        if (!connected) return;
                        if (ec) return Disconnect("write failed: " + ec.message());
                        writes.pop_front();
                        FeedUpload();
                        if (!writes.empty()) WriteNext();
                      });
  }

  // Queues the upload's next chunk while the queue is short, so a checkpoint of any size
  // holds one chunk in memory; after the last chunk, the segment's result. Only queues:
  // the caller starts the write if none is in flight.
  void FeedUpload() {
    if (!upload || writes.size() > 1) return;
    StatusOr<std::optional<CheckpointChunk>> chunk = upload->reader->Next();
    if (chunk.ok() && chunk->has_value()) {
      writes.push_back(EncodeFrame(ToJson(CheckpointFrame{std::move(**chunk)})));
      return;
    }
    if (!chunk.ok()) Log("checkpoint upload failed: " + chunk.status().message());
    writes.push_back(std::move(upload->result_frame));
    upload.reset();
  }

  void Disconnect(const std::string& why) {
    if (!connected) return;
    connected = false;
    Log("disconnected: " + why);
    boost::system::error_code ignored;
    socket->close(ignored);
    heartbeat->cancel();
    writes.clear();
    upload.reset();
    if (link_test) link_test->Cancel();
    link_test.reset();
    checkpoints->AbortUpload(kFromController);
    io.stop();
  }

  void ReadHeader() {
    asio::async_read(*socket, asio::buffer(header), [this](boost::system::error_code ec, size_t) {
      if (ec)
        return Disconnect(ec == asio::error::eof ? "controller closed the connection"
                                                 : ec.message());
      const uint32_t n = DecodeFrameLength(header);
      if (n == 0 || n > kMaxFrameBytes) {
        return Disconnect("controller sent a frame of " + std::to_string(n) + " bytes");
      }
      payload.resize(n);
      asio::async_read(*socket, asio::buffer(payload),
                       [this](boost::system::error_code ec2, size_t) {
                         if (ec2) return Disconnect(ec2.message());
                         Handle(payload);
                         if (connected) ReadHeader();
                       });
    });
  }

  void Tick() {
    heartbeat->expires_after(std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s * 1000)));
    heartbeat->async_wait([this](boost::system::error_code ec) {
      if (ec || !connected) return;
      if (shutdown) return Disconnect("shutting down");
      Send(EncodeFrame({{"type", "heartbeat"}}));
      Tick();
    });
  }

  void Handle(const std::string& text) {
    StatusOr<ControllerFrame> frame = DecodeControllerFrame(text);
    if (!frame.ok()) return Disconnect("controller sent a bad frame: " + frame.status().message());
    if (const auto* welcome = std::get_if<WelcomeFrame>(&*frame)) {
      heartbeat_s = welcome->heartbeat_s;
      welcomed = true;
      backoff_s = 0;
      Log("registered with the controller");
    } else if (const auto* assign = std::get_if<AssignFrame>(&*frame)) {
      StartTraining(assign->segment);
    } else if (const auto* probe = std::get_if<ProbeFrame>(&*frame)) {
      StartProbe(*probe);
    } else if (const auto* chunk = std::get_if<CheckpointFrame>(&*frame)) {
      ReceiveCheckpoint(chunk->chunk);
    } else if (const auto* stop = std::get_if<StopFrame>(&*frame)) {
      if (current_trial && stop->trial_id == *current_trial) stop_training = true;
    } else if (const auto* echo = std::get_if<EchoFrame>(&*frame)) {
      // The controller times the link: answer at once, with the pad it asked for.
      Send(EncodeFrame(ToJson(EchoReplyFrame{echo->id, std::string(echo->reply_bytes, 'x')})));
    } else if (const auto* listen = std::get_if<LinkListenFrame>(&*frame)) {
      StartLinkListen(*listen);
    } else if (const auto* send = std::get_if<LinkSendFrame>(&*frame)) {
      StartLinkSend(*send);
    } else if (const auto* error = std::get_if<ErrorFrame>(&*frame)) {
      if (error->fatal) {
        fatal = Status::FailedPrecondition("controller refused this worker (" + error->code +
                                           "): " + error->message);
        Log(fatal.message());
        shutdown = true;
        return Disconnect("refused");
      }
      Disconnect("controller error (" + error->code + "): " + error->message + "; will retry");
    }
  }

  // The link test's outcome, for the controller; the test is over.
  LinkTestSide::Report LinkReporter(const char* role) {
    return [this, role](const LinkReportFrame& r) {
      if (r.error.empty()) {
        Log(std::string("link test ") + std::to_string(r.id) + " (" + role +
            "): " + std::to_string(r.bytes) + " bytes in " + std::to_string(r.seconds) + " s");
      } else {
        Log(std::string("link test ") + std::to_string(r.id) + " (" + role +
            ") failed: " + r.error);
      }
      Send(EncodeFrame(ToJson(r)));
      link_test.reset();
    };
  }

  // Refuses a second link test while one is in flight.
  bool LinkTestBusy(int64_t id) {
    if (!link_test) return false;
    LinkReportFrame r;
    r.id = id;
    r.error = "busy with another link test";
    Send(EncodeFrame(ToJson(r)));
    return true;
  }

  // Listens on the address this worker reaches the controller from: the one the
  // controller sees, and tells the sender.
  void StartLinkListen(const LinkListenFrame& f) {
    if (LinkTestBusy(f.id)) return;
    boost::system::error_code ec;
    const tcp::endpoint local = socket->local_endpoint(ec);
    StatusOr<std::shared_ptr<LinkTestSide>> side =
        ec ? StatusOr<std::shared_ptr<LinkTestSide>>(
                 Status::IOError("no local address: " + ec.message()))
           : LinkTestSide::Listen(io, local.address().to_string(), f, LinkReporter("listener"));
    if (!side.ok()) {
      LinkReportFrame r;
      r.id = f.id;
      r.error = side.status().message();
      Send(EncodeFrame(ToJson(r)));
      return;
    }
    link_test = *side;
    Send(EncodeFrame(ToJson(LinkListeningFrame{f.id, link_test->port()})));
  }

  void StartLinkSend(const LinkSendFrame& f) {
    if (LinkTestBusy(f.id)) return;
    link_test = LinkTestSide::Send(io, f, LinkReporter("sender"));
  }

  // A chunk of the checkpoint the next segment resumes from. A transfer that fails leaves
  // no file, and that segment then fails saying the checkpoint does not exist.
  void ReceiveCheckpoint(const CheckpointChunk& chunk) {
    Status s = checkpoints->Receive(kFromController, chunk);
    const std::string name = CheckpointFileName(chunk.stem, chunk.epoch);
    if (!s.ok()) {
      Log("receiving checkpoint " + name + " failed: " + s.message());
    } else if (chunk.last()) {
      Log("received checkpoint " + name + " (" + std::to_string(chunk.total_bytes) + " bytes)");
    }
  }

  std::string Resolve(const std::string& root, const std::string& path) {
    std::filesystem::path p(path);
    return p.is_absolute() ? p.string() : (std::filesystem::path(root) / p).string();
  }

  void StartTraining(const SegmentSpec& a) {
    if (current_trial) {
      Send(EncodeFrame(
          ToJson(ResultFrame{{a.trial_id, a.attempt, SegmentStatus::kFailed,
                              "worker is busy with trial " + std::to_string(*current_trial)}})));
      return;
    }
    JoinTraining();
    TrainRequest request;
    request.model = a.model;
    request.data_format = a.dataset.format;
    request.data_dir = Resolve(options.data_root, a.dataset.path);
    request.augment = a.dataset.augment;
    request.max_train_samples = a.dataset.max_train_samples;
    request.max_val_samples = a.dataset.max_val_samples;
    request.config = a.config;
    request.momentum = a.momentum;
    request.seed = a.seed;
    request.start_epoch = a.start_epoch;
    request.end_epoch = a.end_epoch;
    request.target_accuracy = a.target_accuracy;
    request.train_s_before = a.train_s_before;
    request.max_train_s = a.max_train_s;
    request.checkpoint_dir = options.checkpoint_dir;
    request.checkpoint_stem = a.checkpoint;
    current_trial = a.trial_id;
    stop_training = false;
    char what[200];
    std::snprintf(what, sizeof(what), "trial %lld: %s bs=%d lr=%.3g epochs %d..%d",
                  static_cast<long long>(a.trial_id), OptimizerName(a.config.optimizer),
                  a.config.batch_size, a.config.learning_rate, a.start_epoch + 1, a.end_epoch);
    Log(what);
    const int64_t trial_id = a.trial_id;
    const int attempt = a.attempt;
    training = std::thread([this, request, trial_id, attempt, stem = a.checkpoint] {
      auto on_epoch = [this, trial_id, attempt](const CurvePoint& p) {
        std::string frame = EncodeFrame(ToJson(ProgressFrame{trial_id, attempt, p}));
        asio::post(io, [this, frame = std::move(frame)]() mutable { Send(std::move(frame)); });
      };
      TrainResult result =
          replay ? ReplaySegment(*replay, request, options.replay_speedup, on_epoch, stop_training)
                 : trainer.Run(request, on_epoch, stop_training);
      std::string frame =
          EncodeFrame(ToJson(ResultFrame{{trial_id, attempt, result.status, result.message}}));
      asio::post(io, [this, frame = std::move(frame), trial_id, attempt, stem, result,
                      start = request.start_epoch]() mutable {
        if (result.status != SegmentStatus::kCompleted) {
          Log("trial " + std::to_string(trial_id) + " " + SegmentStatusName(result.status) + ": " +
              result.message);
        }
        current_trial.reset();
        if (result.checkpoint_path.empty()) return Send(std::move(frame));
        // No later segment resumes from before this one's start.
        checkpoints->Discard(stem, start);
        // The checkpoint goes to the controller first, so that any worker can resume it.
        CheckpointChunk header;
        header.trial_id = trial_id;
        header.attempt = attempt;
        header.stem = stem;
        header.epoch = result.epochs_done;
        StatusOr<std::unique_ptr<ChunkedFileReader>> reader =
            ChunkedFileReader::Open(result.checkpoint_path, header);
        if (!reader.ok()) {
          Log("cannot upload the checkpoint: " + reader.status().message());
          return Send(std::move(frame));
        }
        if (!connected) return;
        upload = Upload{std::move(*reader), std::move(frame)};
        const bool idle = writes.empty();
        FeedUpload();
        if (idle) WriteNext();
      });
    });
  }

  // Probes on the training thread (the worker is idle while it probes) and answers with
  // a probe_result frame.
  void StartProbe(const ProbeFrame& m) {
    const std::string key = m.key;
    ProbeRequest request;
    request.model = m.model;
    request.batch_sizes = m.batch_sizes;
    request.min_timed_s = options.probe_seconds;
    if (current_trial) {
      Send(EncodeFrame(ToJson(ProbeResultFrame{key, std::nullopt, "worker is busy"})));
      return;
    }
    const DatasetSpec* dataset = &m.dataset;
    request.data_format = dataset->format;
    request.data_dir = Resolve(options.data_root, dataset->path);
    if (replay) {
      // The table is the device: every recorded batch size fits (trials snap to them).
      DeviceProbe probe;
      probe.model = request.model;
      probe.input = "replay";
      for (int b : request.batch_sizes) probe.batches.push_back({b, true, 0.0, 0, ""});
      Send(EncodeFrame(ToJson(ProbeResultFrame{key, probe, ""})));
      return;
    }
    JoinTraining();
    Log("probing " + request.model + " at " + std::to_string(request.batch_sizes.size()) +
        " batch sizes");
    training = std::thread([this, request, key] {
      StatusOr<DeviceProbe> probe = prober.Probe(request);
      ProbeResultFrame frame{key, std::nullopt, ""};
      if (probe.ok()) {
        frame.probe = *probe;
        Log("probe: largest batch size that fits: " + std::to_string(probe->MaxBatchSize()) +
            " (with Adam's state: " + std::to_string(probe->MaxBatchSize({Optimizer::kAdam})) +
            ")");
      } else {
        frame.error = probe.status().message();
        Log("probe failed: " + probe.status().message());
      }
      std::string encoded = EncodeFrame(ToJson(frame));
      asio::post(io, [this, encoded = std::move(encoded)]() mutable { Send(std::move(encoded)); });
    });
  }

  // Caps the address space at its current size plus the budget (RLIMIT_AS): the one given
  // (--memory-budget), else, training on the CPU under a cgroup memory limit, the one that
  // keeps it under that limit (CgroupMemoryBudget). Not on a GPU: CUDA reserves far more
  // address space than it uses, and its allocator reports running out itself.
  Status ApplyMemoryBudget(DeviceProfile* device) {
    int64_t budget = options.memory_budget_bytes;
    std::string why = "--memory-budget";
    if (budget <= 0 && device->kind == "cpu") {
      budget = CgroupMemoryBudget();
      why = "its cgroup's memory limit of " + std::to_string(CgroupMemoryLimit() >> 20) +
            " MiB, less what it holds and a margin";
    }
    if (budget <= 0) {
      // Capped already (ulimit -v): the tensors keep under that cap.
      const int64_t cap = device->kind == "cpu" ? HonourAddressSpaceLimit() : 0;
      if (cap > 0) Log("address space capped at " + std::to_string(cap >> 20) + " MiB (ulimit -v)");
      return Status::OK();
    }
    const int64_t cap = CapAddressSpace(budget);
    if (cap == 0) return Status::IOError("cannot apply the memory budget (RLIMIT_AS)");
    if (options.memory_budget_bytes > 0) {
      device->memory_bytes = std::min(device->memory_bytes, options.memory_budget_bytes);
    }
    Log("address space capped at " + std::to_string(cap >> 20) + " MiB (" +
        std::to_string(budget >> 20) + " MiB above its size at start, from " + why + ")");
    return Status::OK();
  }

  void JoinTraining() {
    if (training.joinable()) training.join();
  }

  Status Run() {
    if (options.worker_id.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof(host) - 1);
      options.worker_id = host;
    }
    DeviceProfile device;
    if (!options.replay_table.empty()) {
      StatusOr<ReplayTable> table = LoadReplayTable(options.replay_table);
      if (!table.ok()) return table.status();
      replay = std::move(*table);
      device.kind = "replay";
      auto recorded_on = replay->meta().find("device");
      device.name = options.replay_table +
                    (recorded_on == replay->meta().end() ? "" : " (" + recorded_on->second + ")");
      device.cores = 1;
      Log("replaying " + std::to_string(replay->runs().size()) + " recorded configurations from " +
          options.replay_table);
    } else {
      device = Trainer::ProbeDevice();
    }
    TOPOTUNE_RETURN_IF_ERROR(ApplyMemoryBudget(&device));
    device.device_class = options.device_class;
    device.site = options.site;
    StatusOr<std::unique_ptr<CheckpointStore>> store =
        CheckpointStore::Open(options.checkpoint_dir, int64_t{1} << 40);
    if (!store.ok()) return store.status();
    checkpoints = std::move(*store);
    // The controller refuses names over 256 bytes: cut a long one (a replay table's path)
    // at a character boundary.
    if (device.name.size() > 200) {
      size_t cut = 200;
      while (cut > 0 && (static_cast<unsigned char>(device.name[cut]) & 0xC0) == 0x80) --cut;
      device.name.resize(cut);
    }
    while (!shutdown) {
      if (!Connect()) break;
      connected = true;
      heartbeat = std::make_unique<asio::steady_timer>(io);
      welcomed = false;
      Send(EncodeFrame(
          ToJson(HelloFrame{kProtocolVersion, options.worker_id, options.token, device})));
      ReadHeader();
      Tick();
      io.restart();
      io.run();
      // The connection is gone: whatever trains now belongs to a lease we lost.
      stop_training = true;
      JoinTraining();
      current_trial.reset();
      io.restart();
      io.poll();  // drop what the training thread posted
      connected = false;
      // Refused or cut before the welcome: back off before the next hello. After a
      // welcome, reconnect at once (Connect backs off if the controller is down).
      if (!welcomed && !shutdown) Sleep(NextBackoff());
    }
    stop_training = true;
    JoinTraining();
    if (!fatal.ok()) return fatal;
    return Status::OK();
  }
};

Agent::Agent(AgentOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Agent::~Agent() = default;
Status Agent::Run() { return impl_->Run(); }
void Agent::Shutdown() { impl_->shutdown = true; }

}  // namespace topotune
