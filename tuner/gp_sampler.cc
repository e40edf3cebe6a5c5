#include "tuner/gp_sampler.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <array>
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
constexpr int kBoundPoints = 6;  ///< nearest points of the acquisition's second EI bound

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

// Coordinates times these (sqrt(5) / length scale) are at the Matérn kernel's r from each
// other.
Eigen::Array3d KernelScale(const Hyper& h) {
  return {std::sqrt(5.0) / h.length(0), std::sqrt(5.0) / h.length(1), std::sqrt(5.0) / h.length(2)};
}

// The Matérn-5/2 covariance at r = sqrt(5) * (scaled) distance.
double Matern(double r, double signal) {
  return signal * (1.0 + r + r * r * (1.0 / 3.0)) * std::exp(-r);
}

// Matérn-5/2 ARD covariances between the rows of a and b, into out (a.rows() x b.rows(),
// sized by the caller: no allocation on the hot path).
void Covariance(const Eigen::Ref<const Points>& a, const Eigen::Ref<const Points>& b,
                const Hyper& h, Eigen::Ref<Eigen::MatrixXd> out) {
  eigen_assert(out.rows() == a.rows() && out.cols() == b.rows());
  const Eigen::Array3d scale = KernelScale(h);
  const Eigen::ArrayXd a0 = a.col(0).array() * scale[0], a1 = a.col(1).array() * scale[1],
                       a2 = a.col(2).array() * scale[2];
  const double signal = h.signal();
  for (Eigen::Index j = 0; j < b.rows(); ++j) {
    auto r = out.col(j).array();
    r = ((a0 - b(j, 0) * scale[0]).square() + (a1 - b(j, 1) * scale[1]).square() +
         (a2 - b(j, 2) * scale[2]).square())
            .sqrt();
    // glibc's exp, one value at a time, beats Eigen's packet exp without AVX.
    for (Eigen::Index i = 0; i < a.rows(); ++i) r[i] = Matern(r[i], signal);
  }
}

// The lower triangle of Covariance(x, x): all that a Cholesky factorisation reads.
void LowerCovariance(const Points& x, const Hyper& h, Eigen::MatrixXd* out) {
  const Eigen::Index n = x.rows();
  out->resize(n, n);
  const Eigen::Array3d scale = KernelScale(h);
  const Eigen::ArrayXd x0 = x.col(0).array() * scale[0], x1 = x.col(1).array() * scale[1],
                       x2 = x.col(2).array() * scale[2];
  const double signal = h.signal();
  for (Eigen::Index j = 0; j < n; ++j) {
    auto r = out->col(j).tail(n - j).array();
    r = ((x0.tail(n - j) - x0[j]).square() + (x1.tail(n - j) - x1[j]).square() +
         (x2.tail(n - j) - x2[j]).square())
            .sqrt();
    for (Eigen::Index i = 0; i < n - j; ++i) r[i] = Matern(r[i], signal);
  }
}

// The covariance of two points, as Covariance computes it; scale from KernelScale.
double Kernel(const Eigen::RowVector3d& a, const Eigen::RowVector3d& b, const Eigen::Array3d& scale,
              double signal) {
  double r2 = 0.0;
  for (int d = 0; d < 3; ++d) {
    const double diff = a[d] * scale[d] - b[d] * scale[d];
    r2 += diff * diff;
  }
  return Matern(std::sqrt(r2), signal);
}

double LogMarginalLikelihood(const Points& x, const Eigen::VectorXd& y, const Hyper& h) {
  Eigen::MatrixXd k;
  LowerCovariance(x, h, &k);
  k.diagonal().array() += h.noise() + kJitter;
  const Eigen::LLT<Eigen::MatrixXd> llt(k);
  if (llt.info() != Eigen::Success) return -kInf;
  const double fit = y.dot(llt.solve(y));
  const double log_det = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
  const double lml = -0.5 * (fit + log_det + x.rows() * kLog2Pi);
  return std::isfinite(lml) ? lml : -kInf;
}

// Lower L with L L^T + w w^T in place of L L^T (the classic O(m^2) rank-one update).
void RankOneUpdate(Eigen::Ref<Eigen::MatrixXd> l, Eigen::VectorXd w) {
  const Eigen::Index m = l.rows();
  for (Eigen::Index k = 0; k < m; ++k) {
    const double diagonal = l(k, k);
    const double r = std::sqrt(diagonal * diagonal + w[k] * w[k]);
    const double c = r / diagonal, s = w[k] / diagonal;
    l(k, k) = r;
    const Eigen::Index rest = m - k - 1;
    if (rest == 0) break;
    l.col(k).tail(rest) = (l.col(k).tail(rest) + s * w.tail(rest)) / c;
    w.tail(rest) = c * w.tail(rest) - s * l.col(k).tail(rest);
  }
}

