#include "tuner/gp_sampler.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
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

constexpr double kLog2Pi = 1.8378770664093453;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kJitter = 1e-8;  ///< added to the noise variance for a stable Cholesky
constexpr double kInf = std::numeric_limits<double>::infinity();

using Points = Eigen::Matrix<double, Eigen::Dynamic, 3>;  // one encoded config a row

// Maps configurations to the unit cube: (log2 batch, log lr, optimizer index), each
// normalised to [0, 1]; a dimension the space does not vary is 0.
class Encoding {
 public:
  explicit Encoding(const SearchSpace& space)
      : space_(space),
        log_lr_min_(std::log(space.lr_min)),
        log_lr_span_(std::log(space.lr_max) - std::log(space.lr_min)) {}

  int num_batches() const { return static_cast<int>(space_.batch_sizes.size()); }
  int num_optimizers() const { return static_cast<int>(space_.optimizers.size()); }
  // Batch sizes at most max_batch_size (they ascend); at least one.
  int AllowedBatches(int max_batch_size) const {
    int allowed = 0;
    while (allowed < num_batches() && space_.batch_sizes[allowed] <= max_batch_size) ++allowed;
    return std::max(allowed, 1);
  }
  // The space's batch size nearest `batch_size` in log2.
  int BatchIndex(int batch_size) const {
    int best = 0;
    for (int i = 1; i < num_batches(); ++i) {
      if (std::abs(std::log2(space_.batch_sizes[i]) - std::log2(batch_size)) <
          std::abs(std::log2(space_.batch_sizes[best]) - std::log2(batch_size))) {
        best = i;
      }
    }
    return best;
  }
  int OptimizerIndex(Optimizer optimizer) const {
    for (int i = 0; i < num_optimizers(); ++i) {
      if (space_.optimizers[i] == optimizer) return i;
    }
    return 0;
  }
  double Batch(int index) const { return num_batches() > 1 ? index / (num_batches() - 1.0) : 0; }
  double Lr(double learning_rate) const {
    if (!(log_lr_span_ > 0)) return 0.0;
    return std::clamp((std::log(learning_rate) - log_lr_min_) / log_lr_span_, 0.0, 1.0);
  }
  double Opt(int index) const {
    return num_optimizers() > 1 ? index / (num_optimizers() - 1.0) : 0;
  }
  Eigen::RowVector3d Encode(const TrialConfig& c) const {
    return {Batch(BatchIndex(c.batch_size)), Lr(c.learning_rate), Opt(OptimizerIndex(c.optimizer))};
  }
  TrialConfig Decode(int batch_index, double lr, int optimizer_index) const {
    TrialConfig c;
    c.batch_size = space_.batch_sizes[batch_index];
    c.learning_rate = lr <= 0.0   ? space_.lr_min
                      : lr >= 1.0 ? space_.lr_max
                                  : std::exp(log_lr_min_ + lr * log_lr_span_);
    c.optimizer = space_.optimizers[optimizer_index];
    return c;
  }
  // Whether dimension d varies in the space (a constant one has no length scale to fit).
  bool Varies(int d) const {
    return d == 0 ? num_batches() > 1 : d == 1 ? log_lr_span_ > 0 : num_optimizers() > 1;
  }

 private:
  const SearchSpace& space_;
  double log_lr_min_;
  double log_lr_span_;
};

// GP hyperparameters in log space: signal variance, three length scales, noise variance.
struct Hyper {
  Eigen::Matrix<double, 5, 1> log_theta;
  double signal() const { return std::exp(log_theta[0]); }
  double length(int d) const { return std::exp(log_theta[1 + d]); }
  double noise() const { return std::exp(log_theta[4]); }
};

// Bounds of the log hyperparameters (targets are standardised, inputs in [0, 1]).
const Eigen::Matrix<double, 5, 1> kLogLower =
    (Eigen::Matrix<double, 5, 1>() << std::log(0.05), std::log(0.03), std::log(0.03),
     std::log(0.03), std::log(1e-6))
        .finished();
const Eigen::Matrix<double, 5, 1> kLogUpper =
    (Eigen::Matrix<double, 5, 1>() << std::log(20.0), std::log(20.0), std::log(20.0),
     std::log(20.0), std::log(1.0))
        .finished();

Hyper DefaultHyper() {
  Hyper h;
  h.log_theta << 0.0, std::log(0.3), std::log(0.3), std::log(1.0), std::log(1e-3);
  return h;
}

