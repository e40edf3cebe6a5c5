#include "tuner/tpe_sampler.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "tuner/sampler_util.h"

namespace topotune {
namespace {

constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kHalfLog2Pi = 0.9189385332046727;
constexpr double kInf = std::numeric_limits<double>::infinity();

// log(Phi(b) - Phi(a)) for a <= b, from the tail where it is exact.
double LogNormalMass(double a, double b) {
  double mass;
  if (a > 0) {
    mass = 0.5 * (std::erfc(a * kInvSqrt2) - std::erfc(b * kInvSqrt2));
  } else if (b < 0) {
    mass = 0.5 * (std::erfc(-b * kInvSqrt2) - std::erfc(-a * kInvSqrt2));
  } else {
    mass = 1.0 - 0.5 * (std::erfc(-a * kInvSqrt2) + std::erfc(b * kInvSqrt2));
  }
  return std::log(std::max(mass, 1e-300));
}

double LogSumExp(const std::vector<double>& v) {
  const double top = *std::max_element(v.begin(), v.end());
  if (!std::isfinite(top)) return top;
  double sum = 0.0;
  for (double e : v) sum += std::exp(e - top);
  return top + std::log(sum);
}

// A configuration in the normalised space: batch size index, log learning rate in [0, 1],
// optimizer index.
struct Point {
  int batch;
  double lr;
  int optimizer;
};

// The shape of the normalised space.
struct Dims {
  int num_batches;
  int num_optimizers;
  bool lr_varies;
  // Dimensions that vary, at least 1.
  int Count() const {
    return std::max(1, (num_batches > 1) + (num_optimizers > 1) + static_cast<int>(lr_varies));
  }
};

// A Parzen density over the normalised space: one component per point plus a prior.
class Parzen {
 public:
  Parzen(const std::vector<Point>& points, const Dims& dims, double prior_weight) : dims_(dims) {
    const int n = static_cast<int>(points.size());
    const int kernels = n + 1;
    // Optuna's default_weights: a ramp from 1/n to 1 over all but the 25 most recent.
    std::vector<double> weight(kernels, 1.0);
    for (int i = 0; i + 25 < n; ++i) {
      weight[i] = n - 25 > 1 ? 1.0 / n + (1.0 - 1.0 / n) * i / (n - 26.0) : 1.0 / n;
    }
    weight[n] = prior_weight;
    const double total = std::accumulate(weight.begin(), weight.end(), 0.0);
    const double bandwidth = std::max(0.2 * std::pow(std::max(n, 1), -1.0 / (dims.Count() + 4)),
                                      1.0 / std::min(100.0, 1.0 + kernels));
    // Batch index k sits at k * step in [0, 1] and owns the cell of width step around it.
    step_ = dims.num_batches > 1 ? 1.0 / (dims.num_batches - 1) : 1.0;
    const double batch_range = 1.0 + step_;
    for (int i = 0; i < kernels; ++i) {
      const bool prior = i == n;
      Component c;
      c.log_weight = std::log(weight[i] / total);
      c.lr_mu = prior ? 0.5 : points[i].lr;
      c.lr_sigma = prior ? 1.0 : bandwidth;
      c.lr_log_z = LogNormalMass(-c.lr_mu / c.lr_sigma, (1.0 - c.lr_mu) / c.lr_sigma);
      c.optimizer = prior ? -1 : points[i].optimizer;
      const double b_mu = prior ? 0.5 : points[i].batch * step_;
      const double b_sigma = prior ? batch_range : bandwidth * batch_range;
      const double log_z =
          LogNormalMass((-0.5 * step_ - b_mu) / b_sigma, (1.0 + 0.5 * step_ - b_mu) / b_sigma);
      for (int k = 0; k < dims.num_batches; ++k) {
        const double centre = k * step_;
        c.batch_log_mass.push_back(LogNormalMass((centre - 0.5 * step_ - b_mu) / b_sigma,
                                                 (centre + 0.5 * step_ - b_mu) / b_sigma) -
                                   log_z);
      }
      components_.push_back(std::move(c));
    }
    // Optuna's categorical kernel: prior_weight / kernels on each choice, +1 on the observed.
    const double base = prior_weight / kernels;
    const double norm = 1.0 + base * dims.num_optimizers;
    log_hit_ = std::log((1.0 + base) / norm);
    log_miss_ = std::log(base / norm);
    log_uniform_ = -std::log(static_cast<double>(dims.num_optimizers));
  }