// The lower Cholesky factor L of K + d I over a set of points that changes a few at a time
// (d: the noise variance and jitter). Remove and Append keep it exact in O(n^2) each: a
// rank-one update of the rows after the removed one, a new last row; a new factorisation
// costs O(n^3).
class CholeskyFactor {
 public:
  // Factorises k + diagonal I (k's lower triangle). Adds to the diagonal while that is not
  // positive definite (defensive: the bound on the noise keeps it so).
  void Compute(Eigen::MatrixXd k, double diagonal) {
    k.diagonal().array() += diagonal;
    Eigen::LLT<Eigen::MatrixXd> llt(k);
    for (double extra = 1e-6; llt.info() != Eigen::Success && extra < 1.0; extra *= 10) {
      k.diagonal().array() += extra;
      diagonal += extra;
      llt.compute(k);
    }
    n_ = k.rows();
    Reserve(n_ + 1);
    l_.topLeftCorner(n_, n_) = llt.matrixL();
    diagonal_ = diagonal;
  }

  // Drops point r; the later points move up one place.
  void Remove(Eigen::Index r) {
    const Eigen::Index tail = n_ - r - 1;
    if (tail > 0) {
      RankOneUpdate(l_.block(r + 1, r + 1, tail, tail), l_.col(r).segment(r + 1, tail));
      for (Eigen::Index j = 0; j < r; ++j) {  // rows below r, columns before it: up one
        double* column = l_.col(j).data();
        std::copy(column + r + 1, column + n_, column + r);
      }
      for (Eigen::Index j = r + 1; j < n_; ++j) {  // the updated block: up and left one
        std::copy(l_.col(j).data() + j, l_.col(j).data() + n_, l_.col(j - 1).data() + j - 1);
      }
    }
    --n_;
  }

  // Appends a point whose covariances with the current ones are k_new and with itself
  // k_self (without the diagonal term). False, with nothing changed, where rounding would
  // break positive definiteness.
  bool Append(Eigen::VectorXd k_new, double k_self) {
    L().solveInPlace(k_new);
    // The new pivot is the posterior variance there plus d: at least d in exact arithmetic.
    const double pivot = k_self + diagonal_ - k_new.squaredNorm();
    if (!(pivot > 0.5 * diagonal_)) return false;
    Reserve(n_ + 1);
    l_.row(n_).head(n_) = k_new.transpose();
    l_(n_, n_) = std::sqrt(pivot);
    ++n_;
    return true;
  }

  Eigen::Index size() const { return n_; }
  double diagonal() const { return diagonal_; }
  Eigen::TriangularView<const Eigen::Block<const Eigen::MatrixXd>, Eigen::Lower> L() const {
    return l_.topLeftCorner(n_, n_).triangularView<Eigen::Lower>();
  }

 private:
  void Reserve(Eigen::Index capacity) {
    if (l_.rows() < capacity) l_.conservativeResize(2 * capacity, 2 * capacity);
  }

  Eigen::MatrixXd l_;  ///< capacity x capacity; L is the lower triangle of the top n_ x n_
  Eigen::Index n_ = 0;
  double diagonal_ = 0.0;
};

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

// A candidate's exact log expected improvement and posterior standard deviation.
struct Acquisition {
  int index = -1;  ///< into the candidates
  double value = -kInf;
  double sd = 0.0;
  Eigen::RowVector3d point = Eigen::RowVector3d::Zero();
};

}  // namespace

struct GpSampler::State {
  State(SearchSpace s, uint64_t seed, GpSamplerOptions o)
      : space(std::move(s)),
        options(o),
        encoding(space),
        startup(space, seed),
        rng(seed ^ 0xA5A5A5A55A5A5A5AULL),
        local_columns(std::max(0, options.n_local_candidates)) {}

  // A row of the model's data: an observation with its score (imputed for failures).
  struct Row {
    int observation;  // index into observations: higher is more recent
    double score;
  };

