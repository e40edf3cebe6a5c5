// topotune-worker: the agent on each device.
//
//   topotune-worker [--controller HOST:PORT] [--name ID] [--data-root DIR]
//                   [--checkpoint-dir DIR] [--threads N] [--connect-timeout S]

#include <csignal>
#include <cstdio>
#include <string>

#include "workers/agent.h"

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
               "[--connect-timeout S]\n"
               "  --controller HOST:PORT  topotuned's worker gateway (default 127.0.0.1:7701)\n"
               "  --name ID               this worker's stable name (default: the host name)\n"
               "  --data-root DIR         where relative dataset paths start (default .)\n"
               "  --checkpoint-dir DIR    trial checkpoints (default checkpoints)\n"
               "  --threads N             LibTorch intra-op threads (default: LibTorch's)\n"
               "  --connect-timeout S     give up reaching the controller after S s (60)\n",
               error.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  topotune::AgentOptions options;
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
      } else if (arg == "--data-root") {
        options.data_root = value;
      } else if (arg == "--checkpoint-dir") {
        options.checkpoint_dir = value;
      } else if (arg == "--threads") {
        options.threads = std::stoi(value);
      } else if (arg == "--connect-timeout") {
        options.connect_timeout_s = std::stod(value);
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