// Matérn-5/2 ARD covariances between the rows of a and b, into *out (its storage is
// reused when the size matches: no allocation on the hot path).
void Covariance(const Points& a, const Points& b, const Hyper& h, Eigen::MatrixXd* out) {
  out->resize(a.rows(), b.rows());
  auto r = out->array();
  r.setZero();
  for (int d = 0; d < 3; ++d) {
    const double inv = 1.0 / h.length(d);
    const Eigen::ArrayXd ad = a.col(d).array() * inv;
    for (Eigen::Index j = 0; j < b.rows(); ++j) r.col(j) += (ad - b(j, d) * inv).square();
  }
  r = (5.0 * r).sqrt();  // sqrt(5) * distance
  r = h.signal() * (1.0 + r + r.square() * (1.0 / 3.0)) * (-r).exp();
}

double LogMarginalLikelihood(const Points& x, const Eigen::VectorXd& y, const Hyper& h) {
  Eigen::MatrixXd k;
  Covariance(x, x, h, &k);
  k.diagonal().array() += h.noise() + kJitter;
  const Eigen::LLT<Eigen::MatrixXd> llt(k);
  if (llt.info() != Eigen::Success) return -kInf;
  const double fit = y.dot(llt.solve(y));
  const double log_det = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  const double lml = -0.5 * (fit + log_det + x.rows() * kLog2Pi);
  return std::isfinite(lml) ? lml : -kInf;
}

// Maximises f over the box [lower, upper] by Nelder-Mead (standard coefficients,
// vertices clamped into the box) from `start`, with at most max_evals evaluations or until
// the simplex's values differ by less than `tolerance`.
// Returns the best point; *best_value receives f there.
template <typename Objective>
Eigen::VectorXd NelderMead(const Objective& f, const Eigen::VectorXd& start,
                           const Eigen::VectorXd& lower, const Eigen::VectorXd& upper, double step,
                           double tolerance, int max_evals, double* best_value) {
  const int n = static_cast<int>(start.size());
  auto clamp = [&](Eigen::VectorXd v) { return v.cwiseMax(lower).cwiseMin(upper).eval(); };
  std::vector<Eigen::VectorXd> simplex(n + 1, clamp(start));
  for (int i = 0; i < n; ++i) {
    simplex[i + 1][i] += simplex[i + 1][i] + step <= upper[i] ? step : -step;
  }
  std::vector<double> cost(n + 1);  // -f: minimised
  int evals = 0;
  auto eval = [&](const Eigen::VectorXd& v) {
    ++evals;
    return -f(v);
  };
  for (int i = 0; i <= n; ++i) cost[i] = eval(simplex[i]);
  std::vector<int> order(n + 1);
  while (evals < max_evals) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return cost[a] < cost[b]; });
    const int best = order[0], second_worst = order[n - 1], worst = order[n];
    if (std::abs(cost[worst] - cost[best]) < tolerance) break;
    Eigen::VectorXd centroid = Eigen::VectorXd::Zero(n);
    for (int i = 0; i < n; ++i) centroid += simplex[order[i]];
    centroid /= n;
    const Eigen::VectorXd reflected = clamp(centroid + (centroid - simplex[worst]));
    const double reflected_cost = eval(reflected);
    if (reflected_cost < cost[best]) {
      const Eigen::VectorXd expanded = clamp(centroid + 2.0 * (centroid - simplex[worst]));
      const double expanded_cost = eval(expanded);
      const bool expand = expanded_cost < reflected_cost;
      simplex[worst] = expand ? expanded : reflected;
      cost[worst] = expand ? expanded_cost : reflected_cost;
    } else if (reflected_cost < cost[second_worst]) {
      simplex[worst] = reflected;
      cost[worst] = reflected_cost;
    } else {
      const bool outside = reflected_cost < cost[worst];
      const Eigen::VectorXd contracted =
          clamp(centroid + 0.5 * ((outside ? reflected : simplex[worst]) - centroid));
      const double contracted_cost = eval(contracted);
      if (contracted_cost < std::min(reflected_cost, cost[worst])) {
        simplex[worst] = contracted;
        cost[worst] = contracted_cost;
      } else {
        for (int i = 1; i <= n; ++i) {
          const int v = order[i];
          simplex[v] = simplex[best] + 0.5 * (simplex[v] - simplex[best]);
          cost[v] = eval(simplex[v]);
        }
      }
    }
  }
  const int best = static_cast<int>(std::min_element(cost.begin(), cost.end()) - cost.begin());
  *best_value = -cost[best];
  return simplex[best];
}

