#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tuner/status.h"

namespace topotune {

// One HTTP request as the server read it. Header names are lower-case.
struct HttpRequest {
  std::string method;  ///< as sent, e.g. "GET"
  std::string target;  ///< path and query, as sent (not percent-decoded)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The value of header `name` (lower-case), or nullptr.
  const std::string* Header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< e.g. Allow, WWW-Authenticate
};

// An HTTP/1.1 server on Boost.Beast (Boost.Asio): every connection is read asynchronously
// under deadlines, so slow or stalled clients hold a socket, never a thread. A request's
// header must arrive within header_timeout_s and its body within body_timeout_s; headers
// over max_header_bytes get 431, bodies over max_body_bytes 413 (before they are read),
// syntax errors 400, and the connection is closed. Handlers run on the server's threads and
// must not throw (a handler that does gets a last-resort 500). Thread-safe.
class HttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 7700;                     ///< 0 picks a free port
    size_t max_body_bytes = 1 << 20;     ///< larger bodies get 413
    size_t max_header_bytes = 16 << 10;  ///< larger request heads get 431
    double header_timeout_s = 10.0;      ///< a request head (or a kept-alive connection's next
                                         ///< one) must arrive within this
    double body_timeout_s = 30.0;        ///< its body, and the response's write, within this
    int max_connections = 1024;          ///< more are closed at once
    int threads = 4;                     ///< threads that read, handle and write
  };
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer(Handler handler, Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  Status Bind();
  int port() const;
  // Serves until Stop(); returns when stopped.
  void Run();
  // Thread- and signal-safe.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace topotune
