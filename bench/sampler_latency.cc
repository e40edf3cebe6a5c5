// Suggestion latency of the samplers (tuner/): how long a proposal takes once a sampler has
// learned from N completed trials.
//
//   bench_sampler_latency [--n 100,1000] [--rounds 200] [--seed 1] [--json]
//
// For GpSampler, TpeSampler and RandomSampler (and the first two as the forecast configures
// them: forecast-tpe, forecast-gp) and each N: a fresh sampler over batch size
// 16..512 (powers of two), learning rate 1e-4..1 (log) and {sgd, adam} observes N trials
// (random configurations; 10% failed, the rest scored by a smooth function of the
// configuration on the engine's scale, tuner/job_engine.cc: 2 - log10(1 + TTA) / 10 for a
// trial at the target), all at rung 0. One untimed round (Propose + Observe: the first
// proposal fits the model) is reported apart as "first"; then `rounds` timed rounds of
// Propose(512) followed by Observe of the proposal's score (so the history grows from N to
// N + rounds, and periodic refits are included). Prints p50, p90 and max of a round, in ms.
// One thread; wall clock (steady_clock).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tuner/algorithms.h"
#include "tuner/gp_sampler.h"
#include "tuner/sampler.h"
#include "tuner/tpe_sampler.h"
#include "tuner/types.h"

namespace {

using topotune::Observation;
using topotune::Optimizer;
using topotune::SearchSpace;
using topotune::TrialConfig;

SearchSpace Space() {
  SearchSpace s;
  s.batch_sizes = {16, 32, 64, 128, 256, 512};
  s.lr_min = 1e-4;
  s.lr_max = 1.0;
  s.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  return s;
}

// The spec of a forecast job over `space` with `sampler` ("tpe" or "gp").
topotune::JobSpec ForecastSpec(const SearchSpace& space, uint64_t seed,
                               const std::string& sampler) {
  topotune::JobSpec spec;
  spec.space = space;
  spec.seed = seed;
  spec.algorithm = "forecast";
  spec.forecast_sampler = sampler;
  return spec;
}

// A smooth TTA surface: best near lr 3e-3 (sgd) / 1e-3 (adam), batch 64.
Observation Score(const TrialConfig& c, std::mt19937_64& rng) {
  Observation o;
  o.config = c;
  o.rung = 0;
  const bool adam = c.optimizer == Optimizer::kAdam;
  const double dl = std::log10(c.learning_rate) - (adam ? -3.0 : -2.5);
  const double db = std::log2(static_cast<double>(c.batch_size)) - 6.0;
  std::normal_distribution<double> noise(0.0, 0.05);
  const double tta = 20.0 * std::exp(0.8 * dl * dl + 0.15 * db * db + noise(rng));
  if (tta > 200.0) {  // did not reach the target: the engine scores the accuracy
    o.score = std::max(0.0, 0.8 - 0.1 * std::log10(tta / 200.0));
  } else {
    o.score = std::max(1.01, 2.0 - std::log10(1.0 + tta) / 10.0);
  }
  return o;
}

TrialConfig RandomConfig(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> b(4, 9), opt(0, 1);
  std::uniform_real_distribution<double> l(-4.0, 0.0);
  TrialConfig c;
  c.batch_size = 1 << b(rng);
  c.learning_rate = std::pow(10.0, l(rng));
  c.optimizer = opt(rng) ? Optimizer::kAdam : Optimizer::kSgd;
  return c;
}

double Quantile(std::vector<double> xs, double q) {
  std::sort(xs.begin(), xs.end());
  const double pos = q * static_cast<double>(xs.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = static_cast<size_t>(std::ceil(pos));
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - static_cast<double>(lo));
}

struct Result {
  std::string sampler;
  int n = 0;
  int rounds = 0;
  double first_ms = 0, p50_ms = 0, p90_ms = 0, max_ms = 0;
};

Result Measure(const std::string& name,
               const std::function<std::unique_ptr<topotune::Sampler>()>& make, int n, int rounds,
               uint64_t seed) {
  using Clock = std::chrono::steady_clock;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::unique_ptr<topotune::Sampler> sampler = make();
  for (int i = 0; i < n; ++i) {
    Observation o = Score(RandomConfig(rng), rng);
    if (u(rng) < 0.1) {
      o.kind = Observation::Kind::kFailed;
      o.score = 0.0;
    }
    sampler->Observe(o);
  }
  auto round = [&] {
    const Clock::time_point t0 = Clock::now();
    const TrialConfig c = sampler->Propose(512);
    sampler->Observe(Score(c, rng));
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  Result r;
  r.sampler = name;
  r.n = n;
  r.rounds = rounds;
  r.first_ms = round();
  std::vector<double> ms;
  for (int i = 0; i < rounds; ++i) ms.push_back(round());
  r.p50_ms = Quantile(ms, 0.5);
  r.p90_ms = Quantile(ms, 0.9);
  r.max_ms = *std::max_element(ms.begin(), ms.end());
  return r;
}

void Usage() {
  std::fprintf(stderr,
               "usage: bench_sampler_latency [--n 100,1000] [--rounds 200] [--seed 1] [--json]\n"
               "  time Propose()+Observe() of the GP, TPE and random samplers after N observed "
               "trials\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> ns = {100, 1000};
  int rounds = 200;
  uint64_t seed = 1;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--n") {
      ns.clear();
      std::stringstream in(value());
      std::string item;
      while (std::getline(in, item, ',')) ns.push_back(std::atoi(item.c_str()));
    } else if (a == "--rounds") {
      rounds = std::max(1, std::atoi(value().c_str()));
    } else if (a == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--json") {
      json = true;
    } else {
      Usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  const SearchSpace space = Space();
  const std::vector<std::pair<std::string, std::function<std::unique_ptr<topotune::Sampler>()>>>
      samplers = {
          {"topotune-gp", [&] { return std::make_unique<topotune::GpSampler>(space, seed); }},
          {"topotune-tpe", [&] { return std::make_unique<topotune::TpeSampler>(space, seed); }},
          {"topotune-random",
           [&] { return std::make_unique<topotune::RandomSampler>(space, seed); }},
          // The samplers as the forecast configures them (tuner/algorithms.cc: TPE without
          // a freshness bar, the GP with a repeat radius).
          {"forecast-tpe", [&] { return topotune::MakeSampler(ForecastSpec(space, seed, "tpe")); }},
          {"forecast-gp", [&] { return topotune::MakeSampler(ForecastSpec(space, seed, "gp")); }},
      };
  if (!json) {
    std::printf("%-16s %6s %6s %10s %10s %10s %10s\n", "sampler", "N", "rounds", "first ms",
                "p50 ms", "p90 ms", "max ms");
  }
  for (int n : ns) {
    for (const auto& [name, make] : samplers) {
      const Result r = Measure(name, make, n, rounds, seed);
      if (json) {
        std::printf(
            "{\"sampler\": \"%s\", \"n\": %d, \"rounds\": %d, \"first_ms\": %.4f, "
            "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"max_ms\": %.4f}\n",
            r.sampler.c_str(), r.n, r.rounds, r.first_ms, r.p50_ms, r.p90_ms, r.max_ms);
      } else {
        std::printf("%-16s %6d %6d %10.3f %10.3f %10.3f %10.3f\n", r.sampler.c_str(), r.n, r.rounds,
                    r.first_ms, r.p50_ms, r.p90_ms, r.max_ms);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