// log E[max(f - best, 0)] for f ~ N(mean, sd^2); accurate where EI itself underflows.
double LogExpectedImprovement(double mean, double sd, double best) {
  const double z = (mean - best) / sd;
  double log_h;  // h(z) = pdf(z) + z cdf(z)
  if (z > -6.0) {
    const double h = kInvSqrt2Pi * std::exp(-0.5 * z * z) + z * 0.5 * std::erfc(-z * kInvSqrt2);
    log_h = std::log(std::max(h, 1e-300));
  } else {  // asymptotic series of the Mills ratio
    const double z2 = z * z;
    log_h = -0.5 * z2 - 0.5 * kLog2Pi - std::log(z2) + std::log1p(-3.0 / z2 + 15.0 / (z2 * z2));
  }
  return std::log(sd) + log_h;
}

// One candidate of the acquisition: the discrete coordinates it decodes from.
struct Candidate {
  int batch_index;
  double lr;
  int optimizer_index;
};

}  // namespace

struct GpSampler::State {
  State(SearchSpace s, uint64_t seed, GpSamplerOptions o)
      : space(std::move(s)),
        options(o),
        encoding(space),
        startup(space, seed),
        rng(seed ^ 0xA5A5A5A55A5A5A5AULL) {}

  // A row of the model's data: an observation with its score (imputed for failures).
  struct Row {
    int observation;  // index into observations: higher is more recent
    double score;
  };

  TrialConfig Propose(int max_batch_size);
  // Rebuilds the data of `rung` (and refits when due) and factorises.
  void Build(int rung);
  Hyper Fit(const Points& x, const Eigen::VectorXd& y);
  // Indices of rows: the best half of the budget by score, then the most recent.
  static std::vector<int> BestAndRecent(const std::vector<Row>& rows, int budget);
  std::vector<Candidate> Candidates(int allowed_batches);
  // The candidate with the largest expected improvement, and its log EI.
  std::pair<int, double> Acquire(const std::vector<Candidate>& candidates);

  SearchSpace space;
  GpSamplerOptions options;
  Encoding encoding;
  RandomSampler startup;
  std::mt19937_64 rng;
  std::vector<Observation> observations;
  std::deque<TrialConfig> pending;  ///< proposed, not yet observed; oldest first
  int last_rung = -1;

  // The model of `rung`, valid while !dirty.
  bool dirty = true;
  int rung = -1;
  Points x;
  Eigen::VectorXd y;  ///< standardised scores
  Hyper hyper = DefaultHyper();
  bool fitted = false;
  int fitted_rung = -1;
  int rows_at_fit = 0;
  Eigen::MatrixXd chol;    ///< lower Cholesky factor of K + noise I
  Eigen::VectorXd alpha;   ///< (K + noise I)^-1 y
  double incumbent = 0.0;  ///< the best posterior mean at the data

  // Pending proposals of the current Propose, and buffers reused across calls.
  double target = 0.0;  ///< EI's bar: the incumbent, or a pending proposal's mean above it
  bool use_pending = false;
  Points pending_x;
  Eigen::MatrixXd pending_b;     ///< L^-1 K(x, pending)
  Eigen::MatrixXd pending_chol;  ///< Cholesky factor of the pending rows' Schur complement
  Points candidate_x;
  Eigen::MatrixXd k_star, k_pending;
};

GpSampler::GpSampler(SearchSpace space, uint64_t seed, GpSamplerOptions options)
    : state_(std::make_unique<State>(std::move(space), seed, options)) {}

GpSampler::~GpSampler() = default;

int GpSampler::modelled_rung() const { return state_->last_rung; }

void GpSampler::Observe(const Observation& observation) {
  State& s = *state_;
  s.observations.push_back(observation);
  ForgetPending(&s.pending, observation.config);
  s.dirty = true;
}

TrialConfig GpSampler::Propose(int max_batch_size) {
  TrialConfig config = state_->Propose(max_batch_size);
  RememberPending(&state_->pending, config, state_->options.max_pending);
  return config;
}

std::vector<int> GpSampler::State::BestAndRecent(const std::vector<Row>& rows, int budget) {
  std::vector<int> all(rows.size());
  std::iota(all.begin(), all.end(), 0);
  if (static_cast<int>(rows.size()) <= budget) return all;
  std::stable_sort(all.begin(), all.end(),
                   [&](int a, int b) { return rows[a].score > rows[b].score; });
  std::vector<int> chosen(all.begin(), all.begin() + budget / 2);
  std::vector<int> rest(all.begin() + budget / 2, all.end());
  std::sort(rest.begin(), rest.end(),
            [&](int a, int b) { return rows[a].observation > rows[b].observation; });
  chosen.insert(chosen.end(), rest.begin(), rest.begin() + (budget - budget / 2));
  return chosen;
}

