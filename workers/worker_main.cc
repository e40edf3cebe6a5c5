// topotune-worker: the agent on each device.
//
//   topotune-worker [--controller HOST:PORT] [--name ID] [--class NAME] [--site NAME]
//                   [--data-root DIR]
//                   [--checkpoint-dir DIR] [--threads N] [--token-file FILE]
//                   [--connect-timeout S]
//   topotune-worker record-replay ...   (records a replay table; see RecordUsage)
//   topotune-worker probe ...           (prints this device's probe; see ProbeUsage)

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/protocol.h"
#include "workers/agent.h"
#include "workers/device_probe.h"
#ifdef TOPOTUNE_HAVE_DP_PROBE
#include "workers/dp_probe.h"
#endif
#include "workers/memory_stats.h"
#include "workers/replay_recorder.h"
#include "workers/trainer.h"

namespace {

topotune::Agent* g_agent = nullptr;

void OnSignal(int) {
  if (g_agent != nullptr) g_agent->Shutdown();
}

int Usage(const std::string& error) {
  std::fprintf(stderr,
               "topotune-worker: %s\n"
               "usage: topotune-worker [--controller HOST:PORT] [--name ID] [--data-root DIR]\n"
               "                       [--checkpoint-dir DIR] [--threads N] "
               "[--token-file FILE] [--connect-timeout S]\n"
               "  --controller HOST:PORT  topotuned's worker gateway (default 127.0.0.1:7701)\n"
               "  --name ID               this worker's stable name (default: the host name)\n"
               "  --class NAME            its device class, e.g. jetson-nano, a100, cpu-2c\n"
               "                          (default <kind>-<cores>c)\n"
               "  --site NAME             where it is, e.g. edge-1, cloud (default none)\n"
               "  --data-root DIR         where relative dataset paths start (default .)\n"
               "  --checkpoint-dir DIR    trial checkpoints (default checkpoints)\n"
               "  --threads N             LibTorch intra-op threads (default: LibTorch's)\n"
               "  --token-file FILE       this worker's token (a worker token: topotune token\n"
               "                          create --role worker); default $TOPOTUNE_WORKER_TOKEN\n"
               "  --connect-timeout S     give up when the controller stays unreachable for S s\n"
               "                          (default 0: retry forever, backing off to 30 s)\n"
               "Exits 1 only on a fatal refusal: a protocol version or a token the controller\n"
               "rejects. A controller that goes away is waited for.\n"
               "  --replay TABLE.csv      answer trials from a recorded replay table instead\n"
               "                          of training (see record-replay)\n"
               "  --speedup X             replay X simulated seconds per second (default 1;\n"
               "                          0 = no waiting)\n"
               "  --memory-budget MIB     cap the address space this far above its size at\n"
               "                          start (RLIMIT_AS, like ulimit -v): emulates a small\n"
               "                          device\n"
               "  --probe-seconds S       seconds of steps each probe times per batch size\n"
               "                          (default 1; 0-600). Longer averages over more of a\n"
               "                          device's variation and delays its first trial\n"
               "       topotune-worker record-replay ...   record a replay table (real training)\n"
               "       topotune-worker probe ...           print this device's probe of a model\n"
               "       topotune-worker dp-probe ...        time one data-parallel placement\n",
               error.c_str());
  return 2;
}

template <typename T>
std::vector<T> SplitList(const std::string& text, T (*parse)(const std::string&)) {
  std::vector<T> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    if (!item.empty()) out.push_back(parse(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

int ParseInt(const std::string& s) { return std::stoi(s); }
double ParseDouble(const std::string& s) { return std::stod(s); }
uint64_t ParseSeed(const std::string& s) { return std::stoull(s); }
topotune::Optimizer ParseOptimizerOrThrow(const std::string& s) {
  auto o = topotune::ParseOptimizer(s);
  if (!o) throw std::invalid_argument("unknown optimizer " + s);
  return *o;
}

// BATCH:LR:OPT[:EPOCHS], e.g. 64:0.001:adam:24.
topotune::ReplayConfig ParseReplayConfig(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon = s.find(':'); colon != std::string::npos; colon = s.find(':', start)) {
    parts.push_back(s.substr(start, colon - start));
    start = colon + 1;
  }
  parts.push_back(s.substr(start));
  if (parts.size() < 3 || parts.size() > 4) {
    throw std::invalid_argument("a configuration is BATCH:LR:OPT[:EPOCHS]");
  }
  topotune::ReplayConfig c;
  size_t used = 0;
  c.batch_size = std::stoi(parts[0], &used);
  if (used != parts[0].size()) throw std::invalid_argument(parts[0]);
  c.lr = std::stod(parts[1], &used);
  if (used != parts[1].size()) throw std::invalid_argument(parts[1]);
  c.optimizer = ParseOptimizerOrThrow(parts[2]);
  if (parts.size() == 4) {
    c.epochs = std::stoi(parts[3], &used);
    if (used != parts[3].size()) throw std::invalid_argument(parts[3]);
  }
  return c;
}

int RecordUsage(const std::string& error) {
  std::fprintf(stderr,
               "topotune-worker record-replay: %s\n"
               "usage: topotune-worker record-replay --out FILE.csv --data DIR\n"
               "         [--model lenet] [--data-format cifar10-bin|mnist-idx]\n"
               "         [--batch-sizes 16,32,...] [--lrs 0.001,0.01,... | --lr-range LO:HI:N]\n"
               "         [--optimizers sgd,adam] [--seeds 0,1] [--epochs N] [--momentum M]\n"
               "         [--max-train N] [--max-val N] [--augment] [--threads N] [--shard I/N]\n"
               "         [--shuffle SEED] [--configs BATCH:LR:OPT[:EPOCHS],...]\n"
               "Runs the whole grid with real training and writes the replay table. --shuffle\n"
               "runs it in a random order drawn from SEED, so that the machine's drift over the\n"
               "recording does not land on the last batch sizes. --configs runs these\n"
               "configurations in place of the grid, seed by seed (every configuration's first\n"
               "seed, then every one's second, ...), each for its EPOCHS (default --epochs).\n",
               error.c_str());
  return 2;
}

// topotune-worker record-replay ...: records a replay table on this device.
int RecordReplayMain(int argc, char** argv) {
  topotune::ReplayGrid grid;
  grid.batch_sizes = {16, 32, 64, 128, 256, 512};
  grid.learning_rates = topotune::LogSpaced(1e-4, 1.0, 9);
  grid.optimizers = {topotune::Optimizer::kSgd, topotune::Optimizer::kAdam};
  grid.seeds = {0, 1};
  std::string out;
  int threads = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--augment") {
      grid.augment = true;
      continue;
    }
    if (i + 1 >= argc) return RecordUsage("unknown or incomplete argument '" + arg + "'");
    const std::string value = argv[++i];
    try {
      if (arg == "--out") {
        out = value;
      } else if (arg == "--data") {
        grid.data_dir = value;
      } else if (arg == "--data-format") {
        grid.data_format = value;
      } else if (arg == "--model") {
        grid.model = value;
      } else if (arg == "--batch-sizes") {
        grid.batch_sizes = SplitList<int>(value, ParseInt);
      } else if (arg == "--lrs") {
        grid.learning_rates = SplitList<double>(value, ParseDouble);
      } else if (arg == "--lr-range") {
        size_t a = value.find(':'), b = value.rfind(':');
        if (a == std::string::npos || a == b) return RecordUsage("--lr-range needs LO:HI:N");
        grid.learning_rates = topotune::LogSpaced(std::stod(value.substr(0, a)),
                                                  std::stod(value.substr(a + 1, b - a - 1)),
                                                  std::stoi(value.substr(b + 1)));
      } else if (arg == "--optimizers") {
        grid.optimizers = SplitList<topotune::Optimizer>(value, ParseOptimizerOrThrow);
      } else if (arg == "--seeds") {
        grid.seeds = SplitList<uint64_t>(value, ParseSeed);
      } else if (arg == "--epochs") {
        grid.epochs = std::stoi(value);
      } else if (arg == "--momentum") {
        grid.momentum = std::stod(value);
      } else if (arg == "--max-train") {
        grid.max_train_samples = std::stoll(value);
      } else if (arg == "--max-val") {
        grid.max_val_samples = std::stoll(value);
      } else if (arg == "--threads") {
        threads = std::stoi(value);
      } else if (arg == "--configs") {
        grid.configs = SplitList<topotune::ReplayConfig>(value, ParseReplayConfig);
      } else if (arg == "--shuffle") {
        grid.shuffle_seed = ParseSeed(value);
      } else if (arg == "--shard") {
        const size_t slash = value.find('/');
        if (slash == std::string::npos) return RecordUsage("--shard needs I/N");
        grid.shard = std::stoi(value.substr(0, slash));
        grid.num_shards = std::stoi(value.substr(slash + 1));
      } else {
        return RecordUsage("unknown argument '" + arg + "'");
      }
    } catch (const std::exception&) {
      return RecordUsage("bad value '" + value + "' for " + arg);
    }
  }
  if (out.empty()) return RecordUsage("--out is required");
  topotune::Status valid = topotune::ValidateReplayGrid(grid);
  if (!valid.ok()) return RecordUsage(valid.message());
  topotune::Trainer trainer(threads);
  const topotune::DeviceProfile device = topotune::Trainer::ProbeDevice();
  topotune::Status s = topotune::RecordReplayTable(
      grid, trainer, device.kind + ":" + device.name + ":threads=" + std::to_string(threads), out,
      [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  if (!s.ok()) {
    std::fprintf(stderr, "topotune-worker record-replay: %s\n", s.ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "wrote %s\n", out.c_str());
  return 0;
}

int ProbeUsage(const std::string& error) {
  std::fprintf(stderr,
               "topotune-worker probe: %s\n"
               "usage: topotune-worker probe --data DIR [--model lenet]\n"
               "         [--data-format cifar10-bin|mnist-idx] [--batch-sizes 16,32,...]\n"
               "         [--steps N] [--seconds S] [--rounds R] [--threads N]\n"
               "         [--memory-budget MiB]\n"
               "Measures this device as a worker does when the controller asks: the step time\n"
               "of each batch size (at least N steps and S seconds per size after two warm-up\n"
               "steps; default 2 and 1) and the largest that fits in memory. The seconds are\n"
               "split into up to R rounds (default 5; each at least 0.5 s) that cycle through\n"
               "the sizes, and a size's step time is the mean step of its median round.\n"
               "--memory-budget caps the memory of a CPU probe as the worker's flag does.\n"
               "Prints one JSON object\n"
               "{\"device\": ..., \"probe\": ...} (the probe_result frame's fields).\n",
               error.c_str());
  return 2;
}

// topotune-worker probe ...: the device profile and one model's probe, as JSON on stdout.
int ProbeMain(int argc, char** argv) {
  topotune::ProbeRequest request;
  request.model = "lenet";
  request.batch_sizes = {16, 32, 64, 128, 256, 512};
  int threads = 0;
  int64_t memory_budget = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return ProbeUsage("unknown or incomplete argument '" + arg + "'");
    const std::string value = argv[++i];
    try {
      if (arg == "--data") {
        request.data_dir = value;
      } else if (arg == "--data-format") {
        request.data_format = value;
      } else if (arg == "--model") {
        request.model = value;
      } else if (arg == "--batch-sizes") {
        request.batch_sizes = SplitList<int>(value, ParseInt);
      } else if (arg == "--seconds") {
        request.min_timed_s = std::stod(value);
        if (!(request.min_timed_s >= 0 && request.min_timed_s <= 3600)) {
          return ProbeUsage("--seconds must be in [0, 3600]");
        }
      } else if (arg == "--steps") {
        request.timed_steps = ParseInt(value);
      } else if (arg == "--rounds") {
        request.rounds = ParseInt(value);
        if (request.rounds < 1 || request.rounds > 100) {
          return ProbeUsage("--rounds must be in [1, 100]");
        }
      } else if (arg == "--threads") {
        threads = ParseInt(value);
      } else if (arg == "--memory-budget") {
        memory_budget = static_cast<int64_t>(std::stod(value) * (1 << 20));
        if (memory_budget <= 0) return ProbeUsage("--memory-budget must be > 0 MiB");
      } else {
        return ProbeUsage("unknown argument '" + arg + "'");
      }
    } catch (const std::exception&) {
      return ProbeUsage("bad value '" + value + "' for " + arg);
    }
  }
  if (request.data_dir.empty()) return ProbeUsage("--data is required");
  if (request.batch_sizes.empty()) return ProbeUsage("--batch-sizes is empty");
  for (int b : request.batch_sizes) {
    if (b <= 0) return ProbeUsage("batch sizes must be > 0, not " + std::to_string(b));
  }
  if (request.timed_steps <= 0) return ProbeUsage("--steps must be > 0");
  topotune::Trainer trainer(threads);  // sets LibTorch's threads, as the agent does
  topotune::DeviceProfile device = topotune::Trainer::ProbeDevice();
  // Under --memory-budget or a cgroup memory limit, as the agent does: a batch that does not
  // fit then fails to allocate instead of getting the process killed.
  if (memory_budget > 0) device.memory_bytes = std::min(device.memory_bytes, memory_budget);
  if (device.kind == "cpu") {
    const int64_t budget = memory_budget > 0 ? memory_budget : topotune::CgroupMemoryBudget();
    if (budget > 0 && topotune::CapAddressSpace(budget) == 0) {
      std::fprintf(stderr, "topotune-worker probe: cannot cap the address space (RLIMIT_AS)\n");
      return 1;
    }
    if (budget <= 0) topotune::HonourAddressSpaceLimit();  // `ulimit -v`
  }
  topotune::DeviceProber prober;
  topotune::StatusOr<topotune::DeviceProbe> probe = prober.Probe(request);
  if (!probe.ok()) {
    std::fprintf(stderr, "topotune-worker probe: %s\n", probe.status().ToString().c_str());
    return 1;
  }
  probe->measured_at =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const nlohmann::json out = {{"device", topotune::ToJson(device)},
                              {"probe", topotune::ToJson(*probe)}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int DpProbeUsage(const std::string& error) {
  std::fprintf(stderr,
               "topotune-worker dp-probe: %s\n"
               "usage: topotune-worker dp-probe --data DIR --model NAME --local-batch B\n"
               "         --rank R --world N [--store HOST:PORT] [--bind ADDRESS]\n"
               "         [--data-format cifar10-bin|mnist-idx] [--steps N] [--warmup N]\n"
               "         [--min-seconds S] [--threads N] [--timeout S]\n"
               "Times synchronous data-parallel training on N processes, one per device: each\n"
               "trains on its own local batch, and the gradients are all-reduced (c10d, Gloo\n"
               "ring over TCP) after every backward pass. Start it once per rank; rank 0 serves\n"
               "the rendezvous at --store and the others connect there; --bind is the address\n"
               "this rank's peers reach it at (default: the host name's). Prints one JSON\n"
               "object: the means of the step, its compute and its sync over at least N timed\n"
               "steps (default 20, after 3 warm-up steps) and at least S seconds (default 1, so\n"
               "that a CPU quota shows), the step's median, and the bytes all-reduced per step.\n",
               error.c_str());
  return 2;
}

// topotune-worker dp-probe ...: one rank of a data-parallel placement, as JSON on stdout.
int DpProbeMain(int argc, char** argv) {
#ifndef TOPOTUNE_HAVE_DP_PROBE
  (void)argc;
  (void)argv;
  std::fprintf(stderr,
               "topotune-worker dp-probe: not built: this worker was built without Gloo's "
               "headers (install libgloo-dev and rebuild)\n");
  return 2;
#else
  topotune::DataParallelRequest request;
  int threads = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return DpProbeUsage("unknown or incomplete argument '" + arg + "'");
    const std::string value = argv[++i];
    try {
      if (arg == "--data") {
        request.data_dir = value;
      } else if (arg == "--data-format") {
        request.data_format = value;
      } else if (arg == "--model") {
        request.model = value;
      } else if (arg == "--local-batch") {
        request.local_batch = ParseInt(value);
      } else if (arg == "--rank") {
        request.rank = ParseInt(value);
      } else if (arg == "--world") {
        request.world = ParseInt(value);
      } else if (arg == "--store") {
        const size_t colon = value.rfind(':');
        if (colon == std::string::npos) return DpProbeUsage("--store needs HOST:PORT");
        request.store_host = value.substr(0, colon);
        request.store_port = ParseInt(value.substr(colon + 1));
      } else if (arg == "--bind") {
        request.bind_address = value;
      } else if (arg == "--steps") {
        request.timed_steps = ParseInt(value);
      } else if (arg == "--warmup") {
        request.warmup_steps = ParseInt(value);
      } else if (arg == "--min-seconds") {
        request.min_timed_s = std::stod(value);
        if (!(request.min_timed_s >= 0 && request.min_timed_s <= 600)) {
          return DpProbeUsage("--min-seconds must be in [0, 600]");
        }
      } else if (arg == "--threads") {
        threads = ParseInt(value);
      } else if (arg == "--timeout") {
        request.timeout_s = std::stod(value);
        if (!(request.timeout_s > 0 && request.timeout_s <= 3600)) {
          return DpProbeUsage("--timeout must be in (0, 3600]");
        }
      } else {
        return DpProbeUsage("unknown argument '" + arg + "'");
      }
    } catch (const std::exception&) {
      return DpProbeUsage("bad value '" + value + "' for " + arg);
    }
  }
  topotune::Trainer trainer(threads);  // sets LibTorch's threads, as the agent does
  topotune::StatusOr<topotune::DataParallelProbe> probe = topotune::ProbeDataParallel(request);
  if (!probe.ok()) {
    if (probe.status().code() == topotune::Status::Code::kInvalidArgument) {
      return DpProbeUsage(probe.status().message());
    }
    std::fprintf(stderr, "topotune-worker dp-probe: %s\n", probe.status().ToString().c_str());
    return 1;
  }
  const nlohmann::json out = {{"rank", probe->rank},
                              {"world", probe->world},
                              {"local_batch", probe->local_batch},
                              {"gradient_bytes", probe->gradient_bytes},
                              {"steps", probe->steps},
                              {"step_s", probe->step_s},
                              {"compute_s", probe->compute_s},
                              {"sync_s", probe->sync_s},
                              {"step_median_s", probe->step_median_s},
                              {"sync_p90_s", probe->sync_p90_s},
                              {"weights_checksum", probe->weights_checksum}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "record-replay") return RecordReplayMain(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "probe") return ProbeMain(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "dp-probe") return DpProbeMain(argc, argv);
  topotune::AgentOptions options;
  if (const char* token = std::getenv("TOPOTUNE_WORKER_TOKEN")) options.token = token;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage("unknown or incomplete argument '" + arg + "'");
    const std::string value = argv[++i];
    try {
      if (arg == "--controller") {
        const size_t colon = value.rfind(':');
        if (colon == std::string::npos) return Usage("--controller needs HOST:PORT");
        options.controller_host = value.substr(0, colon);
        options.controller_port = std::stoi(value.substr(colon + 1));
      } else if (arg == "--name") {
        options.worker_id = value;
      } else if (arg == "--class" || arg == "--site") {
        if (!topotune::ValidWorkerId(value)) {
          return Usage(arg + " must be 1-64 of A-Z a-z 0-9 . _ -, got '" + value + "'");
        }
        (arg == "--class" ? options.device_class : options.site) = value;
      } else if (arg == "--data-root") {
        options.data_root = value;
      } else if (arg == "--checkpoint-dir") {
        options.checkpoint_dir = value;
      } else if (arg == "--threads") {
        options.threads = std::stoi(value);
      } else if (arg == "--memory-budget") {
        options.memory_budget_bytes = static_cast<int64_t>(std::stod(value) * (1 << 20));
        if (options.memory_budget_bytes <= 0) return Usage("--memory-budget must be > 0 MiB");
      } else if (arg == "--probe-seconds") {
        options.probe_seconds = std::stod(value);
        if (!(options.probe_seconds >= 0 && options.probe_seconds <= 600)) {
          return Usage("--probe-seconds must be in [0, 600]");
        }
      } else if (arg == "--replay") {
        options.replay_table = value;
      } else if (arg == "--speedup") {
        options.replay_speedup = std::stod(value);
        if (options.replay_speedup < 0) return Usage("--speedup must be >= 0");
      } else if (arg == "--connect-timeout") {
        options.connect_timeout_s = std::stod(value);
        if (options.connect_timeout_s < 0) return Usage("--connect-timeout must be >= 0");
      } else if (arg == "--token-file") {
        std::ifstream in(value);
        if (!in || !std::getline(in, options.token))
          return Usage("cannot read --token-file " + value);
        while (!options.token.empty() &&
               (options.token.back() == '\r' || options.token.back() == ' ')) {
          options.token.pop_back();
        }
      } else {
        return Usage("unknown argument '" + arg + "'");
      }
    } catch (const std::exception&) {
      return Usage("bad value '" + value + "' for " + arg);
    }
  }
  topotune::Agent agent(options);
  g_agent = &agent;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  topotune::Status s = agent.Run();
  g_agent = nullptr;
  if (!s.ok()) {
    std::fprintf(stderr, "topotune-worker: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
