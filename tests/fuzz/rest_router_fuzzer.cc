// Fuzzes the REST API behind the HTTP server: a RestRouter over a real SQLite store, token
// authority and controller service (its workers a channel that sends nothing). A request may
// be refused with any 4xx, but a 5xx is a bug here (the store works, so nothing is
// unavailable), and every body must be JSON.
//
// Input: byte 0 picks the method, byte 1 the path (one of the API's, or a line of input),
// byte 2 the {id} in it, byte 3 the token (none, admin, user, worker or garbage), byte 4
// the Content-Type; lines of input follow for whatever was picked as "raw", then the body.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api/http_server.h"
#include "api/job_spec_json.h"
#include "api/json_input.h"
#include "api/rest_router.h"
#include "api/tokens.h"
#include "storage/store.h"
#include "tests/fuzz/fuzz_target.h"
#include "tuner/controller_service.h"
#include "tuner/dispatcher.h"

namespace topotune {
namespace {

// The operator's own admin secret, as topotuned --admin-token-file gives it.
constexpr char kAdminSecret[] = "fuzz-admin-0123456789-abcdefghijklmnopqrstuvwxyz";
// Jobs and tokens created before the world starts over, so the store stays small.
constexpr int kMaxCreations = 300;

class NoWorkers : public WorkerChannel {
 public:
  void SendSegment(const std::string&, const SegmentSpec&, const std::string&) override {}
  void SendStop(const std::string&, int64_t, const std::string&) override {}
  void SendProbe(const std::string&, const std::string&, const std::string&, const DatasetSpec&,
                 const std::vector<int>&) override {}
};

// A clock that moves one second per reading, so runs are repeatable.
double FakeNow() {
  static double now = 1.7e9;
  return now += 1.0;
}

#define TOPOTUNE_FUZZ_OK(expr)                                                               \
  [&] {                                                                                      \
    auto r = (expr);                                                                         \
    TOPOTUNE_FUZZ_CHECK(r.ok(), "setting up the router: %s", r.status().ToString().c_str()); \
    return std::move(*r);                                                                    \
  }()

// The router and everything under it, on a fresh database in a temporary directory.
class World {
 public:
  World() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/topotune-fuzz-XXXXXX";
    TOPOTUNE_FUZZ_CHECK(mkdtemp(pattern.data()) != nullptr, "cannot make %s", pattern.c_str());
    dir_ = pattern;
    Build();
  }
  ~World() {
    TearDown();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  const RestRouter& router() const { return *router_; }
  const std::string& admin() const { return admin_; }
  const std::string& user() const { return user_; }
  const std::string& worker() const { return worker_; }

  // Starts over on an empty database after kMaxCreations jobs or tokens, or once one of the
  // harness's own tokens has been revoked.
  void AfterResponse(const HttpRequest& request, const HttpResponse& response) {
    if (response.status == 201) ++creations_;
    bool start_over = creations_ >= kMaxCreations;
    if (request.method == "DELETE" && response.status == 200) {
      for (const std::string* token : {&admin_, &user_, &worker_}) {
        start_over = start_over || !tokens_->Authenticate(*token).ok();
      }
    }
    if (start_over) {
      TearDown();
      Build();
    }
  }

 private:
  void Build() {
    store_ = TOPOTUNE_FUZZ_OK(Store::Open(dir_ + "/fuzz.db"));
    tokens_ = std::make_unique<TokenAuthority>(store_.get(), FakeNow);
    TOPOTUNE_FUZZ_OK(tokens_->EnsureAdmin(kAdminSecret, FakeNow()));
    admin_ = kAdminSecret;
    user_ = TOPOTUNE_FUZZ_OK(tokens_->Create(Role::kUser, "fuzz-user", FakeNow())).text;
    worker_ = TOPOTUNE_FUZZ_OK(tokens_->Create(Role::kWorker, "fuzz-worker", FakeNow())).text;
    service_ = std::make_unique<ControllerService>(store_.get(), &channel_, ParseJobSpec, FakeNow);
    router_ = std::make_unique<RestRouter>(service_.get(), tokens_.get(), FakeNow);
    creations_ = 0;
  }
  void TearDown() {
    router_.reset();
    service_.reset();
    tokens_.reset();
    store_.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::error_code ignored;
      std::filesystem::remove(dir_ + "/fuzz.db" + suffix, ignored);
    }
  }