  // The rung a proposal models now; -1 while proposals are random.
  int ModelRung() const;
  TrialConfig Propose(int max_batch_size);
  // Rebuilds the data of `rung` (and refits when due) and conditions the GP on it.
  void Build(int rung);
  // Conditions the factor and the pool's covariances on the observations `target`: by
  // row edits where few changed and the hyperparameters did not (unless `refactor`), else
  // from scratch.
  void Condition(const std::vector<int>& target, bool refactor);
  void Refactor(const std::vector<int>& target);
  void RemoveRow(int row);
  bool AppendRow(int observation);
  // Maximises the log marginal likelihood; warm: a refit on data much like the last fit's.
  Hyper Fit(const Points& x, const Eigen::VectorXd& y, bool warm);
  // Indices of rows: the best half of the budget by score, then the most recent.
  static std::vector<int> BestAndRecent(const std::vector<Row>& rows, int budget);
  void MakePool();
  // Draws the learning rates of one (batch size, optimizer) slice of the pool afresh.
  void DrawPoolSlice(int slice);
  std::vector<Candidate> LocalCandidates(int allowed_batches);
  // What Acquire does with repeats.
  enum class Repeats {
    kKeep,               ///< weighs them as any candidate
    kLeaveOut,           ///< leaves them out (the floor if every candidate is one)
    kLeaveOutUnlessAll,  ///< leaves them out unless every candidate is one
  };
  // The candidate with the largest expected improvement above floor.value (index -1 and
  // `floor` if none). Column j of k holds candidate j's covariances with the model's points.
  // Repeats (IsRepeat) among the candidates: see `Repeats`.
  Acquisition Acquire(const std::vector<Candidate>& candidates,
                      const Eigen::Ref<const Eigen::MatrixXd>& k, const Acquisition& floor,
                      Repeats repeats);
  // An upper bound of the posterior variance of the candidate whose covariances with the
  // model's points are `k`: the variance given only the kBoundPoints nearest of them.
  double LocalVariance(const Eigen::Ref<const Eigen::VectorXd>& k) const;
  // Files the learning rates of the earlier proposals, observed or pending, by batch size
  // and optimizer, for IsRepeat (options.repeat_radius).
  void FileEarlier();
  // Whether `c` has an earlier proposal's batch size and optimizer and a learning rate
  // within options.repeat_radius of its.
  bool IsRepeat(const Candidate& c) const;
  Eigen::RowVector3d Encode(const Candidate& c) const {
    return {encoding.Batch(c.batch_index), c.lr, encoding.Opt(c.optimizer_index)};
  }

  SearchSpace space;
  GpSamplerOptions options;
  Encoding encoding;
  RandomSampler startup;
  std::mt19937_64 rng;
  std::vector<Observation> observations;
  std::vector<Eigen::RowVector3d> encoded;  ///< of each observation's config
  std::deque<TrialConfig> pending;          ///< proposed, not yet observed; oldest first
  int last_rung = -1;

  // The model of `rung`, valid while !dirty.
  bool dirty = true;
  int rung = -1;
  std::vector<int> model;  ///< the observation of each model point, in the factor's order
  Points x;                ///< the model's points, encoded
  Eigen::VectorXd y;       ///< their standardised scores
  double score_mean = 0.0, score_sd = 1.0;  ///< y = (score - score_mean) / score_sd
  Hyper hyper = DefaultHyper();
  bool fitted = false;
  int fitted_rung = -1;
  int rows_at_fit = 0;
  bool conditioned = false;  ///< factor and pool_k hold `model` under `hyper`
  int conditioned_rung = -1;
  CholeskyFactor factor;   ///< of K + noise I over x
  Eigen::VectorXd alpha;   ///< (K + noise I)^-1 y
  double incumbent = 0.0;  ///< the best posterior mean at the data

  // The stratified candidates: for each (batch size, optimizer) slice, batch outermost,
  // per_slice learning rates jittered on a grid. They persist across proposals, one slice
  // drawn afresh per proposal, so that their covariances with the model are updated a
  // point at a time with the factor instead of computed anew.
  std::vector<Candidate> pool;
  int per_slice = 0;
  int next_slice = 0;
  Points pool_x;
  // Covariances of candidates (columns) with the model's points (rows, the first x.rows()
  // used): the current proposal's local candidates in the last of the first local_columns
  // columns, then the pool.
  Eigen::MatrixXd pool_k;
  const int local_columns;

  // Pending proposals of the current Propose, and buffers reused across calls.
  double target = 0.0;  ///< EI's bar: the incumbent, or a pending proposal's mean above it
  bool use_pending = false;
  Points pending_x;
  Eigen::MatrixXd pending_b;     ///< L^-1 K(x, pending)
  Eigen::MatrixXd pending_chol;  ///< Cholesky factor of the pending rows' Schur complement
  Points candidate_x;
  Eigen::MatrixXd k_pending, k_refine;
  // FileEarlier's: the sorted learning rates of each (batch, optimizer) pair, encoded.
  std::map<std::pair<double, double>, std::vector<double>> earlier;
};