  double LogDensity(const Point& p) const {
    std::vector<double> terms(components_.size());
    for (size_t i = 0; i < components_.size(); ++i) terms[i] = LogComponent(components_[i], p);
    return LogSumExp(terms);
  }

  // A draw with a batch index below allowed_batches.
  Point Sample(int allowed_batches, std::mt19937_64& rng) const {
    double u = Uniform01(rng);
    size_t i = 0;
    for (; i + 1 < components_.size(); ++i) {
      u -= std::exp(components_[i].log_weight);
      if (u < 0) break;
    }
    const Component& c = components_[i];
    Point p{0, 0.0, 0};
    if (dims_.num_batches > 1) {
      std::vector<double> mass(allowed_batches);
      for (int k = 0; k < allowed_batches; ++k) mass[k] = std::exp(c.batch_log_mass[k]);
      double v = Uniform01(rng) * std::accumulate(mass.begin(), mass.end(), 0.0);
      p.batch = allowed_batches - 1;
      for (int k = 0; k < allowed_batches; ++k) {
        v -= mass[k];
        if (v < 0) {
          p.batch = k;
          break;
        }
      }
    }
    if (dims_.lr_varies) {
      p.lr = std::clamp(c.lr_mu, 0.0, 1.0);
      for (int attempt = 0; attempt < 100; ++attempt) {  // truncated to [0, 1] by rejection
        const double v = c.lr_mu + c.lr_sigma * StandardNormal(rng);
        if (v >= 0.0 && v <= 1.0) {
          p.lr = v;
          break;
        }
      }
    }
    if (dims_.num_optimizers > 1) {
      const double hit = c.optimizer < 0 ? 1.0 / dims_.num_optimizers : std::exp(log_hit_);
      const double miss = c.optimizer < 0 ? hit : std::exp(log_miss_);
      double v = Uniform01(rng);
      p.optimizer = dims_.num_optimizers - 1;
      for (int o = 0; o < dims_.num_optimizers; ++o) {
        v -= o == c.optimizer ? hit : miss;
        if (v < 0) {
          p.optimizer = o;
          break;
        }
      }
    }
    return p;
  }

 private:
  struct Component {
    double log_weight;
    double lr_mu, lr_sigma, lr_log_z;
    int optimizer;                       ///< -1: the prior (uniform)
    std::vector<double> batch_log_mass;  ///< per batch index, normalised over all of them
  };

  double LogComponent(const Component& c, const Point& p) const {
    double log_p = c.log_weight;
    if (dims_.num_batches > 1) log_p += c.batch_log_mass[p.batch];
    if (dims_.lr_varies) {
      const double z = (p.lr - c.lr_mu) / c.lr_sigma;
      log_p += -0.5 * z * z - std::log(c.lr_sigma) - kHalfLog2Pi - c.lr_log_z;
    }
    if (dims_.num_optimizers > 1) {
      log_p += c.optimizer < 0 ? log_uniform_ : p.optimizer == c.optimizer ? log_hit_ : log_miss_;
    }
    return log_p;
  }

  Dims dims_;
  double step_;
  std::vector<Component> components_;
  double log_hit_, log_miss_, log_uniform_;
};

}  // namespace

struct TpeSampler::State {
  State(SearchSpace s, uint64_t seed, TpeSamplerOptions o)
      : space(std::move(s)), options(o), startup(space, seed), rng(seed ^ 0x5A5A5A5AA5A5A5A5ULL) {}

  TrialConfig Propose(int max_batch_size);
  Point Encode(const TrialConfig& config) const;
  TrialConfig Decode(const Point& p) const;

