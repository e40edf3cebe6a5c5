#include "api/rest_server.h"

#include <httplib.h>

#include <cstdio>

#include "api/job_spec_json.h"
#include "api/protocol.h"
#include "api/report_json.h"
#include "tuner/report.h"

namespace topotune {

using nlohmann::json;

int HttpStatusOf(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kFailedPrecondition:
      return 409;
    case Status::Code::kPayloadTooLarge:
      return 413;
    case Status::Code::kUnauthenticated:
      return 401;
    case Status::Code::kPermissionDenied:
      return 403;
    case Status::Code::kUnavailable:
      return 503;
    case Status::Code::kIOError:
    case Status::Code::kInternal:
      return 500;
  }
  return 500;
}

namespace {

json ErrorBody(const Status& s) {
  return {{"error",
           {{
                "code",
                Status::CodeName(s.code()),
            },
            {"message", s.message()}}}};
}

void Reply(httplib::Response& res, const StatusOr<json>& result, int ok_status = 200) {
  if (result.ok()) {
    res.status = ok_status;
    res.set_content(result->dump(), "application/json");
  } else {
    res.status = HttpStatusOf(result.status().code());
    res.set_content(ErrorBody(result.status()).dump(), "application/json");
  }
}

StatusOr<int64_t> ParseId(const std::string& text) {
  int64_t id = 0;
  if (text.empty() || text.size() > 18) {
    return Status::InvalidArgument("job id must be a positive integer, got '" + text + "'");
  }
  for (char c : text) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument("job id must be a positive integer, got '" + text + "'");
    }
    id = id * 10 + (c - '0');
  }
  if (id == 0) return Status::InvalidArgument("job id must be a positive integer, got '0'");
  return id;
}

}  // namespace

struct RestServer::Impl {
  ControllerService* service;
  Options options;
  httplib::Server server;
  int port = 0;

  StatusOr<json> Submit(const httplib::Request& req) {
    if (req.body.size() > options.max_body_bytes) {
      return Status::PayloadTooLarge("request body exceeds " +
                                     std::to_string(options.max_body_bytes) + " bytes");
    }
    StatusOr<JobSpec> spec = ParseJobSpec(req.body);
    if (!spec.ok()) return spec.status();
    StatusOr<JobRecord> job = service->Submit(*spec, JobSpecToJson(*spec).dump());
    if (!job.ok()) return job.status();
    json out = ToJson(*job);
    out["spec"] = JobSpecToJson(*spec);
    return out;
  }

  StatusOr<json> List() {
    StatusOr<std::vector<JobRecord>> jobs = service->ListJobs();
    if (!jobs.ok()) return jobs.status();
    json out = json::array();
    for (const auto& j : *jobs) out.push_back(ToJson(j));
    return json{{"jobs", out}};
  }

  StatusOr<json> Get(const std::string& id_text) {
    StatusOr<int64_t> id = ParseId(id_text);
    if (!id.ok()) return id.status();
    StatusOr<JobDetail> d = service->GetJob(*id, false);
    if (!d.ok()) return d.status();
    json out = ToJson(d->job);
    out["spec"] = JobSpecToJson(d->spec);
    out["progress"] = ToJson(SummariseProgress(d->job, d->spec, d->trials));
    return out;
  }

  StatusOr<json> Trials(const std::string& id_text) {
    StatusOr<int64_t> id = ParseId(id_text);
    if (!id.ok()) return id.status();
    StatusOr<JobDetail> d = service->GetJob(*id, true);
    if (!d.ok()) return d.status();
    json out = json::array();
    for (const auto& t : d->trials) out.push_back(TrialWithCurve(t, d->points));
    return json{{"job_id", d->job.id}, {"trials", out}};
  }

  StatusOr<json> ReportOf(const std::string& id_text) {
    StatusOr<int64_t> id = ParseId(id_text);
    if (!id.ok()) return id.status();
    StatusOr<Report> report = service->ReportOf(*id);
    if (!report.ok()) return report.status();
    return ToJson(*report);
  }

  StatusOr<json> Cancel(const std::string& id_text) {
    StatusOr<int64_t> id = ParseId(id_text);
    if (!id.ok()) return id.status();
    StatusOr<JobRecord> after = service->Cancel(*id);
    if (!after.ok()) return after.status();
    return ToJson(*after);
  }

  StatusOr<json> Workers() {
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

  void Routes() {
    server.set_payload_max_length(options.max_body_bytes);
    server.Post("/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
      Reply(res, Submit(req), 201);
    });
    server.Get("/v1/jobs",
               [this](const httplib::Request&, httplib::Response& res) { Reply(res, List()); });
    server.Get(R"(/v1/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      Reply(res, Get(req.matches[1]));
    });
    server.Get(R"(/v1/jobs/([^/]+)/trials)",
               [this](const httplib::Request& req, httplib::Response& res) {
                 Reply(res, Trials(req.matches[1]));
               });
    server.Get(R"(/v1/jobs/([^/]+)/report)",
               [this](const httplib::Request& req, httplib::Response& res) {
                 Reply(res, ReportOf(req.matches[1]));
               });
    server.Post(R"(/v1/jobs/([^/]+)/cancel)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Reply(res, Cancel(req.matches[1]));
                });
    server.Get("/v1/workers",
               [this](const httplib::Request&, httplib::Response& res) { Reply(res, Workers()); });
    server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"ok": true})", "application/json");
    });
    // Errors httplib raises itself (no route, body too large) get the same envelope.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      Status s = res.status == 404 ? Status::NotFound("no route for " + req.method + " " + req.path)
                 : res.status == 413
                     ? Status::PayloadTooLarge("request body is too large")
                     : Status(Status::Code::kInvalidArgument, "HTTP " + std::to_string(res.status));
      res.set_content(ErrorBody(s).dump(), "application/json");
    });
    server.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown exception";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          std::fprintf(stderr, "topotuned: handler threw: %s\n", what.c_str());
          res.status = 500;
          res.set_content(ErrorBody(Status::Internal(what)).dump(), "application/json");
        });
  }
};

RestServer::RestServer(ControllerService* service, Options options)
    : impl_(std::make_unique<Impl>()) {
  impl_->service = service;
  impl_->options = std::move(options);
  impl_->Routes();
}

RestServer::~RestServer() = default;

Status RestServer::Bind() {
  if (impl_->options.port == 0) {
    impl_->port = impl_->server.bind_to_any_port(impl_->options.host);
    if (impl_->port <= 0)
      return Status::IOError("cannot bind the REST API on " + impl_->options.host);
  } else {
    if (!impl_->server.bind_to_port(impl_->options.host.c_str(), impl_->options.port)) {
      return Status::IOError("cannot bind the REST API on " + impl_->options.host + ":" +
                             std::to_string(impl_->options.port) + " (in use?)");
    }
    impl_->port = impl_->options.port;
  }
  return Status::OK();
}

int RestServer::port() const { return impl_->port; }

void RestServer::Run() { impl_->server.listen_after_bind(); }

void RestServer::Stop() { impl_->server.stop(); }

}  // namespace topotune
