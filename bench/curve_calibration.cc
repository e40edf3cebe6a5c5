// Calibration of the learning-curve model (tuner/curve_model.h) on recorded replay tables:
// every recorded curve that reaches the table's target is cut at 10%, 25% and 50% of its
// length, and the model predicts, from the cut curve alone (noise pooled over the table),
// the first epoch at which it reaches the target. Prints, per table and cut, the median
// absolute error of the predicted median epoch, the share of true epochs inside the 80%
// interval, how the curves that never reach the target were judged, and the prediction's
// latency (median, 99th percentile, max).
//
// --reliability adds, per table and cut, how the predicted probability of reaching the target
// at all (P(reach), which the engine's stop rules act on) compares with what the curves did:
// every prediction for a curve not yet at the target at the cut, binned by its P(reach) in
// tenths, with each bin's mean prediction and the share that reached the target by the
// table's last epoch, plus the Brier score and the expected calibration error (ECE: |mean -
// share| weighted by the bin's size).
// The model sees the other configurations' whole curves, which a job rarely has: its search
// stops most curves early. --others-cut M gives it each other curve only up to M times the
// cut's epochs (M = 1: the others trained in step with this one; 0: none).
// --censored-take-off measures the model the engine's samplers learn from instead.
//
// --search-view K judges P(reach) as a search's stop and resume rules meet it instead. Each
// curve is cut after every K epochs (a forecast segment: 4 on an 80-epoch job), the other
// configurations' curves at the same epoch (a job whose trials trained in step; --others-cut
// changes the multiple, default 1), and only curves that have left chance by the cut count:
// the best accuracy so far more than 3 pooled noise deviations above the mean of the first
// two epochs. (The model tests against the larger of that noise and the curve's own, so a
// few of these curves it still treats as at chance.) Prints, per table and pooled over the
// tables, the reliability of P(reach) and the mean P(reach) against the share that reached,
// split by how much of the way from its first epochs to the target the curve has come.
// --levels, --cuts, --reliability and --verbose do not apply to it.
//
//   bench_curve_calibration [--target X] [--levels] [--cuts 0.1,0.25,0.5] [--reliability]
//                           [--others-cut M] [--censored-take-off] [--search-view K]
//                           [--json] TABLE.csv...
//
// The target is --target or the table's "# bench_target=" line; --levels adds three lower
// targets per table (the accuracies 10%, 20% and 30% of its configurations reach), pooled
// with it.

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tuner/curve_model.h"
#include "workers/replay_table.h"