  SearchSpace space;
  TpeSamplerOptions options;
  RandomSampler startup;
  std::mt19937_64 rng;
  std::vector<Observation> observations;
  std::deque<TrialConfig> pending;  ///< proposed, not yet observed; oldest first
  int last_rung = -1;
};

TpeSampler::TpeSampler(SearchSpace space, uint64_t seed, TpeSamplerOptions options)
    : state_(std::make_unique<State>(std::move(space), seed, options)) {}

TpeSampler::~TpeSampler() = default;

int TpeSampler::modelled_rung() const { return state_->last_rung; }

void TpeSampler::Observe(const Observation& observation) {
  State& s = *state_;
  s.observations.push_back(observation);
  ForgetPending(&s.pending, observation.config);
}

TrialConfig TpeSampler::Propose(int max_batch_size) {
  TrialConfig config = state_->Propose(max_batch_size);
  RememberPending(&state_->pending, config, state_->options.max_pending);
  return config;
}

Point TpeSampler::State::Encode(const TrialConfig& config) const {
  Point p{0, 0.0, 0};
  const double log_batch = std::log2(config.batch_size);
  for (size_t i = 1; i < space.batch_sizes.size(); ++i) {
    if (std::abs(std::log2(space.batch_sizes[i]) - log_batch) <
        std::abs(std::log2(space.batch_sizes[p.batch]) - log_batch)) {
      p.batch = static_cast<int>(i);
    }
  }
  const double span = std::log(space.lr_max) - std::log(space.lr_min);
  if (span > 0) {
    p.lr = std::clamp((std::log(config.learning_rate) - std::log(space.lr_min)) / span, 0.0, 1.0);
  }
  for (size_t i = 0; i < space.optimizers.size(); ++i) {
    if (space.optimizers[i] == config.optimizer) p.optimizer = static_cast<int>(i);
  }
  return p;
}

TrialConfig TpeSampler::State::Decode(const Point& p) const {
  TrialConfig c;
  c.batch_size = space.batch_sizes[p.batch];
  const double log_min = std::log(space.lr_min), log_max = std::log(space.lr_max);
  c.learning_rate = p.lr <= 0.0   ? space.lr_min
                    : p.lr >= 1.0 ? space.lr_max
                                  : std::exp(log_min + p.lr * (log_max - log_min));
  c.optimizer = space.optimizers[p.optimizer];
  return c;
}

TrialConfig TpeSampler::State::Propose(int max_batch_size) {
  const int min_points = std::max(
      1, options.min_points_per_rung > 0 ? options.min_points_per_rung : options.n_startup);
  const int rung = static_cast<int>(observations.size()) < options.n_startup
                       ? -1
                       : ModelledRung(observations, options.fit_rung, min_points);
  last_rung = rung;
  if (rung < 0) return startup.Propose(max_batch_size);

  // Successful observations of the rung, best first (older first among equals).
  std::vector<int> ok;
  int failures = 0;
  for (int i = 0; i < static_cast<int>(observations.size()); ++i) {
    const Observation& o = observations[i];
    if (o.kind != Observation::Kind::kOk) {
      ++failures;
    } else if (o.rung == rung && std::isfinite(o.score)) {
      ok.push_back(i);
    }
  }
  std::stable_sort(ok.begin(), ok.end(),
                   [&](int a, int b) { return observations[a].score > observations[b].score; });
  const std::vector<StoppedBelow> stopped =
      StoppedBelowRung(observations, rung, options.promote_fraction);
  const int n = static_cast<int>(ok.size() + stopped.size()) + failures;
  int num_good = std::min(static_cast<int>(std::ceil(options.gamma * n)), options.max_good);
  num_good = std::min(std::max(num_good, 1), static_cast<int>(ok.size()));

  // Each group in observation order (the weights favour recent points).
  std::vector<int> good(ok.begin(), ok.begin() + num_good);
  std::vector<int> bad(ok.begin() + num_good, ok.end());
  for (int i = 0; i < static_cast<int>(observations.size()); ++i) {
    if (observations[i].kind != Observation::Kind::kOk) bad.push_back(i);
  }
  for (const StoppedBelow& s : stopped) bad.push_back(s.observation);
  std::sort(good.begin(), good.end());
  std::sort(bad.begin(), bad.end());
  std::vector<Point> good_points, bad_points;
  for (int i : good) good_points.push_back(Encode(observations[i].config));
  for (int i : bad) bad_points.push_back(Encode(observations[i].config));
  for (const TrialConfig& c : pending) bad_points.push_back(Encode(c));  // constant liar

  const Dims dims{static_cast<int>(space.batch_sizes.size()),
                  static_cast<int>(space.optimizers.size()), space.lr_max > space.lr_min};
  const Parzen l(good_points, dims, options.prior_weight);
  const Parzen g(bad_points, dims, options.prior_weight);
  int allowed = 0;  // batch sizes ascend
  while (allowed < dims.num_batches && space.batch_sizes[allowed] <= max_batch_size) ++allowed;
  allowed = std::max(allowed, 1);

  Point best{0, 0.0, 0};
  double best_ratio = -kInf;
  for (int i = 0; i < std::max(1, options.n_ei_candidates); ++i) {
    const Point p = l.Sample(allowed, rng);
    const double ratio = l.LogDensity(p) - g.LogDensity(p);
    if (ratio > best_ratio) {
      best_ratio = ratio;
      best = p;
    }
  }
  return Decode(best);
}

}  // namespace topotune
