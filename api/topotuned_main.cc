// topotuned: the controller. REST API, worker gateway, tuning engine, SQLite.
//
//   topotuned [--db FILE] [--http HOST:PORT] [--workers HOST:PORT] [--lease S]
//             [--ports-file FILE] [--admin-token-file FILE] [--checkpoints DIR]
//             [--max-checkpoint-mb N]

#include <pthread.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "api/http_server.h"
#include "api/job_spec_json.h"
#include "api/protocol.h"
#include "api/rest_router.h"
#include "api/tokens.h"
#include "api/worker_gateway.h"
#include "storage/store.h"
#include "tuner/checkpoint_store.h"

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool SplitHostPort(const std::string& text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  *host = text.substr(0, colon);
  try {
    *port = std::stoi(text.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return !host->empty() && *port >= 0 && *port < 65536;
}

int Usage(const char* error) {
  std::fprintf(stderr,
               "topotuned: %s\n"
               "usage: topotuned [--db FILE] [--http HOST:PORT] [--workers HOST:PORT] "
               "[--lease S] [--ports-file FILE] [--admin-token-file FILE] [--checkpoints DIR]\n"
               "                 [--max-checkpoint-mb N] [--link-test-kib N]\n"
               "  --db FILE            SQLite database (default topotune.db)\n"
               "  --http HOST:PORT     REST API (default 127.0.0.1:7700; port 0 picks one)\n"
               "  --workers HOST:PORT  worker gateway (default 127.0.0.1:7701)\n"
               "  --lease S            drop a worker silent for S seconds (default 15)\n"
               "  --ports-file FILE    write the bound ports as JSON once listening\n"
               "  --admin-token-file FILE  an admin secret of your own (32-256 visible ASCII\n"
               "                       characters, first line); default $TOPOTUNE_ADMIN_TOKEN.\n"
               "                       Without either, the first start prints a new admin\n"
               "                       token once.\n"
               "  --checkpoints DIR    where workers upload trial checkpoints, so that any\n"
               "                       worker can resume a trial (default FILE.checkpoints\n"
               "                       beside --db)\n"
               "  --max-checkpoint-mb N  refuse checkpoints over N MiB (default 4096)\n"
               "  --link-test-kib N    the first link test between two sites sends at most\n"
               "                       N KiB (default 4096; 0 = no link tests). One too fast\n"
               "                       to time is repeated with 8x the bytes, up to 64 MiB\n",
               error);
  return 2;
}

// The first line of `path`, trimmed; false if it cannot be read.
bool ReadFirstLine(const std::string& path, std::string* line) {
  std::ifstream in(path);
  if (!in || !std::getline(in, *line)) return false;
  while (!line->empty() && (line->back() == '\r' || line->back() == ' ')) line->pop_back();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace topotune;
  // SIGINT and SIGTERM are taken by one thread with sigwait (stopping the server is not
  // async-signal-safe): block them here, before any thread starts, so every thread inherits
  // the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::string db = "topotune.db";
  std::string ports_file;
  std::string admin_token;
  std::string checkpoint_dir;
  int64_t max_checkpoint_mb = 4096;
  if (const char* env = std::getenv("TOPOTUNE_ADMIN_TOKEN")) admin_token = env;
  HttpServer::Options http;
  WorkerGateway::Options gateway_options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--db" && has_value) {
      db = argv[++i];
    } else if (arg == "--http" && has_value) {
      if (!SplitHostPort(argv[++i], &http.host, &http.port)) return Usage("bad --http HOST:PORT");
    } else if (arg == "--workers" && has_value) {
      if (!SplitHostPort(argv[++i], &gateway_options.host, &gateway_options.port)) {
        return Usage("bad --workers HOST:PORT");
      }
    } else if (arg == "--lease" && has_value) {
      gateway_options.lease_s = std::atof(argv[++i]);
      if (gateway_options.lease_s <= gateway_options.heartbeat_s) {
        return Usage("--lease must be longer than the 2 s heartbeat");
      }
    } else if (arg == "--link-test-kib" && has_value) {
      const long long kib = std::atoll(argv[++i]);
      if (kib < 0 || kib > (kMaxLinkTestBytes >> 10)) {
        return Usage("--link-test-kib must be 0..65536");
      }
      gateway_options.link_test_bytes = static_cast<int64_t>(kib) << 10;
    } else if (arg == "--ports-file" && has_value) {
      ports_file = argv[++i];
    } else if (arg == "--checkpoints" && has_value) {
      checkpoint_dir = argv[++i];
    } else if (arg == "--max-checkpoint-mb" && has_value) {
      max_checkpoint_mb = std::atoll(argv[++i]);
      if (max_checkpoint_mb < 1 || max_checkpoint_mb > (int64_t{1} << 20)) {
        return Usage("--max-checkpoint-mb must be in [1, 1048576]");
      }
    } else if (arg == "--admin-token-file" && has_value) {
      if (!ReadFirstLine(argv[++i], &admin_token)) {
        return Usage(("cannot read --admin-token-file " + std::string(argv[i])).c_str());
      }
    } else {
      return Usage(("unknown or incomplete argument '" + arg + "'").c_str());
    }
  }

  StatusOr<std::unique_ptr<Store>> store = Store::Open(db);
  if (!store.ok()) {
    std::fprintf(stderr, "topotuned: %s\n", store.status().ToString().c_str());
    return 1;
  }
  if (checkpoint_dir.empty()) checkpoint_dir = db + ".checkpoints";
  StatusOr<std::unique_ptr<CheckpointStore>> checkpoints =
      CheckpointStore::Open(checkpoint_dir, max_checkpoint_mb << 20);
  if (!checkpoints.ok()) {
    std::fprintf(stderr, "topotuned: %s\n", checkpoints.status().ToString().c_str());
    return 1;
  }
  TokenAuthority tokens(store->get(), Now);
  StatusOr<std::optional<std::string>> admin = tokens.EnsureAdmin(admin_token, Now());
  if (!admin.ok()) {
    std::fprintf(stderr, "topotuned: admin token: %s\n", admin.status().ToString().c_str());
    return 1;
  }
  if (admin->has_value()) {
    std::fprintf(stderr,
                 "topotuned: created the admin token (shown once; keep it, e.g. in a file for "
                 "TOPOTUNE_TOKEN / --token-file):\n%s\n",
                 (*admin)->c_str());
  }
  WorkerGateway gateway(gateway_options);
  ControllerService service(store->get(), &gateway, ParseJobSpec, Now, checkpoints->get());
  gateway.Attach(&service, &tokens);
  // Every unfinished job of an earlier run resumes before workers can connect.
  if (StatusOr<int> resumed = service.ResumeJobs(); !resumed.ok()) {
    std::fprintf(stderr, "topotuned: %s\n", resumed.status().ToString().c_str());
    return 1;
  } else if (*resumed > 0) {
    std::fprintf(stderr, "topotuned: resumed %d unfinished job(s)\n", *resumed);
  }
  RestRouter router(&service, &tokens, Now);
  HttpServer server([&router](const HttpRequest& request) { return router.Handle(request); }, http);
  Status s = gateway.Start();
  if (s.ok()) s = server.Bind();
  if (!s.ok()) {
    std::fprintf(stderr, "topotuned: %s\n", s.ToString().c_str());
    return 1;
  }
  if (!ports_file.empty()) {
    std::ofstream out(ports_file + ".tmp");
    out << "{\"http\": " << server.port() << ", \"workers\": " << gateway.port() << "}\n";
    out.close();
    std::rename((ports_file + ".tmp").c_str(), ports_file.c_str());
  }
  std::fprintf(stderr, "topotuned: REST API on http://%s:%d, workers on %s:%d, database %s\n",
               http.host.c_str(), server.port(), gateway_options.host.c_str(), gateway.port(),
               db.c_str());
  std::thread signal_waiter([&server, &stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server.Stop();
  });
  server.Run();
  pthread_kill(signal_waiter.native_handle(), SIGTERM);  // wakes it if Run ended otherwise
  signal_waiter.join();
  gateway.Stop();
  std::fprintf(stderr, "topotuned: stopped\n");
  return 0;
}
