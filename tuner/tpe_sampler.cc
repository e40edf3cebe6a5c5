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
// The observed components share one bandwidth, so their batch-size masses depend only on
// the batch they are centred on: a table of num_batches rows, and a component keeps its
// constant terms in one number. LogDensity is then a pass over flat arrays.
class Parzen {
 public:
  Parzen(const std::vector<Point>& points, const Dims& dims, double prior_weight)
      : dims_(dims), n_(static_cast<int>(points.size())) {
    const int kernels = n_ + 1;
    // Optuna's default_weights: a ramp from 1/n to 1 over all but the 25 most recent.
    std::vector<double> weight(kernels, 1.0);
    for (int i = 0; i + 25 < n_; ++i) {
      weight[i] = n_ - 25 > 1 ? 1.0 / n_ + (1.0 - 1.0 / n_) * i / (n_ - 26.0) : 1.0 / n_;
    }
    weight[n_] = prior_weight;
    const double total = std::accumulate(weight.begin(), weight.end(), 0.0);
    const double bandwidth = std::max(0.2 * std::pow(std::max(n_, 1), -1.0 / (dims.Count() + 4)),
                                      1.0 / std::min(100.0, 1.0 + kernels));
    bandwidth_ = bandwidth;
    // Batch index k sits at k * step in [0, 1] and owns the cell of width step around it.
    const double step = dims.num_batches > 1 ? 1.0 / (dims.num_batches - 1) : 1.0;
    const double batch_range = 1.0 + step;
    auto batch_masses = [&](double b_mu, double b_sigma) {
      const double log_z =
          LogNormalMass((-0.5 * step - b_mu) / b_sigma, (1.0 + 0.5 * step - b_mu) / b_sigma);
      for (int k = 0; k < dims.num_batches; ++k) {
        const double centre = k * step;
        batch_log_mass_.push_back(LogNormalMass((centre - 0.5 * step - b_mu) / b_sigma,
                                                (centre + 0.5 * step - b_mu) / b_sigma) -
                                  log_z);
      }
    };
    for (int k = 0; k < dims.num_batches; ++k) batch_masses(k * step, bandwidth * batch_range);
    batch_masses(0.5, batch_range);  // the prior's, last

    log_weight_.resize(kernels);
    lr_mu_.resize(kernels);
    log_coefficient_.resize(n_);
    cell_.resize(n_);
    batch_.resize(n_);
    optimizer_.resize(n_);
    const double log_bandwidth = std::log(bandwidth);
    for (int i = 0; i < n_; ++i) {
      log_weight_[i] = std::log(weight[i] / total);
      lr_mu_[i] = points[i].lr;
      log_coefficient_[i] = log_weight_[i];
      if (dims.lr_varies) {
        log_coefficient_[i] += -log_bandwidth - kHalfLog2Pi -
                               LogNormalMass(-lr_mu_[i] / bandwidth, (1.0 - lr_mu_[i]) / bandwidth);
      }
      batch_[i] = points[i].batch;
      optimizer_[i] = points[i].optimizer;
      cell_[i] = points[i].batch * dims.num_optimizers + points[i].optimizer;
    }
    log_weight_[n_] = std::log(weight[n_] / total);  // the prior: mean 0.5, bandwidth 1
    cumulative_weight_.resize(n_);
    double cumulative = 0.0;
    for (int i = 0; i < n_; ++i) cumulative_weight_[i] = cumulative += weight[i] / total;
    lr_mu_[n_] = 0.5;
    prior_lr_log_z_ = LogNormalMass(-0.5, 0.5);
    // Optuna's categorical kernel: prior_weight / kernels on each choice, +1 on the observed.
    const double base = prior_weight / kernels;
    const double norm = 1.0 + base * dims.num_optimizers;
    log_hit_ = std::log((1.0 + base) / norm);
    log_miss_ = std::log(base / norm);
    log_uniform_ = -std::log(static_cast<double>(dims.num_optimizers));
  }

