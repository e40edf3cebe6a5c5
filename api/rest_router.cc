#include "api/rest_router.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "api/job_spec_json.h"
#include "api/json_input.h"
#include "api/plan_json.h"
#include "api/protocol.h"
#include "api/report_json.h"
#include "api/tokens.h"
#include "api/topology_json.h"
#include "tuner/report.h"

namespace topotune {

using nlohmann::json;

int HttpStatusOf(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kUnauthenticated:
      return 401;
    case Status::Code::kPermissionDenied:
      return 403;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kFailedPrecondition:
      return 409;
    case Status::Code::kPayloadTooLarge:
      return 413;
    case Status::Code::kUnavailable:
      return 503;
    case Status::Code::kIOError:
    case Status::Code::kInternal:
      return 500;
  }
  return 500;
}

namespace {

HttpResponse Envelope(int http_status, const char* code, const std::string& message) {
  HttpResponse r;
  r.status = http_status;
  r.body = DumpJson({{"error", {{"code", code}, {"message", SafeText(message, 1000)}}}});
  return r;
}

HttpResponse JsonResponse(int http_status, const json& body) {
  HttpResponse r;
  r.status = http_status;
  r.body = DumpJson(body);
  return r;
}

// Who may call a route.
enum class Access { kPublic, kUser, kAdmin };

// The {id} of a path, as a positive integer.
StatusOr<int64_t> ParseId(const std::string& text, const char* what) {
  int64_t id = 0;
  bool ok = !text.empty() && text.size() <= 18;
  for (char c : text) ok = ok && c >= '0' && c <= '9';
  if (ok) {
    for (char c : text) id = id * 10 + (c - '0');
  }
  if (!ok || id == 0) {
    return Status::InvalidArgument(std::string(what) + " id must be a positive integer, got '" +
                                   SafeText(text, 40) + "'");
  }
  return id;
}

// The path of a request target (the query dropped), split at '/': "/v1/jobs/3" -> {"v1",
// "jobs", "3"}. InvalidArgument for a target that is not origin-form printable ASCII.
StatusOr<std::vector<std::string>> SplitTarget(const std::string& target) {
  if (target.empty() || target.size() > 2048 || target[0] != '/') {
    return Status::InvalidArgument("the request target must be a path of 1 to 2048 bytes");
  }
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Status::InvalidArgument("the request target must be printable ASCII, got '" +
                                     SafeText(target, 60) + "'");
    }
  }
  const std::string path = target.substr(0, target.find('?'));
  std::vector<std::string> segments;
  size_t start = 1;
  while (true) {
    const size_t slash = path.find('/', start);
    segments.push_back(
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return segments;
}

bool IsJsonContentType(const std::string* value) {
  if (value == nullptr) return false;
  std::string type = value->substr(0, value->find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return type == "application/json";
}

// The token of an "Authorization: Bearer TOKEN" header, or empty.
std::string BearerToken(const HttpRequest& request) {
  const std::string* value = request.Header("authorization");
  if (value == nullptr || value->size() < 7) return "";
  std::string scheme = value->substr(0, 7);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer ") return "";
  std::string token = value->substr(7);
  while (!token.empty() && token.front() == ' ') token.erase(token.begin());
  while (!token.empty() && token.back() == ' ') token.pop_back();
  return token;
}

}  // namespace

struct RestRouter::Impl {
  // What a handler gets: the request, its {id} segment (if the route has one), its parsed
  // body (for routes that take one), and who called.
  struct Call {
    const HttpRequest& request;
    std::string id;
    json body;
    Principal caller;
  };
  struct Route {
    std::string method;
    std::vector<std::string> pattern;  // "{id}" matches one segment
    Access access;
    bool json_body;
    int ok_status;
    StatusOr<json> (Impl::*handler)(const Call&);
  };

  ControllerService* service;
  TokenAuthority* tokens;
  std::function<double()> clock;
  std::vector<Route> routes;

  Impl(ControllerService* s, TokenAuthority* t, std::function<double()> c)
      : service(s), tokens(t), clock(std::move(c)) {
    const std::vector<std::string> jobs = {"v1", "jobs"};
    const std::vector<std::string> job = {"v1", "jobs", "{id}"};
    routes = {
        {"GET", {"healthz"}, Access::kPublic, false, 200, &Impl::Health},
        {"POST", jobs, Access::kUser, true, 201, &Impl::Submit},
        {"GET", jobs, Access::kUser, false, 200, &Impl::ListJobs},
        {"GET", job, Access::kUser, false, 200, &Impl::GetJob},
        {"GET", {"v1", "jobs", "{id}", "trials"}, Access::kUser, false, 200, &Impl::Trials},
        {"GET", {"v1", "jobs", "{id}", "report"}, Access::kUser, false, 200, &Impl::ReportOf},
        {"POST", {"v1", "jobs", "{id}", "cancel"}, Access::kUser, false, 200, &Impl::Cancel},
        {"POST", {"v1", "jobs", "{id}", "predict"}, Access::kUser, true, 200, &Impl::Predict},
        {"GET", {"v1", "workers"}, Access::kUser, false, 200, &Impl::Workers},
        {"GET", {"v1", "devices"}, Access::kUser, false, 200, &Impl::Devices},
        {"GET", {"v1", "topology"}, Access::kUser, false, 200, &Impl::TopologyMeasured},
        {"GET",
         {"v1", "jobs", "{id}", "topology"},
         Access::kUser,
         false,
         200,
         &Impl::TopologyOfJob},
        {"POST", {"v1", "tokens"}, Access::kAdmin, true, 201, &Impl::CreateToken},
        {"GET", {"v1", "tokens"}, Access::kAdmin, false, 200, &Impl::ListTokens},
        {"DELETE", {"v1", "tokens", "{id}"}, Access::kAdmin, false, 200, &Impl::RevokeToken},
    };
  }

  HttpResponse Handle(const HttpRequest& request) {
    StatusOr<std::vector<std::string>> segments = SplitTarget(request.target);
    if (!segments.ok()) return ErrorResponse(segments.status());
    const Route* route = nullptr;
    std::string id;
    std::set<std::string> allowed;
    for (const Route& r : routes) {
      if (r.pattern.size() != segments->size()) continue;
      std::string matched_id;
      bool match = true;
      for (size_t i = 0; i < r.pattern.size() && match; ++i) {
        if (r.pattern[i] == "{id}") {
          matched_id = (*segments)[i];
        } else {
          match = r.pattern[i] == (*segments)[i];
        }
      }
      if (!match) continue;
      allowed.insert(r.method);
      if (r.method == request.method) {
        route = &r;
        id = matched_id;
      }
    }
    if (route == nullptr && allowed.empty()) {
      return Envelope(404, "NOT_FOUND", "no such path: " + request.target);
    }
    if (route == nullptr) {
      std::string allow;
      for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
      HttpResponse r =
          Envelope(405, "METHOD_NOT_ALLOWED",
                   "method " + request.method + " is not allowed here; allowed: " + allow);
      r.headers.emplace_back("Allow", allow);
      return r;
    }
    Principal caller;
    if (route->access != Access::kPublic) {
      StatusOr<Principal> who = Authenticate(request);
      if (!who.ok()) {
        HttpResponse r = ErrorResponse(who.status());
        if (r.status == 401)
          r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"topotune\"");
        return r;
      }
      const bool allowed_role =
          who->role == Role::kAdmin || (route->access == Access::kUser && who->role == Role::kUser);
      if (!allowed_role) {
        return ErrorResponse(Status::PermissionDenied(
            std::string("a ") + RoleName(who->role) + " token cannot " + request.method + " " +
            SafeText(request.target, 80) +
            (who->role == Role::kWorker ? "; worker tokens only register workers on the gateway"
                                        : "; it needs an admin token")));
      }
      caller = *who;
    }
    Call call{request, id, json(), caller};
    if (route->json_body) {
      if (!IsJsonContentType(request.Header("content-type"))) {
        return Envelope(415, "UNSUPPORTED_MEDIA_TYPE",
                        "the body must be JSON, sent with Content-Type: application/json");
      }
      StatusOr<json> body = ParseUntrustedJson(request.body);
      if (!body.ok()) return ErrorResponse(body.status());
      call.body = std::move(*body);
    }
    StatusOr<json> result = (this->*route->handler)(call);
    if (!result.ok()) return ErrorResponse(result.status());
    return JsonResponse(route->ok_status, *result);
  }

  StatusOr<Principal> Authenticate(const HttpRequest& request) {
    const std::string token = BearerToken(request);
    if (token.empty()) {
      return Status::Unauthenticated("this endpoint needs a token: Authorization: Bearer TOKEN");
    }
    StatusOr<Principal> who = tokens->Authenticate(token);
    if (!who.ok() && who.status().code() != Status::Code::kUnauthenticated) {
      return Status::Unavailable("cannot check the token now: " + who.status().message());
    }
    return who;
  }

  StatusOr<json> Health(const Call&) { return json{{"ok", true}}; }

  StatusOr<json> Submit(const Call& call) {
    StatusOr<JobSpec> spec = SubmittedJobSpec(call.body);
    if (!spec.ok()) return spec.status();
    StatusOr<JobRecord> job = service->Submit(*spec, DumpJson(JobSpecToJson(*spec)));
    if (!job.ok()) return job.status();
    json out = ToJson(*job);
    out["spec"] = JobSpecToJson(*spec);
    return out;
  }

  StatusOr<json> ListJobs(const Call&) {
    StatusOr<std::vector<JobRecord>> jobs = service->ListJobs();
    if (!jobs.ok()) return jobs.status();
    json out = json::array();
    for (const auto& j : *jobs) out.push_back(ToJson(j));
    return json{{"jobs", out}};
  }

  StatusOr<json> GetJob(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<JobDetail> d = service->GetJob(*id, /*with_points=*/false);
    if (!d.ok()) return d.status();
    json out = ToJson(d->job);
    out["spec"] = JobSpecToJson(d->spec);
    out["progress"] = ToJson(SummariseProgress(d->job, d->spec, d->trials));
    return out;
  }

  StatusOr<json> Trials(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<JobDetail> d = service->GetJob(*id, /*with_points=*/true);
    if (!d.ok()) return d.status();
    json out = json::array();
    for (const auto& t : d->trials) out.push_back(TrialWithCurve(t, d->points));
    return json{{"job_id", d->job.id}, {"trials", out}};
  }

  StatusOr<json> ReportOf(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<Report> report = service->ReportOf(*id);
    if (!report.ok()) return report.status();
    json out = ToJson(*report);
    // A job that names a topology: the ranking of its configurations on each target.
    StatusOr<JobDetail> job = service->GetJob(*id, /*with_points=*/false);
    if (job.ok() && !job->spec.topology_json.empty()) {
      StatusOr<json> text = ParseUntrustedJson(job->spec.topology_json);
      StatusOr<Topology> topology =
          text.ok() ? TopologyFromJson(*text) : StatusOr<Topology>(text.status());
      StatusOr<std::vector<TargetPlan>> plans =
          topology.ok() ? service->Predict(*id, *topology)
                        : StatusOr<std::vector<TargetPlan>>(topology.status());
      out["targets"] = plans.ok() ? PlansToJson(*plans, job->spec.target_accuracy)
                                  : json{{"note", plans.status().message()}};
    }
    return out;
  }

  // What-if: the body is a topology (api/topology_json.h).
  StatusOr<json> Predict(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<Topology> topology = TopologyFromJson(call.body);
    if (!topology.ok()) return topology.status();
    StatusOr<JobDetail> job = service->GetJob(*id, /*with_points=*/false);
    if (!job.ok()) return job.status();
    StatusOr<std::vector<TargetPlan>> plans = service->Predict(*id, *topology);
    if (!plans.ok()) return plans.status();
    json out = PlansToJson(*plans, job->spec.target_accuracy);
    out["job_id"] = *id;
    return out;
  }

  StatusOr<json> Cancel(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<JobRecord> after = service->Cancel(*id);
    if (!after.ok()) return after.status();
    return ToJson(*after);
  }

  StatusOr<json> Workers(const Call&) {
    StatusOr<std::vector<WorkerDetail>> workers = service->Workers();
    if (!workers.ok()) return workers.status();
    json out = json::array();
    for (const WorkerDetail& w : *workers) {
      json worker = ToJson(w.record);
      worker["profiles"] = json::array();
      for (const DeviceProbe& p : w.probes) worker["profiles"].push_back(ToJson(p));
      out.push_back(std::move(worker));
    }
    return json{{"workers", out}};
  }

  StatusOr<json> Devices(const Call&) {
    StatusOr<std::vector<DeviceClassProfile>> classes = service->Devices();
    if (!classes.ok()) return classes.status();
    json out = json::array();
    for (const DeviceClassProfile& c : *classes) {
      json probes = json::array();
      for (const ClassProbe& p : c.probes) {
        json batches = json::array();
        for (const ClassProbe::Batch& b : p.batches) {
          batches.push_back({{"batch_size", b.batch_size},
                             {"fits", b.fits},
                             {"step_ms", b.step_ms},
                             {"forward_ms", b.forward_ms},
                             {"backward_ms", b.backward_ms},
                             {"optimizer_ms", b.optimizer_ms},
                             {"adam_optimizer_ms", b.adam_optimizer_ms},
                             {"adam_does_not_fit", b.adam_does_not_fit},
                             {"peak_memory_bytes", b.peak_memory_bytes},
                             {"workers", b.workers},
                             {"timed_s", b.timed_s}});
        }
        probes.push_back(
            {{"model", p.model},
             {"input", p.input},
             {"max_batch_size", p.max_batch_size},
             {"adam_max_batch_size", p.adam_max_batch_size},
             {"step_ms_fit", {{"alpha_ms", p.alpha_ms}, {"beta_ms_per_sample", p.beta_ms}}},
             {"batches", batches}});
      }
      out.push_back({{"class", c.name},
                     {"sites", c.sites},
                     {"workers", c.workers},
                     {"device", ToJson(c.device)},
                     {"probes", probes}});
    }
    return json{{"classes", out}};
  }

  // GET /v1/topology: the connected workers' sites and measured links.
  StatusOr<json> TopologyMeasured(const Call&) {
    StatusOr<TopologyView> view = service->TopologyOf(nullptr);
    if (!view.ok()) return view.status();
    return TopologyViewToJson(*view);
  }

  // GET /v1/jobs/{id}/topology: the same beside the job's declared topology.
  StatusOr<json> TopologyOfJob(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "job");
    if (!id.ok()) return id.status();
    StatusOr<JobDetail> job = service->GetJob(*id, /*with_points=*/false);
    if (!job.ok()) return job.status();
    if (job->spec.topology_json.empty()) {
      return Status::FailedPrecondition("job " + std::to_string(*id) +
                                        " names no topology; GET /v1/topology shows what is "
                                        "measured");
    }
    StatusOr<Topology> declared = ParseTopology(job->spec.topology_json);
    if (!declared.ok()) return declared.status();
    StatusOr<TopologyView> view = service->TopologyOf(&*declared);
    if (!view.ok()) return view.status();
    json out = TopologyViewToJson(*view);
    out["job_id"] = *id;
    out["topology"] = declared->name;
    return out;
  }

  StatusOr<json> CreateToken(const Call& call) {
    const json& b = call.body;
    if (!b.is_object())
      return Status::InvalidArgument("the body must be an object {\"role\": ...}");
    std::string role_name;
    std::string name;
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (it.key() != "role" && it.key() != "name") {
        return Status::InvalidArgument("unknown field " + SafeText(it.key(), 60) +
                                       "; a token takes \"role\" and \"name\"");
      }
      if (!it->is_string()) {
        return Status::InvalidArgument(it.key() + " must be a string, got " + it->type_name());
      }
    }
    if (!b.contains("role")) {
      return Status::InvalidArgument("role is required: \"user\", \"worker\" or \"admin\"");
    }
    role_name = b["role"].get<std::string>();
    if (b.contains("name")) name = b["name"].get<std::string>();
    std::optional<Role> role = ParseRole(role_name);
    if (!role) {
      return Status::InvalidArgument("role must be \"user\", \"worker\" or \"admin\", got \"" +
                                     SafeText(role_name, 20) + "\"");
    }
    StatusOr<IssuedToken> issued = tokens->Create(*role, name, clock());
    if (!issued.ok()) return issued.status();
    json out = ToJson(issued->record);
    out["token"] = issued->text;
    return out;
  }

  StatusOr<json> ListTokens(const Call&) {
    StatusOr<std::vector<TokenRecord>> all = tokens->List();
    if (!all.ok()) return all.status();
    json out = json::array();
    for (const TokenRecord& t : *all) out.push_back(ToJson(t));
    return json{{"tokens", out}};
  }

  StatusOr<json> RevokeToken(const Call& call) {
    StatusOr<int64_t> id = ParseId(call.id, "token");
    if (!id.ok()) return id.status();
    TOPOTUNE_RETURN_IF_ERROR(tokens->Revoke(*id, clock()));
    StatusOr<std::vector<TokenRecord>> all = tokens->List();
    if (!all.ok()) return all.status();
    for (const TokenRecord& t : *all) {
      if (t.id == *id) return ToJson(t);
    }
    return Status::NotFound("token " + std::to_string(*id));
  }
};

RestRouter::RestRouter(ControllerService* service, TokenAuthority* tokens,
                       std::function<double()> clock)
    : impl_(std::make_unique<Impl>(service, tokens, std::move(clock))) {}

RestRouter::~RestRouter() = default;

HttpResponse RestRouter::Handle(const HttpRequest& request) const {
  try {
    return impl_->Handle(request);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "topotuned: %s %s threw: %s\n", SafeText(request.method, 20).c_str(),
                 SafeText(request.target, 80).c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "topotuned: a handler threw a non-exception\n");
  }
  return Envelope(500, "INTERNAL", "internal error");
}

HttpResponse ErrorResponse(const Status& status) {
  return Envelope(HttpStatusOf(status.code()), Status::CodeName(status.code()), status.message());
}

}  // namespace topotune
