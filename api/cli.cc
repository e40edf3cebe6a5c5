#include "api/cli.h"

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/job_spec_json.h"
#include "api/json_input.h"
#include "api/predict_cli.h"
#include "api/report_json.h"
#include "storage/store.h"
#include "tuner/report.h"
#include "tuner/types.h"

namespace topotune {
namespace {

using nlohmann::json;

const char kUsage[] =
    "usage: topotune [--server URL] [--token-file FILE] COMMAND\n"
    "  submit FILE [--watch]   submit a job spec (JSON); --watch follows it to the end\n"
    "  list                    every job\n"
    "  status ID [--watch]     state and progress; --watch redraws a progress bar\n"
    "  report ID [--json]      the best-config report (--db FILE reads the database file\n"
    "                          directly, without a server)\n"
    "  cancel ID               stop a running job\n"
    "  workers                 the workers the controller knows\n"
    "  devices [--json]        the device classes, their sites, workers and measured steps\n"
    "  topology [ID] [--json]  each site's measured link to the controller; with a job ID,\n"
    "                          beside the links its topology declares\n"
    "  token create --role ROLE [--name NAME]\n"
    "                          issue a token (ROLE admin, user or worker; NAME up to 64 of\n"
    "                          A-Z a-z 0-9 . _ -); prints its text on stdout, this once only\n"
    "  token list [--json]     every token, revoked ones too (never their secrets)\n"
    "  token revoke ID         revoke a token; it stops working at once\n"
    "  predict ID --topology FILE [--top K] [--json]\n"
    "                          what-if: the job's configurations ranked on a topology\n"
    "  predict --curves TABLE.csv --profile PROFILE.csv --topology FILE\n"
    "          [--target-accuracy X] [--train-samples N] [--curves-class NAME]\n"
    "          [--batch-sizes B1,B2,...] [--top K] [--json]\n"
    "                          offline planning, no server: rank the table's configurations\n"
    "                          by predicted time-to-accuracy on each target of the topology\n"
    "The server defaults to $TOPOTUNE_SERVER, else http://127.0.0.1:7700. Requests carry\n"
    "the bearer token on the first line of --token-file, else $TOPOTUNE_TOKEN.\n";

struct Args {
  std::string server;
  std::string db;
  std::string token_file;
  std::string token;  ///< from --token-file or $TOPOTUNE_TOKEN; empty = none
  std::string role;   ///< token create --role
  std::string name;   ///< token create --name
  bool name_given = false;
  std::string command;
  std::vector<std::string> positional;
  bool watch = false;
  bool as_json = false;
  PredictOptions predict;  ///< predict's files and values
};

// A request's JSON answer, or an error message for the user.
struct Answer {
  bool ok = false;
  json body;
  std::string error;
};

// `method` is GET, POST (a JSON body) or DELETE. Sends the bearer token when there is one.
Answer Call(const Args& args, const std::string& method, const std::string& path,
            const std::string& body = "") {
  httplib::Client client(args.server);
  client.set_connection_timeout(5);
  client.set_read_timeout(60);
  httplib::Headers headers;
  if (!args.token.empty()) headers.emplace("Authorization", "Bearer " + args.token);
  httplib::Result res = method == "POST"     ? client.Post(path, headers, body, "application/json")
                        : method == "DELETE" ? client.Delete(path, headers)
                                             : client.Get(path, headers);
  Answer a;
  if (!res) {
    a.error = "cannot reach topotuned at " + args.server + ": " + httplib::to_string(res.error());
    return a;
  }
  a.body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (a.body.is_discarded()) {
    a.error = "HTTP " + std::to_string(res->status) + ": the answer is not JSON";
    return a;
  }
  if (res->status >= 300) {
    a.error = "HTTP " + std::to_string(res->status) + " " +
              a.body["error"].value("code", std::string("")) + ": " +
              a.body["error"].value("message", std::string(""));
    if (res->status == 401 && args.token.empty()) {
      a.error += " (no token: pass --token-file FILE or set $TOPOTUNE_TOKEN)";
    }
    return a;
  }
  a.ok = true;
  return a;
}

// `text` without leading and trailing whitespace.
std::string Trim(const std::string& text) {
  const char* kSpace = " \t\r\n\v\f";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

// Sets args->token from the first line of --token-file, else $TOPOTUNE_TOKEN (trimmed);
// false with an error when the file cannot be read or its first line is empty.
bool LoadToken(Args* args, std::string* error) {
  if (!args->token_file.empty()) {
    std::ifstream in(args->token_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      *error = "cannot read a token from " + args->token_file;
      return false;
    }
    args->token = Trim(line);
    if (args->token.empty()) {
      *error = "the first line of " + args->token_file + " is empty: it should hold the token";
      return false;
    }
    return true;
  }
  const char* env = std::getenv("TOPOTUNE_TOKEN");
  args->token = env != nullptr ? Trim(env) : "";
  return true;
}

// A time in seconds since the Unix epoch as "YYYY-MM-DD HH:MM:SS" UTC; "-" for null.
std::string UtcTime(const json& seconds) {
  if (!seconds.is_number()) return "-";
  const std::time_t t = static_cast<std::time_t>(seconds.get<double>());
  std::tm tm{};
  char buf[32];
  if (gmtime_r(&t, &tm) == nullptr ||
      std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm) == 0) {
    return "-";
  }
  return buf;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

std::string ConfigText(const json& config) {
  return "batch size " + std::to_string(config["batch_size"].get<int>()) + ", learning rate " +
         Sci(config["learning_rate"].get<double>()) + ", optimizer " +
         config["optimizer"].get<std::string>();
}

std::string CountsText(const json& by_state) {
  std::string out;
  for (auto it = by_state.begin(); it != by_state.end(); ++it) {
    out += (out.empty() ? "" : ", ") + std::to_string(it.value().get<int>()) + " " + it.key();
  }
  return out.empty() ? "no trials yet" : out;
}

std::string Bar(double fraction, int width) {
  const int filled = static_cast<int>(fraction * width + 0.5);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

void PrintReport(const json& r) {
  const json& job = r["job"];
  const std::string sampler =
      r.contains("sampler") && r["sampler"].is_string() ? r["sampler"].get<std::string>() : "";
  std::printf("Job %lld \"%s\": %s (algorithm %s%s, target validation accuracy %s)\n",
              job["id"].get<long long>(), job["name"].get<std::string>().c_str(),
              job["state"].get<std::string>().c_str(), r["algorithm"].get<std::string>().c_str(),
              sampler.empty() ? "" : (", sampler " + sampler).c_str(),
              Fixed(r["target_accuracy"].get<double>(), 3).c_str());
  // Why the job ended, where something other than its trials ended it (its time budget).
  if (job["state"] == "completed" && !job.value("message", std::string()).empty()) {
    std::printf("Ended: %s\n", SafeText(job["message"].get<std::string>(), 200).c_str());
  }
  if (!r.value("auto_reason", std::string()).empty()) {
    std::printf("Algorithm chosen by \"auto\": %s (%s)\n",
                r["algorithm"].get<std::string>().c_str(),
                r["auto_reason"].get<std::string>().c_str());
  }
  // The class, or the target when it is more than one device of it.
  const std::string reference_class = r.value("reference_class", std::string());
  const json target = r.value("reference_target", json());
  const bool several = target.is_object() && target.value("kind", "single") != "single";
  const std::string reference = reference_class.empty() ? std::string()
                                : several ? "on target " + target.value("name", "") + " (" +
                                                target.value("description", "") + ")"
                                          : "on class " + reference_class;
  const json& best = r["best"];
  if (best.is_null()) {
    std::printf("No trial finished an epoch: there is no best configuration.\n");
  } else {
    std::printf("\nBest configuration: %s\n", ConfigText(best["config"]).c_str());
    if (r["target_reached"].get<bool>()) {
      std::printf("  time-to-accuracy %s s of training (%s): reached %s at epoch %d\n",
                  Fixed(best["tta_s"].get<double>(), 2).c_str(),
                  reference.empty() ? "measured" : reference.c_str(),
                  Fixed(best["best_accuracy"].get<double>(), 3).c_str(),
                  best["epochs_done"].get<int>());
      const json& seeds = r.value("best_seed_tta_s", json::array());
      if (seeds.is_array() && seeds.size() > 1) {
        std::string each;
        for (const json& s : seeds) {
          if (s.is_number()) each += (each.empty() ? "" : ", ") + Fixed(s.get<double>(), 2);
        }
        std::printf("  the mean over %zu seeds, whose TTAs were %s s\n", seeds.size(),
                    each.c_str());
      }
    } else {
      std::printf("  the target was NOT reached; best validation accuracy %s after %d epochs\n",
                  Fixed(best["best_accuracy"].get<double>(), 3).c_str(),
                  best["epochs_done"].get<int>());
    }
    std::string on;
    for (const json& c : best.value("device_classes", json::array())) {
      if (c.is_string())
        on += (on.empty() ? " (class " : ", ") + SafeText(c.get<std::string>(), 60);
    }
    if (!on.empty()) on += ")";
    std::printf("  trial %d on worker %s%s\n", best["number"].get<int>(),
                best["worker"].get<std::string>().c_str(), on.c_str());
  }
  if (several) {
    const std::string measured = target.value("links_measured", std::string());
    std::printf(
        "Seconds of training are counted %s: a trial's measured seconds x the target's "
        "seconds for the same step (data-parallel: %s's compute step of the local batch, from "
        "its probe, plus the ring synchronisation over its links; federated: a round per "
        "local epoch, given the topology's train_samples) / the step time of the class it "
        "ran on. Its links, fixed at the job's first placement: %s. One device cannot "
        "measure this target, so nothing is confirmed on it\n",
        reference.c_str(), reference_class.c_str(),
        measured.empty() ? "as declared" : SafeText(measured, 600).c_str());
  } else if (!reference.empty()) {
    std::printf(
        "Seconds of training are counted on class %s: a trial's measured seconds x %s's step "
        "time / the step time of the class it ran on, from their probes (as measured where "
        "either has no probe)\n",
        reference_class.c_str(), reference_class.c_str());
  }
  const int unscaled = r.value("unscaled_epochs", 0);
  if (unscaled > 0) {
    std::string numbers;
    for (const json& t : r["ranking"]) {
      if (t.value("unscaled_epochs", 0) <= 0) continue;
      numbers += (numbers.empty() ? "#" : ", #") + std::to_string(t["number"].get<int>());
    }
    const bool one = unscaled == 1;
    std::printf(
        "%d epoch%s (trial%s %s) count%s as measured, not %s: no probe of the job's input "
        "could scale %s when %s ran, so %s seconds do not compare with the others'\n",
        unscaled, one ? "" : "s", numbers.find(',') == std::string::npos ? "" : "s",
        numbers.c_str(), one ? "s" : "", reference.c_str(), one ? "it" : "them",
        one ? "it" : "they", one ? "its" : "their");
  }
  const json& grid = r["grid"];
  std::printf("\nCompute spent: %s s over %d epochs of %d trials (%s)\n",
              Fixed(r["compute_s"].get<double>(), 1).c_str(), r["epochs_trained"].get<int>(),
              r["trials_total"].get<int>(), CountsText(r["trials_by_state"]).c_str());
  if (r.value("cut_s", 0.0) > 0) {
    std::printf(
        "Also spent: %s s of training, counted as time-to-accuracy is, in epochs that a lost "
        "worker or a restart cut and that were trained again (a time budget counts them)\n",
        Fixed(r["cut_s"].get<double>(), 1).c_str());
  }
  if (grid["cost_s"].get<double>() > 0) {
    const double ratio = r["compute_vs_grid"].get<double>();
    const double per_point_s = grid.value("seconds_per_point", 0.0);
    if (per_point_s > 0) {
      std::printf(
          "Full grid over the same space: %d configurations x %s s of training = %s s with "
          "evaluation (estimated from this job's ratio of wall to training time)\n",
          grid["points"].get<int>(), Fixed(per_point_s, 1).c_str(),
          Fixed(grid["cost_s"].get<double>(), 1).c_str());
    } else {
      std::printf(
          "Full grid over the same space: %d configurations x %d epochs = %s s (estimated from "
          "this job's measured epoch times, %d of the batch sizes measured)\n",
          grid["points"].get<int>(), grid["epochs_per_point"].get<int>(),
          Fixed(grid["cost_s"].get<double>(), 1).c_str(), grid["batch_sizes_measured"].get<int>());
    }
    std::printf("Compute vs full grid: %s (%sx less)\n", Fixed(ratio, 3).c_str(),
                Fixed(ratio > 0 ? 1.0 / ratio : 0.0, 1).c_str());
  }
  if (!r["best_curve"].empty()) {
    std::printf("\nLearning curve of the best trial:\n  %5s %10s %10s %12s %12s %10s\n", "epoch",
                "val_acc", "train_loss", "train_s_cum", "measured_cum", "step_p50");
    double cumulative = 0.0, measured = 0.0;
    for (const json& p : r["best_curve"]) {
      measured += p["compute_s"].get<double>() + p["comm_s"].get<double>();
      cumulative += p.value("reference_s", 0.0);
      std::printf("  %5d %10s %10s %12s %12s %8s ms\n", p["epoch"].get<int>(),
                  Fixed(p["val_accuracy"].get<double>(), 3).c_str(),
                  Fixed(p["train_loss"].get<double>(), 4).c_str(), Fixed(cumulative, 2).c_str(),
                  Fixed(measured, 2).c_str(), Fixed(p["step_ms_p50"].get<double>(), 2).c_str());
    }
  }
  // A trial the forecast stopped (or reprieved, paused) shows what it was heading for: its
  // predicted TTA and its chance of having beaten the incumbent.
  const auto predicted = [](const json& t) -> std::string {
    const json& f = t["forecast"];
    if (!f.is_object()) return "-";
    return f["predicted_tta_s"].is_null() ? "never" : Fixed(f["predicted_tta_s"].get<double>(), 2);
  };
  const auto p_win = [](const json& t) -> std::string {
    const json& f = t["forecast"];
    return f.is_object() ? Fixed(f["p_win"].get<double>(), 3) : "-";
  };
  std::printf(
      "\nTrials, best first (pred_tta, p_win: the forecast of a trial it stopped or "
      "reprieved):\n"
      "  %4s %6s %10s %5s %11s %5s %6s %8s %8s %8s %6s  %s\n",
      "#", "batch", "lr", "opt", "state", "rung", "epochs", "best_acc", "tta_s", "pred_tta",
      "p_win", "reason");
  for (const json& t : r["ranking"]) {
    std::printf("  %4d %6d %10s %5s %11s %5d %6d %8s %8s %8s %6s  %s\n", t["number"].get<int>(),
                t["config"]["batch_size"].get<int>(),
                Sci(t["config"]["learning_rate"].get<double>()).c_str(),
                t["config"]["optimizer"].get<std::string>().c_str(),
                t["state"].get<std::string>().c_str(), t["rung"].get<int>(),
                t["epochs_done"].get<int>(), Fixed(t["best_accuracy"].get<double>(), 3).c_str(),
                t["tta_s"].is_null() ? "-" : Fixed(t["tta_s"].get<double>(), 2).c_str(),
                predicted(t).c_str(), p_win(t).c_str(), t["reason"].get<std::string>().c_str());
  }
}

// The report built from the database file alone, as the server would build it.
int ReportFromDb(const Args& args, int64_t id) {
  StatusOr<std::unique_ptr<Store>> store = Store::Open(args.db);
  if (!store.ok()) {
    std::fprintf(stderr, "topotune: %s\n", store.status().ToString().c_str());
    return 1;
  }
  StatusOr<JobRecord> job = (*store)->GetJob(id);
  StatusOr<std::vector<TrialRecord>> trials = (*store)->ListTrials(id);
  StatusOr<std::vector<CurvePoint>> points = (*store)->ListCurvePoints(id);
  if (!job.ok() || !trials.ok() || !points.ok()) {
    const Status& s = !job.ok() ? job.status() : !trials.ok() ? trials.status() : points.status();
    std::fprintf(stderr, "topotune: %s\n", s.ToString().c_str());
    return 1;
  }
  StatusOr<JobSpec> spec = ParseJobSpec(job->spec_json);
  if (!spec.ok()) {
    std::fprintf(stderr, "topotune: stored spec: %s\n", spec.status().ToString().c_str());
    return 1;
  }
  const json report = ToJson(BuildReport(*job, *spec, *trials, *points));
  if (args.as_json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    PrintReport(report);
  }
  return 0;
}

int Fail(const std::string& error) {
  std::fprintf(stderr, "topotune: %s\n", error.c_str());
  return 1;
}

// Polls the job until it ends, redrawing one progress line (a line per change when the
// output is not a terminal).
int Watch(const Args& args, const std::string& id) {
  const bool tty = isatty(fileno(stdout));
  std::string last;
  for (;;) {
    Answer a = Call(args, "GET", "/v1/jobs/" + id);
    if (!a.ok) return Fail(a.error);
    const json& p = a.body["progress"];
    std::string line = "job " + id + " " + a.body["state"].get<std::string>() + " " +
                       Bar(p["fraction"].get<double>(), 30) + " " +
                       std::to_string(p["trials_sampled"].get<int>()) + "/" +
                       std::to_string(p["trials_total"].get<int>()) + " trials (" +
                       CountsText(p["trials_by_state"]) + ")";
    if (!p["best"].is_null()) {
      const json& b = p["best"];
      line += b["reached_target"].get<bool>()
                  ? "; best TTA " + Fixed(b["tta_s"].get<double>(), 1) + " s"
                  : "; best acc " + Fixed(b["best_accuracy"].get<double>(), 3);
    }
    if (tty) {
      std::printf("\r\033[K%s", line.c_str());
      std::fflush(stdout);
    } else if (line != last) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    last = line;
    const std::string state = a.body["state"].get<std::string>();
    if (state == "completed" || state == "cancelled" || state == "failed") {
      if (tty) std::printf("\n");
      if (state == "failed") return Fail("job failed: " + a.body["message"].get<std::string>());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  }
}

bool ParseArgs(int argc, char** argv, Args* args, std::string* error) {
  const char* env = std::getenv("TOPOTUNE_SERVER");
  args->server = env != nullptr && *env ? env : "http://127.0.0.1:7700";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--server" || arg == "--db" || arg == "--token-file" || arg == "--role" ||
        arg == "--name") {
      if (i + 1 >= argc) {
        *error = arg + " needs a value";
        return false;
      }
      const std::string value = argv[++i];
      if (arg == "--server") args->server = value;
      if (arg == "--db") args->db = value;
      if (arg == "--token-file") args->token_file = value;
      if (arg == "--role") args->role = value;
      if (arg == "--name") {
        args->name = value;
        args->name_given = true;
      }
    } else if (arg == "--curves" || arg == "--profile" || arg == "--topology" ||
               arg == "--target-accuracy" || arg == "--train-samples" || arg == "--curves-class" ||
               arg == "--top" || arg == "--batch-sizes") {
      if (i + 1 >= argc) {
        *error = arg + " needs a value";
        return false;
      }
      const std::string value = argv[++i];
      PredictOptions& p = args->predict;
      char* end = nullptr;
      if (arg == "--curves") p.curves = value;
      if (arg == "--profile") p.profile = value;
      if (arg == "--topology") p.topology = value;
      if (arg == "--curves-class") p.curves_class = value;
      if (arg == "--batch-sizes") {
        std::stringstream list(value);
        std::string item;
        while (std::getline(list, item, ',')) {
          const long long b = std::strtoll(item.c_str(), &end, 10);
          if (item.empty() || *end != '\0' || b < 1 || b > kMaxBatchSize ||
              p.what_if_batches.size() >= 64) {
            *error = "--batch-sizes takes up to 64 comma-separated batch sizes in [1, " +
                     std::to_string(kMaxBatchSize) + "], got " + value;
            return false;
          }
          p.what_if_batches.push_back(static_cast<int>(b));
        }
      }
      if (arg == "--target-accuracy") {
        p.target_accuracy = std::strtod(value.c_str(), &end);
        if (*end != '\0' || !(p.target_accuracy > 0 && p.target_accuracy <= 1)) {
          *error = "--target-accuracy must be a number in (0, 1], got " + value;
          return false;
        }
      }
      if (arg == "--train-samples" || arg == "--top") {
        const long long v = std::strtoll(value.c_str(), &end, 10);
        if (*end != '\0' || v < 1 || v > kMaxTrainSamples) {
          *error = arg + " must be a positive integer, got " + value;
          return false;
        }
        if (arg == "--top") p.top = static_cast<int>(std::min(v, 1LL << 20));
        if (arg == "--train-samples") p.train_samples = v;
      }
    } else if (arg == "--watch") {
      args->watch = true;
    } else if (arg == "--json") {
      args->as_json = true;
    } else if (arg == "-h" || arg == "--help") {
      *error = "";
      return false;
    } else if (!arg.empty() && arg[0] == '-') {
      *error = "unknown option " + arg;
      return false;
    } else if (args->command.empty()) {
      args->command = arg;
    } else {
      args->positional.push_back(arg);
    }
  }
  return true;
}

// topotune token create | list | revoke ID.
int RunToken(const Args& args) {
  const std::string sub = args.positional.empty() ? "" : args.positional[0];
  const size_t want_args = sub == "revoke" ? 2 : 1;
  if ((sub != "create" && sub != "list" && sub != "revoke") ||
      args.positional.size() != want_args) {
    std::fprintf(stderr, "topotune: token takes create, list or revoke ID\n%s", kUsage);
    return 2;
  }
  if (sub != "create" && (!args.role.empty() || args.name_given)) {
    std::fprintf(stderr, "topotune: --role and --name go with token create\n%s", kUsage);
    return 2;
  }

  if (sub == "create") {
    if (!ParseRole(args.role)) {
      const std::string got = args.role.empty() ? "" : ", got '" + args.role + "'";
      std::fprintf(stderr, "topotune: token create needs --role admin, user or worker%s\n%s",
                   got.c_str(), kUsage);
      return 2;
    }
    const json body = {{"role", args.role}, {"name", args.name}};
    Answer a = Call(args, "POST", "/v1/tokens", body.dump());
    if (!a.ok) return Fail(a.error);
    if (!a.body.contains("token") || !a.body["token"].is_string()) {
      return Fail("the answer to POST /v1/tokens holds no token");
    }
    // stdout holds the token alone, for token=$(topotune token create ...).
    std::printf("%s\n", a.body["token"].get<std::string>().c_str());
    std::fflush(stdout);
    std::fprintf(stderr,
                 "topotune: created %s token %lld \"%s\". Its text above is shown only this "
                 "once: store it now.\n",
                 a.body.value("role", std::string()).c_str(), a.body.value("id", 0LL),
                 a.body.value("name", std::string()).c_str());
    return 0;
  }
  if (sub == "list") {
    Answer a = Call(args, "GET", "/v1/tokens");
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
      return 0;
    }
    std::printf("%5s  %-6s  %-24s %-19s  %-19s  %s\n", "id", "role", "name", "created (UTC)",
                "last used", "revoked");
    for (const json& t : a.body["tokens"]) {
      std::printf("%5lld  %-6s  %-24s %-19s  %-19s  %s\n", t["id"].get<long long>(),
                  t["role"].get<std::string>().c_str(), t["name"].get<std::string>().c_str(),
                  UtcTime(t["created_at"]).c_str(), UtcTime(t["last_used_at"]).c_str(),
                  UtcTime(t["revoked_at"]).c_str());
    }
    return 0;
  }
  const std::string& id = args.positional[1];
  if (id.empty() || id.size() > 18 || id[0] == '0' ||
      id.find_first_not_of("0123456789") != std::string::npos) {
    std::fprintf(stderr, "topotune: token id must be a positive integer, got '%s'\n", id.c_str());
    return 2;
  }
  Answer a = Call(args, "DELETE", "/v1/tokens/" + id);
  if (!a.ok) return Fail(a.error);
  std::printf("revoked %s token %s \"%s\"\n", a.body.value("role", std::string()).c_str(),
              id.c_str(), a.body.value("name", std::string()).c_str());
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error) || args.command.empty()) {
    if (!error.empty()) std::fprintf(stderr, "topotune: %s\n", error.c_str());
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  if (!LoadToken(&args, &error)) {
    std::fprintf(stderr, "topotune: %s\n", error.c_str());
    return 2;
  }
  const std::string& cmd = args.command;
  if (cmd == "token") return RunToken(args);
  if (cmd == "predict") {
    args.predict.as_json = args.as_json;
    if (args.positional.empty()) return RunPredictOffline(args.predict);
    // predict ID --topology FILE: the job's configurations on a topology, by the server.
    if (args.positional.size() != 1 || args.predict.topology.empty() ||
        !args.predict.curves.empty() || !args.predict.profile.empty()) {
      std::fprintf(stderr, "topotune: predict ID takes --topology FILE alone\n%s", kUsage);
      return 2;
    }
    std::ifstream in(args.predict.topology);
    if (!in) return Fail("cannot read the topology " + args.predict.topology);
    std::stringstream text;
    text << in.rdbuf();
    Answer a = Call(args, "POST", "/v1/jobs/" + args.positional[0] + "/predict", text.str());
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
    } else {
      PrintPlans(a.body, args.predict.top);
    }
    return 0;
  }
  if (!args.role.empty() || args.name_given) {
    std::fprintf(stderr, "topotune: --role and --name go with token create\n%s", kUsage);
    return 2;
  }
  // topology [ID]: the measured links, beside job ID's declared topology when given.
  if (cmd == "topology") {
    if (args.positional.size() > 1) {
      std::fprintf(stderr, "topotune: topology takes at most a job id\n%s", kUsage);
      return 2;
    }
    const bool of_job = args.positional.size() == 1;
    Answer a =
        Call(args, "GET", of_job ? "/v1/jobs/" + args.positional[0] + "/topology" : "/v1/topology");
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
      return 0;
    }
    auto number = [](const json& j, const char* key, int digits) {
      return j.is_null() ? std::string("-") : Fixed(j[key].get<double>(), digits);
    };
    std::printf("%-12s %-24s %-24s %9s %11s %11s\n", "site", "classes connected", "declared",
                "rtt_ms", "down_Mbit/s", "up_Mbit/s");
    for (const json& site : a.body["sites"]) {
      auto classes = [](const json& m) {
        std::string out;
        for (auto it = m.begin(); it != m.end(); ++it) {
          out += (out.empty() ? "" : ", ") + it.key() + " x" + std::to_string(it->get<int>());
        }
        return out.empty() ? std::string("-") : out;
      };
      const json& link = site["link_to_controller"];
      const std::string name = site["site"].get<std::string>();
      std::printf("%-12s %-24s %-24s %9s %11s %11s\n", name.empty() ? "(none)" : name.c_str(),
                  classes(site["classes"]).c_str(), classes(site["declared_classes"]).c_str(),
                  number(link, "rtt_ms", 2).c_str(), number(link, "down_mbit_s", 1).c_str(),
                  number(link, "up_mbit_s", 1).c_str());
    }
    if (!a.body["links"].empty()) {
      std::printf("\n%-28s %12s %10s   %12s %10s   %12s %10s\n", "link", "declared", "", "via ctrl",
                  "", "direct", "");
      std::printf("%-28s %12s %10s   %12s %10s   %12s %10s\n", "", "Mbit/s", "ms", "Mbit/s", "ms",
                  "Mbit/s", "ms");
      for (const json& l : a.body["links"]) {
        const std::string between =
            l["between"][0].get<std::string>() + " <-> " + l["between"][1].get<std::string>();
        const json direct = l.value("direct", json());
        std::printf("%-28s %12s %10s   %12s %10s   %12s %10s\n", between.c_str(),
                    number(l["declared"], "bandwidth_mbit_s", 1).c_str(),
                    number(l["declared"], "latency_ms", 2).c_str(),
                    number(l["measured"], "bandwidth_mbit_s", 1).c_str(),
                    number(l["measured"], "latency_ms", 2).c_str(),
                    number(direct, "bandwidth_mbit_s", 1).c_str(),
                    number(direct, "latency_ms", 2).c_str());
      }
    }
    std::printf("\nhow: %s\n", a.body["how"].get<std::string>().c_str());
    return 0;
  }
  const bool needs_arg = cmd == "submit" || cmd == "status" || cmd == "report" || cmd == "cancel";
  if (needs_arg != (args.positional.size() == 1) || args.positional.size() > 1) {
    std::fprintf(stderr, "topotune: %s takes %s\n%s", cmd.c_str(),
                 needs_arg ? "one argument" : "no argument", kUsage);
    return 2;
  }
  const std::string arg = needs_arg ? args.positional[0] : "";

  if (cmd == "submit") {
    std::ifstream in(arg);
    if (!in) return Fail("cannot read " + arg);
    std::stringstream text;
    text << in.rdbuf();
    Answer a = Call(args, "POST", "/v1/jobs", text.str());
    if (!a.ok) return Fail(a.error);
    const std::string id = std::to_string(a.body["id"].get<long long>());
    std::printf("submitted job %s (%s)\n", id.c_str(), a.body["name"].get<std::string>().c_str());
    std::fflush(stdout);
    return args.watch ? Watch(args, id) : 0;
  }
  if (cmd == "list") {
    Answer a = Call(args, "GET", "/v1/jobs");
    if (!a.ok) return Fail(a.error);
    std::printf("%5s  %-24s %-10s\n", "id", "name", "state");
    for (const json& j : a.body["jobs"]) {
      std::printf("%5lld  %-24s %-10s\n", j["id"].get<long long>(),
                  j["name"].get<std::string>().c_str(), j["state"].get<std::string>().c_str());
    }
    return 0;
  }
  if (cmd == "status") {
    if (args.watch) return Watch(args, arg);
    Answer a = Call(args, "GET", "/v1/jobs/" + arg);
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
      return 0;
    }
    const json& p = a.body["progress"];
    std::printf("job %s \"%s\": %s %s %d/%d trials sampled (%s)\n", arg.c_str(),
                a.body["name"].get<std::string>().c_str(),
                a.body["state"].get<std::string>().c_str(),
                Bar(p["fraction"].get<double>(), 30).c_str(), p["trials_sampled"].get<int>(),
                p["trials_total"].get<int>(), CountsText(p["trials_by_state"]).c_str());
    if (!p["best"].is_null())
      std::printf("best so far: %s\n", ConfigText(p["best"]["config"]).c_str());
    return 0;
  }
  if (cmd == "report") {
    if (!args.db.empty()) {
      const long long id = std::atoll(arg.c_str());
      if (id <= 0) return Fail("job id must be a positive integer, got '" + arg + "'");
      return ReportFromDb(args, id);
    }
    Answer a = Call(args, "GET", "/v1/jobs/" + arg + "/report");
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
    } else {
      PrintReport(a.body);
      if (a.body.contains("targets") && a.body["targets"].contains("targets")) {
        std::printf("\nper target of the job's topology:\n");
        PrintPlans(a.body["targets"], 3);
      } else if (a.body.contains("targets")) {
        std::printf("\nper target: %s\n", a.body["targets"].value("note", "").c_str());
      }
    }
    return 0;
  }
  if (cmd == "cancel") {
    Answer a = Call(args, "POST", "/v1/jobs/" + arg + "/cancel");
    if (!a.ok) return Fail(a.error);
    std::printf("job %s %s\n", arg.c_str(), a.body["state"].get<std::string>().c_str());
    return 0;
  }
  if (cmd == "devices") {
    Answer a = Call(args, "GET", "/v1/devices");
    if (!a.ok) return Fail(a.error);
    if (args.as_json) {
      std::printf("%s\n", a.body.dump(2).c_str());
      return 0;
    }
    for (const json& c : a.body["classes"]) {
      std::string sites, workers;
      for (const json& s : c["sites"]) sites += (sites.empty() ? "" : ", ") + s.get<std::string>();
      for (const json& w : c["workers"]) {
        workers += (workers.empty() ? "" : ", ") + w.get<std::string>();
      }
      std::printf("class %s: %s, %d cores, %s GiB; sites: %s; workers: %s\n",
                  c["class"].get<std::string>().c_str(),
                  c["device"]["name"].get<std::string>().c_str(), c["device"]["cores"].get<int>(),
                  Fixed(c["device"]["memory_bytes"].get<double>() / (1 << 30), 1).c_str(),
                  sites.empty() ? "-" : sites.c_str(), workers.c_str());
      for (const json& p : c["probes"]) {
        const int largest = p["max_batch_size"].get<int>();
        const int adam_largest = p.value("adam_max_batch_size", largest);
        std::printf("  %s %s: step = %s ms + %s ms x batch; largest batch that fits %d",
                    p["model"].get<std::string>().c_str(), p["input"].get<std::string>().c_str(),
                    Fixed(p["step_ms_fit"]["alpha_ms"].get<double>(), 3).c_str(),
                    Fixed(p["step_ms_fit"]["beta_ms_per_sample"].get<double>(), 4).c_str(),
                    largest);
        if (adam_largest != largest) std::printf(", with Adam %d", adam_largest);
        std::printf("\n");
        for (const json& b : p["batches"]) {
          if (!b["fits"].get<bool>()) continue;
          const double forward = b.value("forward_ms", 0.0);
          const double backward = b.value("backward_ms", 0.0);
          const double optimizer = b.value("optimizer_ms", 0.0);
          std::printf("    batch %d: %s ms", b["batch_size"].get<int>(),
                      Fixed(b["step_ms"].get<double>(), 2).c_str());
          if (forward + backward + optimizer > 0) {
            std::printf(" = forward %s + backward %s + optimizer %s", Fixed(forward, 2).c_str(),
                        Fixed(backward, 2).c_str(), Fixed(optimizer, 2).c_str());
          }
          const double adam = b.value("adam_optimizer_ms", 0.0);
          if (adam > 0) std::printf("; with Adam's update %s", Fixed(adam, 2).c_str());
          if (b.value("adam_does_not_fit", false)) std::printf("; Adam's state does not fit");
          const double timed = b.value("timed_s", 0.0);
          if (timed > 0) std::printf(" (%s s timed)", Fixed(timed, 1).c_str());
          std::printf("\n");
        }
      }
    }
    return 0;
  }
  if (cmd == "workers") {
    Answer a = Call(args, "GET", "/v1/workers");
    if (!a.ok) return Fail(a.error);
    std::printf("%-16s %-8s %-5s %6s %10s  %s\n", "id", "state", "kind", "cores", "memory_GiB",
                "device");
    for (const json& w : a.body["workers"]) {
      std::printf("%-16s %-8s %-5s %6d %10s  %s\n", w["id"].get<std::string>().c_str(),
                  w["state"].get<std::string>().c_str(),
                  w["device"]["kind"].get<std::string>().c_str(), w["device"]["cores"].get<int>(),
                  Fixed(w["device"]["memory_bytes"].get<double>() / (1 << 30), 1).c_str(),
                  w["device"]["name"].get<std::string>().c_str());
    }
    return 0;
  }
  std::fprintf(stderr, "topotune: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}

}  // namespace topotune
