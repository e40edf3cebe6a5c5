#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "tuner/controller_service.h"
#include "tuner/status.h"

namespace topotune {

// The REST API of topotuned (cpp-httplib stays inside rest_server.cc):
//   POST /v1/jobs                 submit a job spec; 201 with its id
//   GET  /v1/jobs                 every job
//   GET  /v1/jobs/{id}            state, progress, trial counts, best so far
//   GET  /v1/jobs/{id}/trials     configs, states and learning curves
//   GET  /v1/jobs/{id}/report     the best-config report
//   POST /v1/jobs/{id}/cancel     stop a running job
//   GET  /v1/workers              connected and past workers
// Errors are {"error": {"code": "INVALID_ARGUMENT", "message": "..."}} with the matching
// HTTP status; handlers never throw. Thread-safe: httplib serves from a thread pool.
class RestServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 7700;                      ///< 0 picks a free port
    size_t max_body_bytes = 1024 * 1024;  ///< larger requests get 413
  };
  // `service` must outlive the server.
  RestServer(ControllerService* service, Options options);
  ~RestServer();
  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;

  Status Bind();
  int port() const;
  // Serves until Stop(); returns when stopped.
  void Run();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The HTTP status of a Status code (400, 404, 409, 413, 503, 500).
int HttpStatusOf(Status::Code code);

}  // namespace topotune