namespace {

using topotune::CurveModel;
using topotune::EpochsToTarget;
using topotune::ReplayTable;

// The q-quantile (nearest rank) of v; NAN for none.
double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A number for JSON: null where it is not finite (nothing to take a median or a mean of).
std::string JsonNumber(double x, int digits) {
  if (!std::isfinite(x)) return "null";
  char text[32];
  std::snprintf(text, sizeof(text), "%.*f", digits, x);
  return text;
}

// A prediction's P(reach) and whether the curve did reach the target.
struct Outcome {
  double p_reach;
  bool reached;
};

struct CutStats {
  int predicted = 0;              // curves that reach the target after the cut
  int covered = 0;                // ... whose first epoch at the target is inside the 80% interval
  int never_predicted = 0;        // ... whose predicted median is "never"
  std::vector<double> abs_error;  // epochs, where the median is finite
  std::vector<double> rel_error;
  int unreached = 0;              // curves that never reach the target in their length
  int unreached_judged = 0;       // ... predicted to reach it with probability < 0.5
  std::vector<double> micros;     // prediction latency
  std::vector<Outcome> outcomes;  // every prediction for a curve not at the target by the cut
  uint64_t digest = 14695981039346656037ULL;  // of every prediction's samples and P(reach)
};

// Folds x's bytes into an FNV-1a digest: two builds that predict alike, sample for sample,
// print the same digest (bench/curve_latency_ab.py compares them).
void Fold(uint64_t& digest, double x) {
  unsigned char bytes[sizeof x];
  std::memcpy(bytes, &x, sizeof x);
  for (unsigned char b : bytes) digest = (digest ^ b) * 1099511628211ULL;
}

// The reliability of P(reach): kBins bins of the prediction, each with its count, mean
// prediction and observed share; the Brier score; the expected calibration error.
constexpr int kBins = 10;
struct Reliability {
  std::array<int, kBins> count{};
  std::array<double, kBins> mean_p{};
  std::array<double, kBins> share{};
  double brier = NAN;
  double ece = NAN;
};

Reliability ReliabilityOf(const std::vector<Outcome>& outcomes) {
  Reliability r;
  if (outcomes.empty()) return r;
  std::array<double, kBins> sum_p{}, hits{};
  double brier = 0;
  for (const Outcome& o : outcomes) {
    const int b = std::clamp(static_cast<int>(o.p_reach * kBins), 0, kBins - 1);
    ++r.count[b];
    sum_p[b] += o.p_reach;
    hits[b] += o.reached;
    brier += (o.p_reach - o.reached) * (o.p_reach - o.reached);
  }
  const double n = static_cast<double>(outcomes.size());
  r.brier = brier / n;
  r.ece = 0;
  for (int b = 0; b < kBins; ++b) {
    if (r.count[b] == 0) continue;
    r.mean_p[b] = sum_p[b] / r.count[b];
    r.share[b] = hits[b] / r.count[b];
    r.ece += r.count[b] * std::abs(r.mean_p[b] - r.share[b]) / n;
  }
  return r;
}

// Prints a cut's reliability: one JSON object, or a line and one line per non-empty bin.
// A cut that is not finite is --search-view's, over every segment; a target that is not
// finite, its pool over tables with different targets.
void PrintReliability(const Reliability& r, size_t predictions, const std::string& table,
                      double target, double cut, bool json) {
  if (json) {
    std::string bins;
    for (int b = 0; b < kBins; ++b) {
      const bool empty = r.count[b] == 0;
      bins += (b ? ", " : "") + std::string("{\"from\": ") + JsonNumber(1.0 * b / kBins, 1) +
              ", \"count\": " + std::to_string(r.count[b]) +
              ", \"mean_p\": " + (empty ? "null" : JsonNumber(r.mean_p[b], 4)) +
              ", \"reached\": " + (empty ? "null" : JsonNumber(r.share[b], 4)) + "}";
    }
    std::printf(
        "{\"kind\": \"reliability\", \"table\": \"%s\", \"target\": %s, \"cut\": %s, "
        "\"predictions\": %zu, \"bins\": [%s], \"brier\": %s, \"ece\": %s}\n",
        table.c_str(), JsonNumber(target, 4).c_str(), JsonNumber(cut, 2).c_str(), predictions,
        bins.c_str(), JsonNumber(r.brier, 4).c_str(), JsonNumber(r.ece, 4).c_str());
    return;
  }
  char at[32] = "at every segment";
  if (std::isfinite(cut)) std::snprintf(at, sizeof(at), "at cut %.2f", cut);
  std::printf("  P(reach) %s: %zu predictions, Brier %.3f, ECE %.3f; bin: count mean_p reached\n",
              at, predictions, r.brier, r.ece);
  for (int b = 0; b < kBins; ++b) {
    if (r.count[b] == 0) continue;
    std::printf("    %.1f-%.1f  %5d  %.2f  %.2f\n", 1.0 * b / kBins, 1.0 * (b + 1) / kBins,
                r.count[b], r.mean_p[b], r.share[b]);
  }
}

// A replay table's curves (one per configuration and seed), the configuration each was
// recorded for, how many configurations it has, and its target (target_flag if >= 0, else
// its "# bench_target=" line).
bool LoadCurves(const std::string& path, double target_flag,
                std::vector<std::vector<double>>& curves, std::vector<size_t>& run_of,
                size_t& configurations, double& target) {
  topotune::StatusOr<ReplayTable> table = topotune::LoadReplayTable(path);
  if (!table.ok()) {
    std::fprintf(stderr, "bench_curve_calibration: %s\n", table.status().ToString().c_str());
    return false;
  }
  target = target_flag;
  if (target < 0) {
    auto it = table->meta().find("bench_target");
    if (it == table->meta().end()) {
      std::fprintf(stderr, "bench_curve_calibration: %s has no bench_target; use --target\n",
                   path.c_str());
      return false;
    }
    target = std::atof(it->second.c_str());
  }
  configurations = table->runs().size();
  for (size_t r = 0; r < configurations; ++r) {
    for (const auto& [seed, epochs] : table->runs()[r].curves) {
      std::vector<double> c;
      for (const ReplayTable::Epoch& e : epochs) c.push_back(e.val_accuracy);
      curves.push_back(std::move(c));
      run_of.push_back(r);
    }
  }
  return true;
}

// The curves of the configurations other than run_of[self]'s, each cut to its first `keep`
// epochs (none if keep < 1, whole if keep is at least its length).
std::vector<std::vector<double>> OthersUpTo(const std::vector<std::vector<double>>& curves,
                                            const std::vector<size_t>& run_of, size_t self,
                                            double keep) {
  std::vector<std::vector<double>> others;
  if (keep < 1) return others;
  for (size_t o = 0; o < curves.size(); ++o) {
    if (run_of[o] == run_of[self]) continue;
    const size_t n = keep >= static_cast<double>(curves[o].size()) ? curves[o].size()
                                                                   : static_cast<size_t>(keep);
    others.emplace_back(curves[o].begin(), curves[o].begin() + static_cast<std::ptrdiff_t>(n));
  }
  return others;
}

// --search-view (see the top of this file). Returns main's exit status.
int SearchView(const std::vector<std::string>& tables, double target_flag,
               const topotune::CurveModelOptions& options, int every, double others_cut,
               bool json) {
  // Progress: the share of the way from the mean of the first two epochs to the target
  // that the best accuracy so far has come.
  constexpr double kProgressEdges[] = {0.5, 0.9};
  const char* const kProgressNames[] = {"< 0.5", "0.5-0.9", ">= 0.9"};
  std::vector<Outcome> all;
  std::array<std::vector<Outcome>, 3> all_by_progress;
  const auto print = [&](const std::string& name, double target,
                         const std::vector<Outcome>& outcomes,
                         const std::array<std::vector<Outcome>, 3>& by_progress) {
    PrintReliability(ReliabilityOf(outcomes), outcomes.size(), name, target, NAN, json);
    for (size_t g = 0; g < by_progress.size(); ++g) {
      double p = 0, reached = 0;
      for (const Outcome& o : by_progress[g]) {
        p += o.p_reach;
        reached += o.reached;
      }
      const double n = static_cast<double>(by_progress[g].size());
      if (json) {
        std::printf(
            "{\"kind\": \"progress\", \"table\": \"%s\", \"progress\": \"%s\", "
            "\"predictions\": %zu, \"mean_p\": %s, \"reached\": %s}\n",
            name.c_str(), kProgressNames[g], by_progress[g].size(),
            JsonNumber(n > 0 ? p / n : NAN, 4).c_str(),
            JsonNumber(n > 0 ? reached / n : NAN, 4).c_str());
      } else if (n > 0) {
        std::printf("    progress %-8s %5zu predictions: mean P(reach) %.3f, reached %.3f\n",
                    kProgressNames[g], by_progress[g].size(), p / n, reached / n);
      }
    }
  };
  CurveModel model(options);
  for (const std::string& path : tables) {
    std::vector<std::vector<double>> curves;
    std::vector<size_t> run_of;
    size_t configurations = 0;
    double target = 0;
    if (!LoadCurves(path, target_flag, curves, run_of, configurations, target)) return 1;
    const double noise = model.EstimateNoise(curves);
    std::vector<Outcome> outcomes;
    std::array<std::vector<Outcome>, 3> by_progress;
    uint64_t seed = 1;
    for (size_t ci = 0; ci < curves.size(); ++ci) {
      const std::vector<double>& c = curves[ci];
      const int length = static_cast<int>(c.size());
      if (length < 2) continue;
      int first = 0;
      for (int e = 0; e < length && first == 0; ++e) {
        if (c[static_cast<size_t>(e)] >= target) first = e + 1;
      }
      const double early = (c[0] + c[1]) / 2;
      // From epoch 2 on: "left chance" compares with the first two epochs.
      for (int n = std::max(every, 2); n < length && (first == 0 || first > n); n += every) {
        const double best = *std::max_element(c.begin(), c.begin() + n);
        if (best - early <= 3 * noise) continue;  // still at chance
        const std::vector<double> partial(c.begin(), c.begin() + n);
        const EpochsToTarget p =
            model.Predict(partial, target, length, noise, seed++,
                          OthersUpTo(curves, run_of, ci, std::round(others_cut * n)));
        const Outcome o{p.p_reach, first != 0};
        const double progress = target > early ? (best - early) / (target - early) : 1.0;
        const size_t g = progress < kProgressEdges[0] ? 0 : progress < kProgressEdges[1] ? 1 : 2;
        outcomes.push_back(o);
        by_progress[g].push_back(o);
        all.push_back(o);
        all_by_progress[g].push_back(o);
      }
    }
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (!json) std::printf("%s, target %.3f, every %d epochs:\n", name.c_str(), target, every);
    print(name, target, outcomes, by_progress);
  }
  if (tables.size() > 1) {
    if (!json) std::printf("pooled over the %zu tables:\n", tables.size());
    print("pooled", NAN, all, all_by_progress);  // targets differ by table
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  double target_flag = -1;
  topotune::CurveModelOptions options;
  bool json = false;
  bool verbose = false;
  bool levels = false;
  bool reliability = false;
  double others_cut = -1;  // < 0: the other curves whole
  int search_view = 0;     // > 0: --search-view's segment
  std::vector<double> cuts = {0.10, 0.25, 0.50};
  std::vector<std::string> tables;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--target" && i + 1 < argc) {
      target_flag = std::atof(argv[++i]);
    } else if (arg == "--posterior-scale" && i + 1 < argc) {
      options.posterior_scale = std::atof(argv[++i]);
    } else if (arg == "--creep-widening" && i + 1 < argc) {
      options.creep_widening = std::atof(argv[++i]);
    } else if (arg == "--no-creep-take-off") {
      options.creep_take_off = false;
    } else if (arg == "--censored-take-off") {
      options.censored_take_off = true;  // the model the engine's samplers learn from
    } else if (arg == "--levels") {
      levels = true;
    } else if (arg == "--reliability") {
      reliability = true;
    } else if (arg == "--others-cut" && i + 1 < argc) {
      char* end = nullptr;
      others_cut = std::strtod(argv[++i], &end);
      if (end == argv[i] || *end != '\0' || !(others_cut >= 0)) {
        std::fprintf(stderr, "bench_curve_calibration: --others-cut takes a multiple >= 0\n");
        return 2;
      }
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--temperature" && i + 1 < argc) {
      options.evidence_temperature = std::atof(argv[++i]);
    } else if (arg == "--analogs" && i + 1 < argc) {
      options.analogs = std::atoi(argv[++i]);
    } else if (arg == "--analog-share" && i + 1 < argc) {
      options.analog_share = std::atof(argv[++i]);
    } else if (arg == "--cuts" && i + 1 < argc) {
      // Comma-separated shares of a curve's length, e.g. 0.75,0.95 (latency of long curves).
      cuts.clear();
      for (const char* c = argv[++i]; *c != '\0';) {
        char* end = nullptr;
        cuts.push_back(std::strtod(c, &end));
        if (end == c || !(cuts.back() > 0 && cuts.back() < 1)) {
          std::fprintf(stderr, "bench_curve_calibration: --cuts takes shares in (0, 1)\n");
          return 2;
        }
        c = *end == ',' ? end + 1 : end;
      }
    } else if (arg == "--search-view" && i + 1 < argc) {
      char* end = nullptr;
      const long epochs = std::strtol(argv[++i], &end, 10);
      search_view = end != argv[i] && *end == '\0' && epochs >= 1 && epochs <= 100000
                        ? static_cast<int>(epochs)
                        : 0;
      if (search_view < 1) {
        std::fprintf(stderr, "bench_curve_calibration: --search-view takes epochs >= 1\n");
        return 2;
      }
    } else if (arg == "--json") {
      json = true;
    } else if (!arg.empty() && arg[0] != '-') {
      tables.push_back(arg);
    } else {
      std::fprintf(
          stderr,
          "usage: bench_curve_calibration [--target X] [--levels] [--cuts A,B,...] "
          "[--reliability] [--others-cut M] [--censored-take-off] [--search-view K] [--json] "
          "TABLE.csv...\n");
      return 2;
    }
  }
  if (tables.empty()) {
    std::fprintf(stderr, "bench_curve_calibration: no table given\n");
    return 2;
  }
  if (search_view > 0) {
    return SearchView(tables, target_flag, options, search_view, others_cut < 0 ? 1 : others_cut,
                      json);
  }
  if (!json) {
    std::printf("%-28s %7s %5s %7s %9s %9s %9s %10s %9s %9s %9s\n", "table", "target", "cut",
                "curves", "MAE_ep", "med_rel", "cover80", "unreached", "p50_us", "p99_us",
                "max_us");
  }
  for (const std::string& path : tables) {
    std::vector<std::vector<double>> curves;
    std::vector<size_t> run_of;  // the configuration each curve was recorded for
    size_t configurations = 0;
    double target = 0;
    if (!LoadCurves(path, target_flag, curves, run_of, configurations, target)) return 1;
    CurveModel model(options);
    const double noise = model.EstimateNoise(curves);
    std::string name = path.substr(path.find_last_of('/') + 1);
    // The table's target, and with --levels the accuracies that 10%, 20% and 30% of the
    // configurations reach (each configuration by its worst seed's best epoch): more
    // crossings to judge the model by than the top 5% alone give.
    std::vector<double> targets = {target};
    if (levels) {
      std::vector<double> best;
      for (size_t r = 0; r < configurations; ++r) {
        double worst = 1.0;
        for (size_t ci = 0; ci < curves.size(); ++ci) {
          if (run_of[ci] == r)
            worst = std::min(worst, *std::max_element(curves[ci].begin(), curves[ci].end()));
        }
        best.push_back(worst);
      }
      std::sort(best.rbegin(), best.rend());
      for (double share : {0.10, 0.20, 0.30}) {
        const size_t k = std::max<size_t>(1, static_cast<size_t>(std::ceil(share * best.size())));
        const double level = std::floor(best[std::min(best.size(), k) - 1] * 200) / 200;
        if (level < target) targets.push_back(level);
      }
    }
    for (double cut : cuts) {
      CutStats s;
      uint64_t seed = 1;
      for (size_t pair = 0; pair < curves.size() * targets.size(); ++pair) {
        const size_t ci = pair % curves.size();
        const double target = targets[pair / curves.size()];
        const std::vector<double>& c = curves[ci];
        const int length = static_cast<int>(c.size());
        const int n = std::max(1, static_cast<int>(std::lround(cut * length)));
        if (n >= length) continue;
        int first = 0;
        for (int e = 0; e < length && first == 0; ++e) {
          if (c[static_cast<size_t>(e)] >= target) first = e + 1;
        }
        if (first != 0 && first <= n) continue;  // reached before the cut: nothing to predict
        // The other configurations' curves, whole (what a job that trained them all to the
        // end knows) or, with --others-cut, up to that multiple of this curve's epochs.
        const std::vector<std::vector<double>> others =
            OthersUpTo(curves, run_of, ci, others_cut < 0 ? INFINITY : std::round(others_cut * n));
        const std::vector<double> partial(c.begin(), c.begin() + n);
        const auto start = std::chrono::steady_clock::now();
        const EpochsToTarget p = model.Predict(partial, target, length, noise, seed++, others);
        s.micros.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                .count());
        s.outcomes.push_back({p.p_reach, first != 0});
        Fold(s.digest, p.p_reach);
        for (double sample : p.samples) Fold(s.digest, sample);
        if (first == 0) {
          ++s.unreached;
          if (p.p_reach < 0.5) ++s.unreached_judged;
          continue;
        }
        ++s.predicted;
        if (p.lo <= first && first <= p.hi) ++s.covered;
        if (verbose) {
          std::string shown;
          for (double y : c) shown += std::to_string(y).substr(0, 5) + " ";
          std::fprintf(stderr, "cut %d first %d: median %g [%g, %g] p %.2f | %s\n", n, first,
                       p.median, p.lo, p.hi, p.p_reach, shown.c_str());
        }
        if (std::isinf(p.median)) {
          ++s.never_predicted;
        } else {
          s.abs_error.push_back(std::abs(p.median - first));
          s.rel_error.push_back(std::abs(p.median - first) / first);
        }
      }
      const double coverage = s.predicted ? static_cast<double>(s.covered) / s.predicted : NAN;
      if (json) {
        std::printf(
            "{\"table\": \"%s\", \"target\": %.4f, \"targets\": %zu, \"cut\": %.2f, "
            "\"curves\": %d, "
            "\"median_abs_error_epochs\": %s, \"median_rel_error\": %s, "
            "\"coverage80\": %s, \"predicted_never\": %d, \"unreached\": %d, "
            "\"unreached_judged_unlikely\": %d, \"latency_p50_us\": %s, "
            "\"latency_p99_us\": %s, \"latency_max_us\": %s, \"noise\": %.5f, "
            "\"predictions_digest\": \"%016llx\"}\n",
            name.c_str(), target, targets.size(), cut, s.predicted,
            JsonNumber(Median(s.abs_error), 3).c_str(), JsonNumber(Median(s.rel_error), 4).c_str(),
            JsonNumber(coverage, 4).c_str(), s.never_predicted, s.unreached, s.unreached_judged,
            JsonNumber(Median(s.micros), 1).c_str(),
            JsonNumber(Quantile(s.micros, 0.99), 1).c_str(),
            JsonNumber(Quantile(s.micros, 1.0), 1).c_str(), noise,
            static_cast<unsigned long long>(s.digest));
      } else {
        char unreached[32];
        std::snprintf(unreached, sizeof(unreached), "%d/%d", s.unreached_judged, s.unreached);
        std::printf("%-28s %6.3f%s %5.2f %7d %9.2f %9.3f %9.3f %10s %9.0f %9.0f %9.0f\n",
                    name.c_str(), target, targets.size() > 1 ? "+" : " ", cut, s.predicted,
                    Median(s.abs_error), Median(s.rel_error), coverage, unreached, Median(s.micros),
                    Quantile(s.micros, 0.99), Quantile(s.micros, 1.0));
      }
      if (reliability) {
        PrintReliability(ReliabilityOf(s.outcomes), s.outcomes.size(), name, target, cut, json);
      }
    }
  }
  return 0;
}