GpSampler::GpSampler(SearchSpace space, uint64_t seed, GpSamplerOptions options)
    : state_(std::make_unique<State>(std::move(space), seed, options)) {}

GpSampler::~GpSampler() = default;

int GpSampler::modelled_rung() const { return state_->last_rung; }

void GpSampler::Observe(const Observation& observation) {
  State& s = *state_;
  s.observations.push_back(observation);
  s.encoded.push_back(s.encoding.Encode(observation.config));
  ForgetPending(&s.pending, observation.config);
  s.dirty = true;
}

TrialConfig GpSampler::Propose(int max_batch_size) {
  TrialConfig config = state_->Propose(max_batch_size);
  RememberPending(&state_->pending, config, state_->options.max_pending);
  return config;
}

GpSampler::Prediction GpSampler::Predict(const TrialConfig& config) {
  State& s = *state_;
  const int model_rung = s.ModelRung();
  if (model_rung < 0) return {std::nan(""), std::nan("")};
  if (s.dirty || s.rung != model_rung) s.Build(model_rung);
  const Points point = s.encoding.Encode(config);
  Eigen::MatrixXd k(s.x.rows(), 1);
  Covariance(s.x, point, s.hyper, k);
  Eigen::VectorXd v = k.col(0);
  s.factor.L().solveInPlace(v);
  const double variance = std::max(s.hyper.signal() - v.squaredNorm(), 0.0);
  return {s.score_mean + s.score_sd * k.col(0).dot(s.alpha), s.score_sd * std::sqrt(variance)};
}

std::vector<int> GpSampler::State::BestAndRecent(const std::vector<Row>& rows, int budget) {
  std::vector<int> all(rows.size());
  std::iota(all.begin(), all.end(), 0);
  if (static_cast<int>(rows.size()) <= budget) return all;
  // Selection, then a sort of the chosen only: O(rows + budget log budget).
  const auto best_end = all.begin() + budget / 2, end = all.begin() + budget;
  auto better = [&](int a, int b) {  // by score, the earlier row first among equals
    return rows[a].score > rows[b].score || (rows[a].score == rows[b].score && a < b);
  };
  std::nth_element(all.begin(), best_end, all.end(), better);
  std::sort(all.begin(), best_end, better);
  auto newer = [&](int a, int b) { return rows[a].observation > rows[b].observation; };
  std::nth_element(best_end, end, all.end(), newer);
  std::sort(best_end, end, newer);
  all.resize(budget);
  return all;
}

int GpSampler::State::ModelRung() const {
  const int min_points = std::max(
      1, options.min_points_per_rung > 0 ? options.min_points_per_rung : options.n_startup);
  return static_cast<int>(observations.size()) < options.n_startup
             ? -1
             : ModelledRung(observations, options.fit_rung, min_points);
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
  std::vector<Row> model_rows;
  Eigen::VectorXd scores(n);
  for (int i = 0; i < n; ++i) {
    model_rows.push_back(rows[chosen[i]]);
    scores[i] = model_rows[i].score;
  }
  score_mean = scores.mean();
  const double sd = std::sqrt((scores.array() - score_mean).square().mean());
  score_sd = sd > 1e-12 ? sd : 1.0;

  const int every = std::clamp(num_rows / 10, 1, std::max(1, options.refit_every));
  const bool refit = !fitted || fitted_rung != model_rung || num_rows - rows_at_fit >= every ||
                     num_rows < rows_at_fit;
  if (refit) {
    const std::vector<int> fit_rows =
        BestAndRecent(model_rows, std::max(1, options.max_fit_points));
    Points fit_x(fit_rows.size(), 3);
    Eigen::VectorXd fit_y(fit_rows.size());
    for (size_t i = 0; i < fit_rows.size(); ++i) {
      const Row& row = model_rows[fit_rows[i]];
      fit_x.row(i) = encoded[row.observation];
      fit_y[i] = (row.score - score_mean) / score_sd;
    }
    // A full fit set changes by a quarter at most between refits: start near the optimum.
    const bool warm = fitted && fitted_rung == model_rung &&
                      static_cast<int>(fit_rows.size()) >= options.max_fit_points;
    hyper = Fit(fit_x, fit_y, warm);
    fitted = true;
    fitted_rung = model_rung;
    rows_at_fit = num_rows;
  }

  std::vector<int> target(n);
  std::vector<double> score_of(observations.size());
  for (int i = 0; i < n; ++i) {
    target[i] = model_rows[i].observation;
    score_of[target[i]] = model_rows[i].score;
  }
  Condition(target,
            refit || !conditioned || conditioned_rung != model_rung || !options.incremental);
  conditioned_rung = model_rung;

  y.resize(n);
  for (int i = 0; i < n; ++i) y[i] = (score_of[model[i]] - score_mean) / score_sd;
  alpha = y;
  factor.L().solveInPlace(alpha);
  factor.L().adjoint().solveInPlace(alpha);
  // Posterior mean at the data: (K + d I - d I) alpha = y - d alpha.
  incumbent = (y - factor.diagonal() * alpha).maxCoeff();
  rung = model_rung;
  dirty = false;
}