  std::string dir_;
  NoWorkers channel_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TokenAuthority> tokens_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<RestRouter> router_;
  std::string admin_, user_, worker_;
  int creations_ = 0;
};

// Built on the first input; its files are removed when the process exits normally.
World& TheWorld() {
  static World world;
  return world;
}

std::string PickId(fuzz::InputReader& in) {
  const uint8_t b = in.Byte();
  switch (b % 8) {
    case 0:
      return std::to_string(b / 8);  // 0 to 31: the jobs and tokens that exist, and some not
    case 1:
      return "999999999999999999";  // the largest id the router reads
    case 2:
      return "1000000000000000000";
    case 3:
      return "-1";
    case 4:
      return "01";
    case 5:
      return "";
    case 6:
      return "9223372036854775807";
    default:
      return in.Line(64);
  }
}

HttpRequest MakeRequest(const uint8_t* data, size_t size, const World& world) {
  fuzz::InputReader in(data, size);
  static const char* const kMethods[] = {"GET",   "POST",    "PUT", "DELETE",
                                         "PATCH", "OPTIONS", "HEAD"};
  const uint8_t method = in.Byte();
  const uint8_t path = in.Byte();
  const uint8_t token = in.Byte();
  const uint8_t content_type = in.Byte();
  HttpRequest request;
  request.method = method % 8 < 7 ? kMethods[method % 8] : in.Line(16);
  switch (path % 12) {
    case 0:
      request.target = "/healthz";
      break;
    case 1:
      request.target = "/v1/jobs";
      break;
    case 2:
      request.target = "/v1/jobs/" + PickId(in);
      break;
    case 3:
      request.target = "/v1/jobs/" + PickId(in) + "/trials";
      break;
    case 4:
      request.target = "/v1/jobs/" + PickId(in) + "/report";
      break;
    case 5:
      request.target = "/v1/jobs/" + PickId(in) + "/cancel";
      break;
    case 6:
      request.target = "/v1/workers";
      break;
    case 7:
      request.target = "/v1/tokens";
      break;
    case 8:
      request.target = "/v1/tokens/" + PickId(in);
      break;
    default:
      request.target = in.Line(2100);
  }
  if (path & 0x80) request.target += "?" + in.Line(64);
  switch (token % 6) {
    case 0:
      break;
    case 1:
      request.headers.emplace_back("authorization", "Bearer " + world.admin());
      break;
    case 2:
      request.headers.emplace_back("authorization", "Bearer " + world.user());
      break;
    case 3:
      request.headers.emplace_back("authorization", "Bearer " + world.worker());
      break;
    case 4:
      request.headers.emplace_back("authorization", "Bearer " + in.Line(300));
      break;
    default:
      request.headers.emplace_back("authorization", in.Line(300));
  }
  switch (content_type % 5) {
    case 0:
      break;
    case 1:
      request.headers.emplace_back("content-type", "application/json");
      break;
    case 2:
      request.headers.emplace_back("content-type", "Application/JSON ; charset=utf-8");
      break;
    case 3:
      request.headers.emplace_back("content-type", "text/plain");
      break;
    default:
      request.headers.emplace_back("content-type", in.Line(100));
  }
  request.body = in.Rest();
  return request;
}

}  // namespace
}  // namespace topotune

TOPOTUNE_FUZZ_TARGET(RestRouterFuzzerTestOneInput) {
  using namespace topotune;
  World& world = TheWorld();
  const HttpRequest request = MakeRequest(data, size, world);
  const HttpResponse response = world.router().Handle(request);
  TOPOTUNE_FUZZ_CHECK(response.status >= 200 && response.status <= 499, "%s %s answered %d: %s",
                      SafeText(request.method, 20).c_str(), SafeText(request.target, 200).c_str(),
                      response.status, SafeText(response.body, 400).c_str());
  TOPOTUNE_FUZZ_CHECK(
      response.content_type == "application/json" && nlohmann::json::accept(response.body),
      "%s %s answered %d with a body that is not JSON: %s", SafeText(request.method, 20).c_str(),
      SafeText(request.target, 200).c_str(), response.status, SafeText(response.body, 400).c_str());
  world.AfterResponse(request, response);
  return 0;
}
