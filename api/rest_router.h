#pragma once

#include <functional>
#include <memory>

#include "api/http_server.h"
#include "tuner/controller_service.h"
#include "tuner/status.h"

namespace topotune {

class TokenAuthority;

// The REST API of topotuned, independent of the HTTP server that carries it:
//   GET    /healthz                 liveness; no token needed
//   POST   /v1/jobs                 submit a job spec; 201 with its id          user, admin
//   GET    /v1/jobs                 every job                                   user, admin
//   GET    /v1/jobs/{id}            state, progress, trial counts, best so far  user, admin
//   GET    /v1/jobs/{id}/trials     configs, states and learning curves         user, admin
//   GET    /v1/jobs/{id}/report     the best-config report                      user, admin
//   POST   /v1/jobs/{id}/cancel     stop a queued or running job                user, admin
//   GET    /v1/workers              workers and their device profiles           user, admin
//   POST   /v1/tokens               issue a token {"role", "name"}; 201         admin
//   GET    /v1/tokens               every token (never a secret or a hash)      admin
//   DELETE /v1/tokens/{id}          revoke a token                              admin
// Middleware, in order: the target must be printable ASCII (400); the path must exist (404)
// and allow the method (405, with Allow); a bearer token must be valid (401) and its role
// allowed (403; worker tokens only speak to the gateway); a body must be application/json
// (415) and valid JSON within the limits of api/json_input.h (400). Errors are
// {"error": {"code": "INVALID_ARGUMENT", "message": "..."}}. Thread-safe.
class RestRouter {
 public:
  // Both must outlive the router; `clock` returns seconds since the Unix epoch.
  RestRouter(ControllerService* service, TokenAuthority* tokens, std::function<double()> clock);
  ~RestRouter();
  RestRouter(const RestRouter&) = delete;
  RestRouter& operator=(const RestRouter&) = delete;

  // Answers one request. Never throws.
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The HTTP status of a Status code (400, 401, 403, 404, 409, 413, 503, 500).
int HttpStatusOf(Status::Code code);

// The error envelope of `status`, with its HTTP status.
HttpResponse ErrorResponse(const Status& status);

}  // namespace topotune