void GpSampler::State::Condition(const std::vector<int>& target, bool refactor) {
  if (!refactor) {
    std::vector<char> wanted(observations.size(), 0), present(observations.size(), 0);
    for (int o : target) wanted[o] = 1;
    for (int o : model) present[o] = 1;
    std::vector<int> remove, add;
    for (int r = 0; r < static_cast<int>(model.size()); ++r) {
      if (!wanted[model[r]]) remove.push_back(r);
    }
    for (int o : target) {
      if (!present[o]) add.push_back(o);
    }
    // An edit costs O(n^2) and a pool column; factorising anew O(n^3) and the whole pool.
    if (remove.size() + add.size() <= std::max<size_t>(8, target.size() / 4)) {
      for (auto r = remove.rbegin(); r != remove.rend(); ++r) RemoveRow(*r);
      bool ok = true;
      for (size_t i = 0; ok && i < add.size(); ++i) ok = AppendRow(add[i]);
      if (ok) return;
    }
  }
  Refactor(target);
}

void GpSampler::State::Refactor(const std::vector<int>& target) {
  if (pool.empty()) MakePool();
  model = target;
  const Eigen::Index n = static_cast<Eigen::Index>(model.size());
  x.resize(n, 3);
  for (Eigen::Index i = 0; i < n; ++i) x.row(i) = encoded[model[i]];
  Eigen::MatrixXd k;
  LowerCovariance(x, hyper, &k);
  factor.Compute(std::move(k), hyper.noise() + kJitter);
  const Eigen::Index columns = local_columns + static_cast<Eigen::Index>(pool.size());
  if (pool_k.cols() != columns || pool_k.rows() <= n) pool_k.resize(2 * (n + 1), columns);
  Covariance(x, pool_x, hyper, pool_k.block(0, local_columns, n, pool_x.rows()));
  conditioned = true;
}

void GpSampler::State::RemoveRow(int row) {
  const Eigen::Index n = x.rows();
  const Eigen::Index after = n - row - 1;
  factor.Remove(row);
  x.middleRows(row, after) = x.bottomRows(after).eval();
  x.conservativeResize(n - 1, Eigen::NoChange);
  for (Eigen::Index j = 0; j < pool_k.cols(); ++j) {
    double* column = pool_k.col(j).data();
    std::copy(column + row + 1, column + n, column + row);
  }
  model.erase(model.begin() + row);
}

bool GpSampler::State::AppendRow(int observation) {
  const Eigen::Index n = x.rows();
  const Points point = encoded[observation];
  Eigen::MatrixXd k(n, 1);
  Covariance(x, point, hyper, k);
  if (!factor.Append(k.col(0), hyper.signal())) return false;
  x.conservativeResize(n + 1, Eigen::NoChange);
  x.row(n) = point;
  if (pool_k.rows() <= n) pool_k.conservativeResize(2 * (n + 1), Eigen::NoChange);
  Eigen::MatrixXd row(pool_x.rows(), 1);
  Covariance(pool_x, point, hyper, row);
  pool_k.row(n).segment(local_columns, pool_x.rows()) = row.col(0).transpose();
  model.push_back(observation);
  return true;
}