void GpSampler::State::Build(int model_rung) {
  // Successful observations of the rung, failures of every rung.
  std::vector<Row> rows;
  double best = -kInf, worst = kInf;
  for (int i = 0; i < static_cast<int>(observations.size()); ++i) {
    const Observation& o = observations[i];
    if (o.kind == Observation::Kind::kOk && o.rung == model_rung && std::isfinite(o.score)) {
      rows.push_back({i, o.score});
      best = std::max(best, o.score);
      worst = std::min(worst, o.score);
    }
  }
  double imputed = 0.0;
  if (!rows.empty()) {
    const double range = best - worst;
    imputed = worst - options.failure_margin * (range > 0 ? range : std::max(1.0, std::abs(worst)));
  }
  for (int i = 0; i < static_cast<int>(observations.size()); ++i) {
    if (observations[i].kind != Observation::Kind::kOk) rows.push_back({i, imputed});
  }
  // Stopped at a lower rung: below the rung's worst, by rank, and as far below the best
  // stopped one as their own rung's scores say (a run at chance sits far below a near miss).
  const double ceiling = std::isfinite(worst) ? worst : imputed;
  for (const StoppedBelow& s :
       StoppedBelowRung(observations, model_rung, options.promote_fraction)) {
    rows.push_back({s.observation, imputed + (ceiling - imputed) * s.position - s.gap});
  }
  const int num_rows = static_cast<int>(rows.size());

  const std::vector<int> chosen = BestAndRecent(rows, std::max(1, options.max_model_points));
  const int n = static_cast<int>(chosen.size());
  x.resize(n, 3);
  Eigen::VectorXd scores(n);
  std::vector<Row> model_rows;
  for (int i = 0; i < n; ++i) {
    const Row& row = rows[chosen[i]];
    x.row(i) = encoding.Encode(observations[row.observation].config);
    scores[i] = row.score;
    model_rows.push_back(row);
  }
  const double mean = scores.mean();
  const double sd = std::sqrt((scores.array() - mean).square().mean());
  y = (scores.array() - mean) / (sd > 1e-12 ? sd : 1.0);

  const int every = std::clamp(num_rows / 10, 1, std::max(1, options.refit_every));
  if (!fitted || fitted_rung != model_rung || num_rows - rows_at_fit >= every ||
      num_rows < rows_at_fit) {
    const std::vector<int> fit_rows =
        BestAndRecent(model_rows, std::max(1, options.max_fit_points));
    Points fit_x(fit_rows.size(), 3);
    Eigen::VectorXd fit_y(fit_rows.size());
    for (size_t i = 0; i < fit_rows.size(); ++i) {
      fit_x.row(i) = x.row(fit_rows[i]);
      fit_y[i] = y[fit_rows[i]];
    }
    hyper = Fit(fit_x, fit_y);
    fitted = true;
    fitted_rung = model_rung;
    rows_at_fit = num_rows;
  }

  Eigen::MatrixXd k;
  Covariance(x, x, hyper, &k);
  k.diagonal().array() += hyper.noise() + kJitter;
  Eigen::LLT<Eigen::MatrixXd> llt(k);
  for (double extra = 1e-6; llt.info() != Eigen::Success && extra < 1.0; extra *= 10) {
    k.diagonal().array() += extra;  // defensive: the noise bound keeps K positive definite
    llt.compute(k);
  }
  chol = llt.matrixL();
  alpha = llt.solve(y);
  // Posterior mean at the data: (K - added diagonal) alpha = y - added * alpha.
  incumbent = (y - (k(0, 0) - hyper.signal()) * alpha).maxCoeff();
  rung = model_rung;
  dirty = false;
}