  double LogDensity(const Point& p) const {
    // The discrete part of an observed component's log density, by (batch, optimizer).
    std::vector<double> discrete(dims_.num_batches * dims_.num_optimizers, 0.0);
    for (int k = 0; k < dims_.num_batches; ++k) {
      for (int o = 0; o < dims_.num_optimizers; ++o) {
        double d = 0.0;
        if (dims_.num_batches > 1) d += batch_log_mass_[k * dims_.num_batches + p.batch];
        if (dims_.num_optimizers > 1) d += o == p.optimizer ? log_hit_ : log_miss_;
        discrete[k * dims_.num_optimizers + o] = d;
      }
    }
    std::vector<double> terms(n_ + 1);
    for (int i = 0; i < n_; ++i) {
      double t = log_coefficient_[i] + discrete[cell_[i]];
      if (dims_.lr_varies) {
        const double z = (p.lr - lr_mu_[i]) / bandwidth_;
        t += -0.5 * z * z;
      }
      terms[i] = t;
    }
    double prior = log_weight_[n_];  // mean 0.5, bandwidth 1
    if (dims_.num_batches > 1) {
      prior += batch_log_mass_[dims_.num_batches * dims_.num_batches + p.batch];
    }
    if (dims_.lr_varies) {
      const double z = p.lr - 0.5;
      prior += -0.5 * z * z - kHalfLog2Pi - prior_lr_log_z_;
    }
    if (dims_.num_optimizers > 1) prior += log_uniform_;
    terms[n_] = prior;
    return LogSumExp(terms);
  }

  double bandwidth() const { return bandwidth_; }

  // A draw with a batch index below allowed_batches.
  Point Sample(int allowed_batches, std::mt19937_64& rng) const {
    // The component: the first whose cumulative weight exceeds u (the prior if none does).
    const double u = Uniform01(rng);
    const int i =
        static_cast<int>(std::upper_bound(cumulative_weight_.begin(), cumulative_weight_.end(), u) -
                         cumulative_weight_.begin());
    const bool prior = i >= n_;
    Point p{0, 0.0, 0};
    if (dims_.num_batches > 1) {
      const double* log_mass =
          &batch_log_mass_[(prior ? dims_.num_batches : batch_[i]) * dims_.num_batches];
      std::vector<double> mass(allowed_batches);
      for (int k = 0; k < allowed_batches; ++k) mass[k] = std::exp(log_mass[k]);
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
      const double sigma = prior ? 1.0 : bandwidth_;
      p.lr = std::clamp(lr_mu_[i], 0.0, 1.0);
      for (int attempt = 0; attempt < 100; ++attempt) {  // truncated to [0, 1] by rejection
        const double v = lr_mu_[i] + sigma * StandardNormal(rng);
        if (v >= 0.0 && v <= 1.0) {
          p.lr = v;
          break;
        }
      }
    }
    if (dims_.num_optimizers > 1) {
      const int observed = prior ? -1 : optimizer_[i];
      const double hit = prior ? 1.0 / dims_.num_optimizers : std::exp(log_hit_);
      const double miss = prior ? hit : std::exp(log_miss_);
      double v = Uniform01(rng);
      p.optimizer = dims_.num_optimizers - 1;
      for (int o = 0; o < dims_.num_optimizers; ++o) {
        v -= o == observed ? hit : miss;
        if (v < 0) {
          p.optimizer = o;
          break;
        }
      }
    }
    return p;
  }

 private:
  Dims dims_;
  int n_;             ///< observed components; index n_ is the prior
  double bandwidth_;  ///< of the observed components' Gaussians
  // Per observed component; log_weight_ and lr_mu_ hold the prior too, last.
  std::vector<double> log_weight_;
  std::vector<double> cumulative_weight_;  ///< of the observed components, ascending
  std::vector<double> lr_mu_;
  std::vector<double> log_coefficient_;  ///< log weight - log of the lr kernel's normaliser
  std::vector<int> cell_;  ///< batch * num_optimizers + optimizer: LogDensity's table index
  std::vector<int> batch_, optimizer_;
  // Row k (k < num_batches: an observed component at batch k; num_batches: the prior):
  // the log mass of each batch index.
  std::vector<double> batch_log_mass_;
  double prior_lr_log_z_;
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
  std::vector<Point> encoded;       ///< of each observation's config
  std::deque<TrialConfig> pending;  ///< proposed, not yet observed; oldest first
  std::vector<Point> proposed;      ///< every proposal, in order
  int last_rung = -1;
};

TpeSampler::TpeSampler(SearchSpace space, uint64_t seed, TpeSamplerOptions options)
    : state_(std::make_unique<State>(std::move(space), seed, options)) {}

TpeSampler::~TpeSampler() = default;

int TpeSampler::modelled_rung() const { return state_->last_rung; }

void TpeSampler::Observe(const Observation& observation) {
  State& s = *state_;
  s.observations.push_back(observation);
  s.encoded.push_back(s.Encode(observation.config));
  ForgetPending(&s.pending, observation.config);
}

