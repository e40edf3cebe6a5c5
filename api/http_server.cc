#include "api/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <limits>
#include <optional>
#include <thread>

namespace topotune {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

const std::string* HttpRequest::Header(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

namespace {

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string Lower(beast::string_view s) {
  std::string out(s.data(), s.size());
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The error envelope of a request the server refuses before any handler sees it.
std::string ErrorBody(const char* code, const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) escaped += c;
  }
  return std::string("{\"error\":{\"code\":\"") + code + "\",\"message\":\"" + escaped + "\"}}";
}

}  // namespace

struct HttpServer::Impl {
  class Connection;

  Handler handler;
  Options options;
  // Declared before io: connections still queued in io when it is destroyed count down here.
  std::atomic<int> connections{0};
  asio::io_context io;
  tcp::acceptor acceptor{io};
  int port = 0;

  void Accept();
};

// One client connection; every operation runs on its strand.
class HttpServer::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl* server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
    ++server_->connections;
  }
  ~Connection() { --server_->connections; }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

 private:
  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
    // No limit while the head is read: Beast would refuse a large Content-Length as a bad
    // head. OnHeader answers it with 413, and ReadBody sets the limit before the body.
    // (Not boost::none: Boost 1.74 compares the length with the optional, and any value
    // compares greater than none.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(Millis(server_->options.header_timeout_s));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
      return Shutdown();
    }
    if (ec == http::error::header_limit) {
      return Refuse(431, "INVALID_ARGUMENT",
                    "the request head exceeds " +
                        std::to_string(server_->options.max_header_bytes) + " bytes");
    }
    if (ec) return Refuse(400, "INVALID_ARGUMENT", "malformed HTTP request: " + ec.message());
    const auto& head = parser_->get();
    if (auto length = parser_->content_length();
        length && *length > server_->options.max_body_bytes) {
      const std::string message = "request body of " + std::to_string(*length) + " bytes exceeds " +
                                  std::to_string(server_->options.max_body_bytes) + " bytes";
      // A client that sends its whole body before it reads the answer would see the
      // connection reset instead of the 413: discard a body of up to 16 limits (through a
      // fixed scratch buffer, so memory does not grow), then answer.
      const bool expects_continue = head.find(http::field::expect) != head.end();
      if (!expects_continue && *length <= 16 * uint64_t{server_->options.max_body_bytes}) {
        const uint64_t buffered = std::min<uint64_t>(*length, buffer_.size());
        buffer_.consume(buffered);
        stream_.expires_after(Millis(server_->options.body_timeout_s));
        return Drain(*length - buffered, message);
      }
      return Refuse(413, "PAYLOAD_TOO_LARGE", message);
    }
    if (parser_->is_done()) return Handle();
    auto expect = head.find(http::field::expect);
    if (expect != head.end() && beast::iequals(expect->value(), "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      stream_.expires_after(Millis(server_->options.body_timeout_s));
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code wec, size_t) {
                          if (wec) return self->Shutdown();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void Drain(uint64_t left, std::string message) {
    if (left == 0) return Refuse(413, "PAYLOAD_TOO_LARGE", message);
    stream_.async_read_some(
        asio::buffer(scratch_.data(), std::min<uint64_t>(left, scratch_.size())),
        [self = shared_from_this(), left, message](beast::error_code ec, size_t n) {
          if (ec) return self->Shutdown();
          self->Drain(left - n, message);
        });
  }

  void ReadBody() {
    parser_->body_limit(server_->options.max_body_bytes);
    stream_.expires_after(Millis(server_->options.body_timeout_s));
    http::async_read(
        stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec == http::error::body_limit) {
            return self->Refuse(413, "PAYLOAD_TOO_LARGE",
                                "request body exceeds " +
                                    std::to_string(self->server_->options.max_body_bytes) +
                                    " bytes");
          }
          if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
              ec == asio::error::connection_reset) {
            return self->Shutdown();
          }
          if (ec) {
            return self->Refuse(400, "INVALID_ARGUMENT",
                                "malformed HTTP request body: " + ec.message());
          }
          self->Handle();
        });
  }

  void Handle() {
    const http::request<http::string_body>& req = parser_->get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    for (const auto& field : req) {
      request.headers.emplace_back(Lower(field.name_string()), std::string(field.value()));
    }
    request.body = req.body();
    HttpResponse response;
    try {
      response = server_->handler(request);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "topotuned: handler threw: %s\n", e.what());
      response = {500, "application/json", ErrorBody("INTERNAL", "internal error"), {}};
    } catch (...) {
      std::fprintf(stderr, "topotuned: handler threw a non-exception\n");
      response = {500, "application/json", ErrorBody("INTERNAL", "internal error"), {}};
    }
    Write(std::move(response), req.keep_alive());
  }

  // Answers a request that cannot be read to its end, and closes the connection.
  void Refuse(int status, const char* code, const std::string& message) {
    Write({status, "application/json", ErrorBody(code, message), {}}, /*keep_alive=*/false);
  }

  void Write(HttpResponse response, bool keep_alive) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(response.status));
    res->set(http::field::server, "topotuned");
    res->set(http::field::content_type, response.content_type);
    res->set("X-Content-Type-Options", "nosniff");
    for (const auto& [name, value] : response.headers) res->set(name, value);
    res->body() = std::move(response.body);
    res->keep_alive(keep_alive);
    res->prepare_payload();
    stream_.expires_after(Millis(server_->options.body_timeout_s));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Shutdown();
                        self->ReadHeader();
                      });
  }

  void Shutdown() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  Impl* server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{8192};
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 16 * 1024> scratch_{};  // where Drain discards an oversized body
};

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      if (connections.load() >= options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);  // over the limit: a flood must not exhaust descriptors
      } else {
        std::make_shared<Connection>(this, std::move(socket))->Start();
      }
    }
    Accept();
  });
}

HttpServer::HttpServer(Handler handler, Options options) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->options = std::move(options);
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Bind() {
  beast::error_code ec;
  const auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) return Status::InvalidArgument("bad HTTP listen address '" + impl_->options.host + "'");
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(impl_->options.port));
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IOError("cannot bind the REST API on " + impl_->options.host + ":" +
                           std::to_string(impl_->options.port) + ": " + ec.message());
  }
  impl_->port = impl_->acceptor.local_endpoint().port();
  return Status::OK();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::Run() {
  impl_->Accept();
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, impl_->options.threads); ++i) {
    threads.emplace_back([this] { impl_->io.run(); });
  }
  impl_->io.run();
  for (std::thread& t : threads) t.join();
}

void HttpServer::Stop() { impl_->io.stop(); }

}  // namespace topotune