Hyper GpSampler::State::Fit(const Points& fit_x, const Eigen::VectorXd& fit_y, bool warm) {
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
  // The first fit starts from the default and random points, later ones from the previous
  // optimum and the default. A warm refit (of the same rung, on a full fit set) starts from
  // the previous optimum with a smaller simplex and budget, and from the default as well
  // only where that explains the data better.
  struct Start {
    Eigen::VectorXd point;
    double step;
    int max_evals;
  };
  std::vector<Start> starts;
  Eigen::VectorXd previous(k), fallback(k);
  for (int i = 0; i < k; ++i) {
    previous[i] = base.log_theta[free[i]];
    fallback[i] = DefaultHyper().log_theta[free[i]];
  }
  if (!fitted || !warm) {
    starts.push_back({previous, 1.0, 40 * k});
    if (fitted) starts.push_back({fallback, 1.0, 40 * k});
  } else {
    starts.push_back({previous, 0.5, 20 * k});
    if (objective(fallback) > objective(previous)) starts.push_back({fallback, 1.0, 40 * k});
  }
  while (!fitted && static_cast<int>(starts.size()) < options.fit_restarts) {
    Eigen::VectorXd start(k);
    for (int i = 0; i < k; ++i) start[i] = lower[i] + Uniform01(rng) * (upper[i] - lower[i]);
    starts.push_back({start, 1.0, 40 * k});
  }
  double best_value = -kInf;
  Hyper best = base;
  for (const Start& s : starts) {
    double value;
    const Eigen::VectorXd v = NelderMead(objective, s.point, lower, upper, s.step,
                                         /*tolerance=*/1e-3, s.max_evals, &value);
    if (value > best_value) {
      best_value = value;
      for (int i = 0; i < k; ++i) best.log_theta[free[i]] = v[i];
    }
  }
  return best;
}

void GpSampler::State::MakePool() {
  const int slices = encoding.num_batches() * encoding.num_optimizers();
  per_slice = std::max(1, (options.n_candidates + slices - 1) / slices);
  pool.clear();
  for (int b = 0; b < encoding.num_batches(); ++b) {
    for (int o = 0; o < encoding.num_optimizers(); ++o) {
      for (int g = 0; g < per_slice; ++g) pool.push_back({b, 0.0, o});
    }
  }
  pool_x.resize(static_cast<Eigen::Index>(pool.size()), 3);
  for (int slice = 0; slice < slices; ++slice) DrawPoolSlice(slice);
}

void GpSampler::State::DrawPoolSlice(int slice) {
  const int first = slice * per_slice;
  for (int g = 0; g < per_slice; ++g) {
    Candidate& c = pool[first + g];
    c.lr = (g + Uniform01(rng)) / per_slice;
    pool_x.row(first + g) = Encode(c);
  }
  if (conditioned) {
    Covariance(x, pool_x.middleRows(first, per_slice), hyper,
               pool_k.block(0, local_columns + first, x.rows(), per_slice));
  }
}

std::vector<Candidate> GpSampler::State::LocalCandidates(int allowed_batches) {
  const int num_opt = encoding.num_optimizers();
  std::vector<Candidate> candidates;
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
  const int model_rung = ModelRung();
  last_rung = model_rung;
  if (model_rung < 0) return startup.Propose(max_batch_size);
  if (Uniform01(rng) < options.random_fraction) {
    last_rung = -1;
    return startup.Propose(max_batch_size);
  }
  if (dirty || rung != model_rung) Build(model_rung);
  if (options.repeat_radius > 0) FileEarlier();
  const int slices = static_cast<int>(pool.size()) / per_slice;
  DrawPoolSlice(next_slice);
  next_slice = (next_slice + 1) % slices;

  // Pending proposals (kriging believer): extend the Cholesky factor by their rows.
  const Eigen::Index n = x.rows();
  pending_x.resize(static_cast<Eigen::Index>(pending.size()), 3);
  for (size_t i = 0; i < pending.size(); ++i) pending_x.row(i) = encoding.Encode(pending[i]);
  use_pending = pending_x.rows() > 0;
  target = incumbent;
  if (use_pending) {
    pending_b.resize(n, pending_x.rows());
    Covariance(x, pending_x, hyper, pending_b);
    // Their fantasised results are the posterior mean: they may raise the bar.
    target = std::max(target, (pending_b.transpose() * alpha).maxCoeff());
    factor.L().solveInPlace(pending_b);
    Eigen::MatrixXd schur(pending_x.rows(), pending_x.rows());
    Covariance(pending_x, pending_x, hyper, schur);
    schur -= pending_b.transpose() * pending_b;
    schur.diagonal().array() += hyper.noise() + kJitter;
    const Eigen::LLT<Eigen::MatrixXd> llt(schur);
    use_pending = llt.info() == Eigen::Success;
    if (use_pending) pending_chol = llt.matrixL();
    if (!use_pending) target = incumbent;
  }

  // Stage 1: the pool's candidates of allowed batch sizes (a prefix: batch is outermost)
  // and perturbations of the best observations, whose covariances go in the columns just
  // before the pool's; stage 2: around the winner.
  const int allowed = encoding.AllowedBatches(max_batch_size);
  std::vector<Candidate> candidates = LocalCandidates(allowed);
  const int num_local = static_cast<int>(candidates.size());
  candidate_x.resize(num_local, 3);
  for (int i = 0; i < num_local; ++i) candidate_x.row(i) = Encode(candidates[i]);
  Covariance(x, candidate_x, hyper, pool_k.block(0, local_columns - num_local, n, num_local));
  candidates.insert(candidates.end(), pool.begin(),
                    pool.begin() + allowed * encoding.num_optimizers() * per_slice);
  const bool leave_out_repeats = options.repeat_radius > 0;
  const Acquisition first = Acquire(
      candidates,
      pool_k.block(0, local_columns - num_local, n, static_cast<Eigen::Index>(candidates.size())),
      Acquisition(), leave_out_repeats ? Repeats::kLeaveOutUnlessAll : Repeats::kKeep);
  Candidate best = candidates[first.index];
  // A repeat won only if every candidate was one: then so may the refinement.
  const Repeats refine_repeats =
      leave_out_repeats && !IsRepeat(best) ? Repeats::kLeaveOut : Repeats::kKeep;
  std::vector<Candidate> refined;
  const double scales[] = {0.002, 0.006, 0.02};
  for (int i = 0; i < options.n_refine_candidates; ++i) {
    Candidate c = best;
    c.lr = std::clamp(c.lr + scales[i % 3] * StandardNormal(rng), 0.0, 1.0);
    refined.push_back(c);
  }
  if (!refined.empty()) {
    candidate_x.resize(static_cast<Eigen::Index>(refined.size()), 3);
    for (size_t i = 0; i < refined.size(); ++i) candidate_x.row(i) = Encode(refined[i]);
    k_refine.resize(n, candidate_x.rows());
    Covariance(x, candidate_x, hyper, k_refine);
    const int second = Acquire(refined, k_refine, /*floor=*/first, refine_repeats).index;
    if (second >= 0) best = refined[second];
  }
  return encoding.Decode(best.batch_index, best.lr, best.optimizer_index);
}