TrialConfig TpeSampler::Propose(int max_batch_size) {
  TrialConfig config = state_->Propose(max_batch_size);
  state_->proposed.push_back(state_->Encode(config));
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

  // Successful observations of the rung; the good group is the best of them (older first
  // among equals), found by selection.
  const int num_observations = static_cast<int>(observations.size());
  std::vector<int> ok;
  int failures = 0;
  for (int i = 0; i < num_observations; ++i) {
    const Observation& o = observations[i];
    if (o.kind != Observation::Kind::kOk) {
      ++failures;
    } else if (o.rung == rung && std::isfinite(o.score)) {
      ok.push_back(i);
    }
  }
  const std::vector<StoppedBelow> stopped =
      StoppedBelowRung(observations, rung, options.promote_fraction);
  const int n = static_cast<int>(ok.size() + stopped.size()) + failures;
  int num_good = std::min(static_cast<int>(std::ceil(options.gamma * n)), options.max_good);
  num_good = std::min(std::max(num_good, 1), static_cast<int>(ok.size()));
  std::nth_element(ok.begin(), ok.begin() + num_good, ok.end(), [&](int a, int b) {
    const double sa = observations[a].score, sb = observations[b].score;
    return sa > sb || (sa == sb && a < b);
  });

  // Each group in observation order (the weights favour recent points).
  enum Group : char { kNone, kGood, kBad };
  std::vector<char> group(num_observations, kNone);
  for (int i = 0; i < static_cast<int>(ok.size()); ++i) group[ok[i]] = i < num_good ? kGood : kBad;
  for (int i = 0; i < num_observations; ++i) {
    if (observations[i].kind != Observation::Kind::kOk) group[i] = kBad;
  }
  for (const StoppedBelow& s : stopped) group[s.observation] = kBad;
  std::vector<Point> good_points, bad_points;
  for (int i = 0; i < num_observations; ++i) {
    if (group[i] == kGood) good_points.push_back(encoded[i]);
    if (group[i] == kBad) bad_points.push_back(encoded[i]);
  }
  for (const TrialConfig& c : pending) bad_points.push_back(Encode(c));  // constant liar

  const Dims dims{static_cast<int>(space.batch_sizes.size()),
                  static_cast<int>(space.optimizers.size()), space.lr_max > space.lr_min};
  const Parzen l(good_points, dims, options.prior_weight);
  const Parzen g(bad_points, dims, options.prior_weight);
  int allowed = 0;  // batch sizes ascend
  while (allowed < dims.num_batches && space.batch_sizes[allowed] <= max_batch_size) ++allowed;
  allowed = std::max(allowed, 1);

  // A candidate within repeat_radius bandwidths of an earlier proposal of the same batch
  // size and optimizer repeats it: the model cannot tell the two apart, so it has no reason
  // to train it again (see the class comment).
  const double radius = options.repeat_radius * l.bandwidth();
  auto repeats = [&](const Point& p) {
    if (radius <= 0) return false;
    for (const Point& q : proposed) {
      if (q.batch == p.batch && q.optimizer == p.optimizer && std::abs(q.lr - p.lr) < radius) {
        return true;
      }
    }
    return false;
  };
  // n_ei_candidates draws, as Optuna's TPE. When the favourite repeats an earlier proposal,
  // the best fresh candidate (not a repeat, l/g >= min_fresh_ratio) replaces it, from these
  // and up to 3 x n_ei_candidates more draws until that many are fresh.
  const int wanted = std::max(1, options.n_ei_candidates);
  const double min_fresh = std::log(options.min_fresh_ratio);
  Point best{0, 0.0, 0}, best_fresh{0, 0.0, 0};
  double best_ratio = -kInf, best_fresh_ratio = -kInf;
  int fresh = 0;
  auto consider_fresh = [&](const Point& p, double ratio) {
    if (ratio < min_fresh) return;
    ++fresh;
    if (ratio > best_fresh_ratio) {
      best_fresh_ratio = ratio;
      best_fresh = p;
    }
  };
  for (int i = 0; i < wanted; ++i) {
    const Point p = l.Sample(allowed, rng);
    const double ratio = l.LogDensity(p) - g.LogDensity(p);
    if (ratio > best_ratio) {
      best_ratio = ratio;
      best = p;
    }
    if (!repeats(p)) consider_fresh(p, ratio);
  }
  if (!repeats(best)) return Decode(best);
  for (int i = 0; i < 3 * wanted && fresh < wanted; ++i) {
    const Point p = l.Sample(allowed, rng);
    if (!repeats(p)) consider_fresh(p, l.LogDensity(p) - g.LogDensity(p));
  }
  if (fresh > 0) best = best_fresh;
  return Decode(best);
}

}  // namespace topotune