Hyper GpSampler::State::Fit(const Points& fit_x, const Eigen::VectorXd& fit_y) {
  // Only the length scales of dimensions the space varies are free.
  std::vector<int> free = {0};
  for (int d = 0; d < 3; ++d) {
    if (encoding.Varies(d)) free.push_back(1 + d);
  }
  free.push_back(4);
  const int k = static_cast<int>(free.size());
  Eigen::VectorXd lower(k), upper(k);
  for (int i = 0; i < k; ++i) {
    lower[i] = kLogLower[free[i]];
    upper[i] = kLogUpper[free[i]];
  }
  const Hyper base = fitted ? hyper : DefaultHyper();
  auto objective = [&](const Eigen::VectorXd& v) {
    Hyper h = base;
    for (int i = 0; i < k; ++i) h.log_theta[free[i]] = v[i];
    return LogMarginalLikelihood(fit_x, fit_y, h);
  };
  // The first fit starts from the default and random points, later ones from the
  // previous optimum and the default.
  std::vector<Eigen::VectorXd> starts;
  Eigen::VectorXd start(k);
  for (int i = 0; i < k; ++i) start[i] = base.log_theta[free[i]];
  starts.push_back(start);
  if (fitted) {
    for (int i = 0; i < k; ++i) start[i] = DefaultHyper().log_theta[free[i]];
    starts.push_back(start);
  }
  while (!fitted && static_cast<int>(starts.size()) < options.fit_restarts) {
    for (int i = 0; i < k; ++i) start[i] = lower[i] + Uniform01(rng) * (upper[i] - lower[i]);
    starts.push_back(start);
  }
  double best_value = -kInf;
  Hyper best = base;
  for (const Eigen::VectorXd& s : starts) {
    double value;
    const Eigen::VectorXd v =
        NelderMead(objective, s, lower, upper, /*step=*/1.0, /*tolerance=*/1e-3,
                   /*max_evals=*/40 * k, &value);
    if (value > best_value) {
      best_value = value;
      for (int i = 0; i < k; ++i) best.log_theta[free[i]] = v[i];
    }
  }
  return best;
}

std::vector<Candidate> GpSampler::State::Candidates(int allowed_batches) {
  const int num_opt = encoding.num_optimizers();
  std::vector<Candidate> candidates;
  const int slices = allowed_batches * num_opt;
  const int per_slice = std::max(1, (options.n_candidates + slices - 1) / slices);
  for (int b = 0; b < allowed_batches; ++b) {
    for (int o = 0; o < num_opt; ++o) {
      for (int g = 0; g < per_slice; ++g) {
        candidates.push_back({b, (g + Uniform01(rng)) / per_slice, o});
      }
    }
  }
  // Perturbations of the best observations (by standardised score) of the model.
  std::vector<int> order(y.size());
  std::iota(order.begin(), order.end(), 0);
  const int num_best = std::min<int>(5, static_cast<int>(order.size()));
  std::partial_sort(order.begin(), order.begin() + num_best, order.end(),
                    [&](int a, int b) { return y[a] > y[b]; });
  const double scales[] = {0.01, 0.04, 0.15};
  for (int i = 0; i < num_best; ++i) {
    const int num_batches = encoding.num_batches();
    const int batch = static_cast<int>(std::lround(x(order[i], 0) * (num_batches - 1)));
    const int opt = static_cast<int>(std::lround(x(order[i], 2) * (num_opt - 1)));
    for (int j = 0; j < options.n_local_candidates / num_best; ++j) {
      Candidate c{batch, x(order[i], 1), opt};
      c.lr = std::clamp(c.lr + scales[j % 3] * StandardNormal(rng), 0.0, 1.0);
      const double u = Uniform01(rng);
      if (u < 0.15) c.batch_index -= 1;
      if (u > 0.85) c.batch_index += 1;
      c.batch_index = std::clamp(c.batch_index, 0, allowed_batches - 1);
      if (num_opt > 1 && Uniform01(rng) < 0.15) {
        c.optimizer_index = static_cast<int>(Uniform01(rng) * num_opt);
      }
      candidates.push_back(c);
    }
  }
  return candidates;
}