void GpSampler::State::FileEarlier() {
  earlier.clear();
  const auto file = [&](const Eigen::RowVector3d& e) { earlier[{e(0), e(2)}].push_back(e(1)); };
  for (const Eigen::RowVector3d& e : encoded) file(e);
  for (const TrialConfig& c : pending) file(encoding.Encode(c));
  for (auto& [key, lrs] : earlier) std::sort(lrs.begin(), lrs.end());
}

bool GpSampler::State::IsRepeat(const Candidate& c) const {
  const Eigen::RowVector3d e = Encode(c);
  const auto found = earlier.find({e(0), e(2)});
  if (found == earlier.end()) return false;
  const std::vector<double>& lrs = found->second;
  const auto next = std::lower_bound(lrs.begin(), lrs.end(), e(1));
  return (next != lrs.end() && *next - e(1) < options.repeat_radius) ||
         (next != lrs.begin() && e(1) - *(next - 1) < options.repeat_radius);
}

double GpSampler::State::LocalVariance(const Eigen::Ref<const Eigen::VectorXd>& k) const {
  // The largest covariances, largest first, and their points.
  const int count = static_cast<int>(std::min<Eigen::Index>(kBoundPoints, k.size()));
  std::array<Eigen::Index, kBoundPoints> index{};
  std::array<double, kBoundPoints> value{};
  int found = 0;
  for (Eigen::Index i = 0; i < k.size(); ++i) {
    if (found == count && k[i] <= value[count - 1]) continue;
    int at = found < count ? found++ : count - 1;
    for (; at > 0 && value[at - 1] < k[i]; --at) {
      value[at] = value[at - 1];
      index[at] = index[at - 1];
    }
    value[at] = k[i];
    index[at] = i;
  }
  using Small =
      Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kBoundPoints, kBoundPoints>;
  const Eigen::Array3d scale = KernelScale(hyper);
  Small near(count, count);
  for (int a = 0; a < count; ++a) {
    for (int b = 0; b <= a; ++b) {
      near(a, b) = Kernel(x.row(index[a]), x.row(index[b]), scale, hyper.signal());
    }
    near(a, a) += factor.diagonal();
  }
  const Eigen::LLT<Small> llt(near);
  if (llt.info() != Eigen::Success) return kInf;
  Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kBoundPoints, 1> v =
      Eigen::Map<const Eigen::VectorXd>(value.data(), count);
  llt.matrixL().solveInPlace(v);
  return hyper.signal() - v.squaredNorm();
}

