// Latency of one learning-curve prediction (tuner/curve_model.h) as the job's epoch limit
// grows: the engine predicts every running trial's epoch at the target after each epoch,
// and a job may set max_epochs up to 10,000, so a prediction must not grow with the limit.
//
//   bench_curve_latency [--limits 100,1000,10000] [--rounds 200] [--json]
//
// Three curves, each against 40 other curves of 30 epochs (what a job's stopped trials
// leave), at each limit:
//  - "near": a curve cut at 30 epochs whose trend levels off 2.5 noise deviations below the
//    target, so that it reaches the target by noise alone, about once in 160 epochs: the
//    longest search per sample for its first epoch at the target. Timed with the default
//    model (thinning, where a trend levels off below the target; at most scan_epochs
//    steps, in blocks beyond) and beside it epoch by epoch to the limit (thin_below = 0,
//    scan_epochs = the limit: the search before the bound): their ratio is the gain,
//    measured in one run.
//  - "flat": a curve still at chance after 30 epochs, with the censored take-off estimate
//    (the sampler's model, JobEngine::observed_model_).
//  - "rising": a curve well on its way, as most predictions are.
// Prints p50, p99 and max of a prediction in µs. One thread; wall clock (steady_clock).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tuner/curve_model.h"

namespace {

using topotune::CurveModel;
using topotune::CurveModelOptions;

std::vector<double> Draw(double (*trend)(double), int epochs, double noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, noise);
  std::vector<double> curve;
  for (int e = 1; e <= epochs; ++e) curve.push_back(trend(e) + gauss(rng));
  return curve;
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

struct Row {
  std::string curve;
  std::string model;
  int limit;
  double p50, p99, max;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> limits = {100, 1000, 10000};
  int rounds = 200;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--limits" && i + 1 < argc) {
      limits.clear();
      for (const char* c = argv[++i]; *c != '\0';) {
        char* end = nullptr;
        const long v = std::strtol(c, &end, 10);
        if (end == c || v < 31 || v > 1000000) {
          std::fprintf(stderr, "bench_curve_latency: --limits takes integers in [31, 1e6]\n");
          return 2;
        }
        limits.push_back(static_cast<int>(v));
        c = *end == ',' ? end + 1 : end;
      }
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "usage: bench_curve_latency [--limits A,B,...] [--rounds N] [--json]\n");
      return 2;
    }
  }
  constexpr double kNoise = 0.003;
  constexpr double kTarget = 0.9;
  // Levels off at the target - 2.5 noise deviations; passes the target - 3 near epoch 530.
  const auto near = [](double t) { return 0.8925 - 0.8 / t; };
  const auto flat = [](double) { return 0.1; };
  const auto rising = [](double t) { return 0.95 - 0.85 * std::exp(-t / 12.0); };
  std::vector<std::vector<double>> others;
  for (int i = 0; i < 30; ++i) others.push_back(Draw(flat, 30, kNoise, 100 + i));
  for (int i = 0; i < 10; ++i) others.push_back(Draw(near, 30, kNoise, 200 + i));
  const struct {
    const char* name;
    std::vector<double> curve;
  } curves[] = {{"near", Draw(near, 30, kNoise, 1)},
                {"flat", Draw(flat, 30, kNoise, 2)},
                {"rising", Draw(rising, 20, kNoise, 3)}};

  std::vector<Row> rows;
  for (int limit : limits) {
    for (const auto& c : curves) {
      std::vector<std::pair<std::string, CurveModelOptions>> models;
      CurveModelOptions bounded;
      if (std::string(c.name) == "flat") bounded.censored_take_off = true;
      models.emplace_back(std::string(c.name) == "flat" ? "censored" : "default", bounded);
      if (std::string(c.name) == "near") {
        CurveModelOptions exact;
        exact.scan_epochs = limit;
        exact.thin_below = 0.0;
        models.emplace_back("epoch-by-epoch", exact);
      }
      for (const auto& [label, options] : models) {
        CurveModel model(options);
        std::vector<double> micros;
        for (int r = 0; r < rounds; ++r) {
          const auto start = std::chrono::steady_clock::now();
          const auto p = model.Predict(c.curve, kTarget, limit, kNoise, 1 + r, others);
          micros.push_back(
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                  .count());
          if (p.samples.empty()) return 1;
        }
        rows.push_back({c.name, label, limit, Quantile(micros, 0.5), Quantile(micros, 0.99),
                        *std::max_element(micros.begin(), micros.end())});
      }
    }
  }
  if (json) {
    std::printf("[");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf(
          "%s{\"curve\": \"%s\", \"model\": \"%s\", \"limit\": %d, \"p50_us\": %.1f, "
          "\"p99_us\": %.1f, \"max_us\": %.1f}",
          i ? ", " : "", r.curve.c_str(), r.model.c_str(), r.limit, r.p50, r.p99, r.max);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("%-8s %-16s %7s %9s %9s %9s %12s\n", "curve", "model", "limit", "p50_us", "p99_us",
              "max_us", "p50 ratio");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    // Beside the epoch-by-epoch search: its p50 over the bounded model's, same limit.
    std::string ratio;
    if (r.model == "epoch-by-epoch" && i > 0) ratio = std::to_string(r.p50 / rows[i - 1].p50);
    std::printf("%-8s %-16s %7d %9.1f %9.1f %9.1f %12s\n", r.curve.c_str(), r.model.c_str(),
                r.limit, r.p50, r.p99, r.max, ratio.c_str());
  }
  return 0;
}