TrialConfig GpSampler::State::Propose(int max_batch_size) {
  const int min_points = std::max(
      1, options.min_points_per_rung > 0 ? options.min_points_per_rung : options.n_startup);
  const int model_rung = static_cast<int>(observations.size()) < options.n_startup
                             ? -1
                             : ModelledRung(observations, options.fit_rung, min_points);
  last_rung = model_rung;
  if (model_rung < 0) return startup.Propose(max_batch_size);
  if (Uniform01(rng) < options.random_fraction) {
    last_rung = -1;
    return startup.Propose(max_batch_size);
  }
  if (dirty || rung != model_rung) Build(model_rung);

  // Pending proposals (kriging believer): extend the Cholesky factor by their rows.
  pending_x.resize(static_cast<Eigen::Index>(pending.size()), 3);
  for (size_t i = 0; i < pending.size(); ++i) pending_x.row(i) = encoding.Encode(pending[i]);
  use_pending = pending_x.rows() > 0;
  target = incumbent;
  if (use_pending) {
    Covariance(x, pending_x, hyper, &pending_b);
    // Their fantasised results are the posterior mean: they may raise the bar.
    target = std::max(target, (pending_b.transpose() * alpha).maxCoeff());
    chol.triangularView<Eigen::Lower>().solveInPlace(pending_b);
    Eigen::MatrixXd schur;
    Covariance(pending_x, pending_x, hyper, &schur);
    schur -= pending_b.transpose() * pending_b;
    schur.diagonal().array() += hyper.noise() + kJitter;
    const Eigen::LLT<Eigen::MatrixXd> llt(schur);
    use_pending = llt.info() == Eigen::Success;
    if (use_pending) pending_chol = llt.matrixL();
    if (!use_pending) target = incumbent;
  }

  // Stage 1: the stratified and local candidates; stage 2: around the winner.
  const int allowed = encoding.AllowedBatches(max_batch_size);
  const std::vector<Candidate> candidates = Candidates(allowed);
  const auto [first, first_value] = Acquire(candidates);
  Candidate best = candidates[first];
  std::vector<Candidate> refined;
  const double scales[] = {0.002, 0.006, 0.02};
  for (int i = 0; i < options.n_refine_candidates; ++i) {
    Candidate c = best;
    c.lr = std::clamp(c.lr + scales[i % 3] * StandardNormal(rng), 0.0, 1.0);
    refined.push_back(c);
  }
  if (!refined.empty()) {
    const auto [second, second_value] = Acquire(refined);
    if (second_value > first_value) best = refined[second];
  }
  return encoding.Decode(best.batch_index, best.lr, best.optimizer_index);
}

std::pair<int, double> GpSampler::State::Acquire(const std::vector<Candidate>& candidates) {
  const int m = static_cast<int>(candidates.size());
  candidate_x.resize(m, 3);
  for (int i = 0; i < m; ++i) {
    const Candidate& c = candidates[i];
    candidate_x.row(i) << encoding.Batch(c.batch_index), c.lr, encoding.Opt(c.optimizer_index);
  }
  const double signal = hyper.signal();
  const double noise = hyper.noise() + kJitter;
  Covariance(x, candidate_x, hyper, &k_star);  // n x m
  const Eigen::VectorXd mean = k_star.transpose() * alpha;
  if (use_pending) Covariance(pending_x, candidate_x, hyper, &k_pending);

  // Upper bound of each candidate's EI: its variance given the nearest point only.
  std::vector<double> bound(m);
  for (int j = 0; j < m; ++j) {
    double nearest = k_star.col(j).maxCoeff();
    if (use_pending) nearest = std::max(nearest, k_pending.col(j).maxCoeff());
    const double var = std::max(signal - nearest * nearest / (signal + noise), 1e-12);
    bound[j] = LogExpectedImprovement(mean[j], std::sqrt(var), target);
  }
  std::vector<int> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return bound[a] > bound[b]; });

  // Exact EI in chunks, best bound first, until no bound can beat the best so far.
  constexpr int kChunk = 32;
  int best = order[0];
  double best_value = -kInf;
  Eigen::MatrixXd v, w;
  for (int start = 0; start < m && bound[order[start]] > best_value; start += kChunk) {
    const int size = std::min(kChunk, m - start);
    v.resize(x.rows(), size);
    for (int i = 0; i < size; ++i) v.col(i) = k_star.col(order[start + i]);
    chol.triangularView<Eigen::Lower>().solveInPlace(v);
    Eigen::VectorXd var = signal - v.colwise().squaredNorm().transpose().array();
    if (use_pending) {
      w.resize(pending_x.rows(), size);
      for (int i = 0; i < size; ++i) w.col(i) = k_pending.col(order[start + i]);
      w.noalias() -= pending_b.transpose() * v;
      pending_chol.triangularView<Eigen::Lower>().solveInPlace(w);
      var -= w.colwise().squaredNorm().transpose();
    }
    for (int i = 0; i < size; ++i) {
      const int j = order[start + i];
      const double value =
          LogExpectedImprovement(mean[j], std::sqrt(std::max(var[i], 1e-12)), target);
      if (value > best_value) {
        best_value = value;
        best = j;
      }
    }
  }
  return {best, best_value};
}

}  // namespace topotune