Acquisition GpSampler::State::Acquire(const std::vector<Candidate>& candidates,
                                      const Eigen::Ref<const Eigen::MatrixXd>& k,
                                      const Acquisition& floor, Repeats repeats) {
  const int m = static_cast<int>(candidates.size());
  const double signal = hyper.signal();
  const double noise = factor.diagonal();
  const Eigen::Array3d scale = KernelScale(hyper);
  const Eigen::VectorXd mean = k.transpose() * alpha;
  Eigen::VectorXd nearest = k.colwise().maxCoeff().transpose();
  if (use_pending) {
    candidate_x.resize(m, 3);
    for (int i = 0; i < m; ++i) candidate_x.row(i) = Encode(candidates[i]);
    k_pending.resize(m, pending_x.rows());
    Covariance(candidate_x, pending_x, hyper, k_pending);
    nearest = nearest.cwiseMax(k_pending.rowwise().maxCoeff());
  }

  // Upper bounds of each candidate's EI from upper bounds of its variance: the variance
  // given fewer points is larger. First, given the nearest point only, for all; then, for
  // those that can still beat the best exact EI so far, given the kBoundPoints nearest
  // model points; then the exact O(n^2) variance in chunks, for those that still can.
  std::vector<char> left_out(m, 0);
  if (repeats != Repeats::kKeep) {
    int fresh = m;
    for (int j = 0; j < m; ++j) {
      left_out[j] = IsRepeat(candidates[j]);
      fresh -= left_out[j];
    }
    if (fresh == 0 && repeats == Repeats::kLeaveOutUnlessAll) left_out.assign(m, 0);
  }
  std::vector<double> bound(m), variance(m);
  for (int j = 0; j < m; ++j) {
    variance[j] = std::max(signal - nearest[j] * nearest[j] / (signal + noise), 1e-12);
    bound[j] =
        left_out[j] ? -kInf : LogExpectedImprovement(mean[j], std::sqrt(variance[j]), target);
  }
  std::vector<int> order(m);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return bound[a] > bound[b]; });

  constexpr int kChunk = 4;
  Acquisition best = floor;
  best.index = floor.value > -kInf ? -1 : order[0];
  std::vector<int> chunk;
  Eigen::MatrixXd v, w;
  auto evaluate = [&] {  // the exact EI of the chunk's candidates that can still win
    chunk.erase(
        std::remove_if(chunk.begin(), chunk.end(), [&](int j) { return !(bound[j] > best.value); }),
        chunk.end());
    const int size = static_cast<int>(chunk.size());
    if (size == 0) return;
    v.resize(x.rows(), size);
    for (int i = 0; i < size; ++i) v.col(i) = k.col(chunk[i]);
    factor.L().solveInPlace(v);
    Eigen::VectorXd var = signal - v.colwise().squaredNorm().transpose().array();
    if (use_pending) {
      w.resize(pending_x.rows(), size);
      for (int i = 0; i < size; ++i) w.col(i) = k_pending.row(chunk[i]).transpose();
      w.noalias() -= pending_b.transpose() * v;
      pending_chol.triangularView<Eigen::Lower>().solveInPlace(w);
      var -= w.colwise().squaredNorm().transpose();
    }
    for (int i = 0; i < size; ++i) {
      const int j = chunk[i];
      const double sd = std::sqrt(std::max(var[i], 1e-12));
      const double value = LogExpectedImprovement(mean[j], sd, target);
      if (value > best.value) best = {j, value, sd, Encode(candidates[j])};
    }
    chunk.clear();
  };
  for (int i = 0; i < m && bound[order[i]] > best.value; ++i) {
    const int j = order[i];
    double var = variance[j];
    if (best.value > -kInf) {
      // The posterior sd is 1-Lipschitz in the prior's metric: sd(c) <= sd(b) +
      // sqrt(Var(f(c) - f(b))), and conditioning only shrinks that variance.
      const double gap = 2.0 * (signal - Kernel(Encode(candidates[j]), best.point, scale, signal));
      var = std::min(var, std::pow(best.sd + std::sqrt(std::max(gap, 0.0)), 2));
    }
    if (LogExpectedImprovement(mean[j], std::sqrt(std::max(var, 1e-12)), target) > best.value) {
      var = std::min(var, LocalVariance(k.col(j)));
    }
    bound[j] = LogExpectedImprovement(mean[j], std::sqrt(std::max(var, 1e-12)), target);
    if (bound[j] > best.value) chunk.push_back(j);
    if (static_cast<int>(chunk.size()) == kChunk) evaluate();
  }
  evaluate();
  return best;
}

}  // namespace topotune
