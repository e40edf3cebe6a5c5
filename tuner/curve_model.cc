#include "tuner/curve_model.h"

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <random>

namespace topotune {
namespace {

constexpr int kMaxParams = 4;
constexpr int kAsymptoteLevels = 6;  // profile fits per family (see Predict)
constexpr int kMaxBins = 32;         // a long curve is fitted on at most this many averaged points
using Params = std::array<double, kMaxParams>;
using CurveRefs = std::vector<const std::vector<double>*>;
// A family's decoded parameters p[0 .. num_params), and two slots for what they save
// recomputing: log m (log-logistic), and Sigmoid(u[1]) = b / a (the two four-parameter
// families), the same at every point where their gradients need it.
constexpr int kLogM = kMaxParams;
constexpr int kFloorShare = kMaxParams + 1;
using Decoded = std::array<double, kFloorShare + 1>;

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double Logit(double p) {
  p = std::clamp(p, 1e-6, 1.0 - 1e-6);
  return std::log(p / (1.0 - p));
}

// A saturating family of curves y(t), t >= 1 in epochs. Parameters are fitted in an
// unconstrained space u; Decode maps u to the family's parameters p, which keep the curve
// increasing towards an asymptote in (0, 1). Values and gradients take log t beside t:
// powers of t are exponentials of it, cheaper than pow (a prediction evaluates tens of
// thousands of them).
enum class Shape { kPow3, kExp3, kLogLogistic, kJanoschek };
struct Family {
  Shape shape;
  const char* name;
  int num_params;
  void (*decode)(const double* u, double* p);
  double (*value)(double t, double log_t, const double* p);
  // The least t >= 1 at which the curve reaches y (kNever if it never does).
  double (*reaches)(double y, const double* p);
};

// Each family's Gradient...(t, log t, p, g) puts d value / d u at t into g[0 .. num_params),
// given u's decoded parameters p, and returns the value (which shares its exponentials),
// computed as the family's value function computes it, so that the curve fitted and the
// curve sampled are one function. A fit calls them as template arguments (DataRows), not
// through Family.

// pow3: a - b t^-c. Its decoding (a in (0, 1), b and c > 0) serves exp3 too.
void DecodePow3(const double* u, double* p) {
  p[0] = Sigmoid(u[0]);
  p[1] = std::exp(u[1]);
  p[2] = std::exp(u[2]);
}
double Pow3(double, double log_t, const double* p) { return p[0] - p[1] * std::exp(-p[2] * log_t); }
double GradientPow3(double, double log_t, const double* p, double* g) {
  const double power = p[1] * std::exp(-p[2] * log_t);
  g[0] = p[0] * (1 - p[0]);
  g[1] = -power;
  g[2] = power * log_t * p[2];
  return p[0] - power;
}
double ReachesPow3(double y, const double* p) {
  if (y >= p[0]) return EpochsToTarget::kNever;
  return std::max(1.0, std::pow(p[1] / (p[0] - y), 1.0 / p[2]));
}

// exp3: a - b e^(-c t).
double Exp3(double t, double, const double* p) { return p[0] - p[1] * std::exp(-p[2] * t); }
double GradientExp3(double t, double, const double* p, double* g) {
  const double decay = p[1] * std::exp(-p[2] * t);
  g[0] = p[0] * (1 - p[0]);
  g[1] = -decay;
  g[2] = decay * t * p[2];
  return p[0] - decay;
}
double ReachesExp3(double y, const double* p) {
  if (y >= p[0]) return EpochsToTarget::kNever;
  return std::max(1.0, std::log(p[1] / (p[0] - y)) / p[2]);
}

// log-logistic ("log power" in Domhan et al., with a floor): b + (a - b) / (1 + (t / m)^-c),
// a sigmoid in log t from b (chance) towards a: flat, then a rise around epoch m. The slow
// starter's shape.
void DecodeLogLogistic(const double* u, double* p) {
  p[0] = Sigmoid(u[0]);
  p[kFloorShare] = Sigmoid(u[1]);
  p[1] = p[0] * p[kFloorShare];
  p[2] = std::exp(u[2]);
  p[3] = std::exp(u[3]);
  p[kLogM] = u[2];
}
double LogLogistic(double, double log_t, const double* p) {
  return p[1] + (p[0] - p[1]) / (1.0 + std::exp(p[3] * (p[kLogM] - log_t)));  // (t / m)^-c
}
double GradientLogLogistic(double, double log_t, const double* p, double* g) {
  const double s1 = p[kFloorShare];
  const double r = std::exp(p[3] * (p[kLogM] - log_t));  // (t / m)^-c
  const double rise = 1.0 / (1.0 + r);
  const double span = p[0] - p[1];
  g[0] = (s1 + (1 - s1) * rise) * p[0] * (1 - p[0]);
  g[1] = p[0] * s1 * (1 - s1) * (1 - rise);
  g[2] = -span * rise * rise * r * p[3];
  g[3] = -span * rise * rise * r * (p[kLogM] - log_t) * p[3];
  return p[1] + span / (1.0 + r);  // as LogLogistic computes it
}
double ReachesLogLogistic(double y, const double* p) {
  if (y >= p[0]) return EpochsToTarget::kNever;
  if (y <= p[1]) return 1.0;
  return std::max(1.0, p[2] * std::pow((p[0] - p[1]) / (y - p[1]) - 1.0, -1.0 / p[3]));
}

// Janoschek: a - (a - b) e^(-k t^d), from b towards a; sigmoid in t for d > 1.
void DecodeJanoschek(const double* u, double* p) {
  p[0] = Sigmoid(u[0]);
  p[kFloorShare] = Sigmoid(u[1]);
  p[1] = p[0] * p[kFloorShare];
  p[2] = std::exp(u[2]);
  p[3] = std::exp(u[3]);
}
double Janoschek(double, double log_t, const double* p) {
  return p[0] - (p[0] - p[1]) * std::exp(-p[2] * std::exp(p[3] * log_t));
}
double GradientJanoschek(double, double log_t, const double* p, double* g) {
  const double s1 = p[kFloorShare];
  const double td = std::exp(p[3] * log_t);
  const double h = std::exp(-p[2] * td);
  const double span = p[0] - p[1];
  g[0] = (1 - (1 - s1) * h) * p[0] * (1 - p[0]);
  g[1] = p[0] * s1 * (1 - s1) * h;
  g[2] = span * td * h * p[2];
  g[3] = span * p[2] * td * log_t * h * p[3];
  return p[0] - span * h;
}
double ReachesJanoschek(double y, const double* p) {
  if (y >= p[0]) return EpochsToTarget::kNever;
  if (y <= p[1]) return 1.0;
  return std::max(1.0, std::pow(std::log((p[0] - p[1]) / (p[0] - y)) / p[2], 1.0 / p[3]));
}

constexpr Family kFamilies[] = {
    {Shape::kPow3, "pow3", 3, DecodePow3, Pow3, ReachesPow3},
    {Shape::kExp3, "exp3", 3, DecodePow3, Exp3, ReachesExp3},
    {Shape::kLogLogistic, "log-logistic", 4, DecodeLogLogistic, LogLogistic, ReachesLogLogistic},
    {Shape::kJanoschek, "janoschek", 4, DecodeJanoschek, Janoschek, ReachesJanoschek},
};

// The curve as fitted: the first kExactEpochs epochs as they are, then the means of
// consecutive epochs, at most kMaxBins of them, each weighted by how many epochs it averages
// (the noise of a mean of c epochs is sigma^2 / c). Early epochs, where the curve bends
// most, are never averaged: a mean over a bend is not the curve at the mean epoch.
struct Points {
  std::vector<double> t, log_t, y, weight;
};

constexpr int kExactEpochs = 16;

// Eigen's matrices sized at most to a fit (points, prior rows and parameters): on the
// stack, as a prediction runs a few dozen fits of a few dozen iterations.
constexpr int kMaxPoints = kExactEpochs + kMaxBins;
constexpr int kMaxRows = kMaxPoints + kMaxParams;
using Residual = Eigen::Matrix<double, Eigen::Dynamic, 1, Eigen::ColMajor, kMaxRows, 1>;
using Jacobian =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor, kMaxRows, kMaxParams>;
using Square =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor, kMaxParams, kMaxParams>;
using Vector = Eigen::Matrix<double, Eigen::Dynamic, 1, Eigen::ColMajor, kMaxParams, 1>;

Points Bin(const std::vector<double>& curve) {
  Points points;
  const int n = static_cast<int>(curve.size());
  const int exact = n <= kExactEpochs + kMaxBins ? n : kExactEpochs;
  for (int i = 0; i < exact; ++i) {
    points.t.push_back(i + 1);
    points.y.push_back(curve[static_cast<size_t>(i)]);
    points.weight.push_back(1);
  }
  const int per_bin = std::max(1, (n - exact + kMaxBins - 1) / kMaxBins);
  for (int start = exact; start < n; start += per_bin) {
    const int end = std::min(n, start + per_bin);
    double t = 0, y = 0;
    for (int i = start; i < end; ++i) {
      t += i + 1;
      y += curve[static_cast<size_t>(i)];
    }
    points.t.push_back(t / (end - start));
    points.y.push_back(y / (end - start));
    points.weight.push_back(end - start);
  }
  for (double t : points.t) points.log_t.push_back(std::log(t));
  return points;
}

// Starting points in u space for a curve whose last accuracy is `last`, whose first is
// `first`, and which has `n` epochs.
std::vector<Params> Starts(const Family& f, double first, double last, int n) {
  // Two starts: an asymptote just above the best epoch so far with a fast approach, and
  // one well above it with a slow approach (a curve that is still far from its plateau).
  std::vector<Params> starts;
  for (int slow = 0; slow < 2; ++slow) {
    const double a = std::min(0.995, std::max(last, first) + (slow ? 0.25 : 0.05));
    const double drop = std::max(0.02, a - first);
    const double floor = Logit(std::clamp(first / a, 0.01, 0.99));
    switch (f.shape) {
      case Shape::kJanoschek:
        starts.push_back({Logit(a), floor, std::log(slow ? 0.02 : 0.3), 0.0});
        break;
      case Shape::kLogLogistic:
        starts.push_back(
            {Logit(a), floor, std::log(std::max(1.0, slow ? 2.0 * n : 0.5 * n)), std::log(2.0)});
        break;
      case Shape::kExp3: {
        const double c = (slow ? 0.3 : 3.0) / std::max(1, n);
        starts.push_back({Logit(a), std::log(drop * std::exp(c)), std::log(c), 0.0});
        break;
      }
      case Shape::kPow3:
        starts.push_back({Logit(a), std::log(drop), std::log(slow ? 0.5 : 1.5), 0.0});
        break;
    }
  }
  return starts;
}

// A fitted family: its u at the optimum, the Cholesky factor of the Laplace covariance of u,
// and its log evidence (weighted log likelihood less a BIC penalty).
struct Fit {
  const Family* family = nullptr;
  Params u{};
  Square chol;
  double log_evidence = -1e300;
  bool ok = false;
};

constexpr double kPriorPrecision = 0.05;  // a weak Gaussian prior on u around the start
constexpr double kPinPrecision = 1e8;     // holds the asymptote where a profile fit puts it

// A family's number of parameters, from kFamilies: at compile time, for DataRows.
constexpr int ParamsOf(Shape shape) {
  for (const Family& f : kFamilies) {
    if (f.shape == shape) return f.num_params;
  }
  return 0;
}

// Each point's weight in the least squares: sqrt(its epochs) / sigma.
using PointScales = std::array<double, kMaxPoints>;

// The data rows of Residuals for a family of k parameters whose gradient is Gradient: a
// template argument, so that the call at every point of every step is direct and can be
// inlined (a function pointer cost about a tenth of a prediction's instructions).
template <int k, double (*Gradient)(double, double, const double*, double*)>
void DataRows(const Points& pts, const PointScales& scale, const Decoded& p, Residual& r,
              Jacobian& jacobian) {
  const int m = static_cast<int>(pts.t.size());
  double g[kMaxParams];
  for (int i = 0; i < m; ++i) {
    r(i) = (pts.y[i] - Gradient(pts.t[i], pts.log_t[i], p.data(), g)) * scale[i];
    for (int j = 0; j < k; ++j) jacobian(i, j) = -g[j] * scale[i];
  }
}

// The weighted residuals and their Jacobian in u, plus the prior's rows, at u.
void Residuals(const Family& f, const Points& pts, const PointScales& scale, const Params& u,
               const Params& prior, bool pin_asymptote, Residual& r, Jacobian& jacobian) {
  const int k = f.num_params;
  const int m = static_cast<int>(pts.t.size());
  r.resize(m + k);
  jacobian.resize(m + k, k);
  Decoded p{};
  f.decode(u.data(), p.data());
  assert(m <= kMaxPoints);
  switch (f.shape) {
    case Shape::kPow3:
      DataRows<ParamsOf(Shape::kPow3), GradientPow3>(pts, scale, p, r, jacobian);
      break;
    case Shape::kExp3:
      DataRows<ParamsOf(Shape::kExp3), GradientExp3>(pts, scale, p, r, jacobian);
      break;
    case Shape::kLogLogistic:
      DataRows<ParamsOf(Shape::kLogLogistic), GradientLogLogistic>(pts, scale, p, r, jacobian);
      break;
    case Shape::kJanoschek:
      DataRows<ParamsOf(Shape::kJanoschek), GradientJanoschek>(pts, scale, p, r, jacobian);
      break;
  }
  jacobian.bottomRows(k).setZero();
  for (int j = 0; j < k; ++j) {
    const double prior_scale = std::sqrt(j == 0 && pin_asymptote ? kPinPrecision : kPriorPrecision);
    r(m + j) = (u[j] - prior[j]) * prior_scale;
    jacobian(m + j, j) = prior_scale;
  }
}

// J^T J and J^T r, by explicit sums: with at most kMaxParams columns, Eigen's general
// matrix product (packing, blocking) costs more than the arithmetic. One pass over the
// rows, each entry of the two its own running sum (k(k + 1) / 2 + k of them, independent,
// so that they do not wait on one another), each summed in row order, as the loop per
// entry that came before summed it: the same rounding.
template <int k>
void NormalEquationsOf(const Jacobian& jacobian, const Residual& r, Square& jtj, Vector& jtr) {
  const int rows = static_cast<int>(jacobian.rows());
  double gram[k][k] = {};
  double along[k] = {};
  for (int i = 0; i < rows; ++i) {
    double row[k];
    for (int a = 0; a < k; ++a) row[a] = jacobian(i, a);
    for (int a = 0; a < k; ++a) {
      for (int b = 0; b <= a; ++b) gram[a][b] += row[a] * row[b];
      along[a] += row[a] * r(i);
    }
  }
  jtj.resize(k, k);
  jtr.resize(k);
  for (int a = 0; a < k; ++a) {
    for (int b = 0; b <= a; ++b) jtj(a, b) = jtj(b, a) = gram[a][b];
    jtr(a) = along[a];
  }
}

void NormalEquations(const Jacobian& jacobian, const Residual& r, Square& jtj, Vector& jtr) {
  static_assert(kMaxParams == 4, "NormalEquations covers 3 and 4 parameters");
  if (jacobian.cols() == 4) {
    NormalEquationsOf<4>(jacobian, r, jtj, jtr);
  } else {
    assert(jacobian.cols() == 3);
    NormalEquationsOf<3>(jacobian, r, jtj, jtr);
  }
}

// x . y over the first k entries (Eigen's own dot, on these fixed-capacity vectors, draws
// a false array-bounds warning from GCC 12).
template <typename X, typename Y>
double Dot(const X& x, const Y& y, int k) {
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += x(i) * y(i);
  return sum;
}

// Solves a x = b for a symmetric positive definite matrix a of at most kMaxParams rows, by
// Cholesky in plain loops; x is NaN where a is not positive definite (a NaN entry: the
// damped normal equations of a fit are otherwise, by the prior's rows). Eigen's LDLT, for
// any size and with pivoting, cost an eighth of a prediction's instructions on these 3 x 3
// and 4 x 4 systems (callgrind, session 38).
Vector SolvePositiveDefinite(const Square& a, const Vector& b) {
  const int k = static_cast<int>(a.rows());
  double lower[kMaxParams][kMaxParams];
  Vector x(k);
  for (int j = 0; j < k; ++j) {
    double pivot = a(j, j);
    for (int c = 0; c < j; ++c) pivot -= lower[j][c] * lower[j][c];
    if (!(pivot > 0)) {
      for (int i = 0; i < k; ++i) x(i) = std::numeric_limits<double>::quiet_NaN();
      return x;
    }
    lower[j][j] = std::sqrt(pivot);
    for (int i = j + 1; i < k; ++i) {
      double sum = a(i, j);
      for (int c = 0; c < j; ++c) sum -= lower[i][c] * lower[j][c];
      lower[i][j] = sum / lower[j][j];
    }
  }
  // L y = b, then L^T x = y.
  for (int i = 0; i < k; ++i) {
    double sum = b(i);
    for (int c = 0; c < i; ++c) sum -= lower[i][c] * x(c);
    x(i) = sum / lower[i][i];
  }
  for (int i = k - 1; i >= 0; --i) {
    double sum = x(i);
    for (int c = i + 1; c < k; ++c) sum -= lower[c][i] * x(c);
    x(i) = sum / lower[i][i];
  }
  return x;
}

// Levenberg-Marquardt from `start` on the least squares weighted and regularised by the
// weak prior around `prior`. With `pin_asymptote`, the asymptote stays at the prior's (a
// profile fit over the asymptote).
//
// The damping follows each step's gain ratio rho, the cost's actual decrease over the
// decrease its quadratic model predicted (Nielsen 1999). After a taken step lambda shrinks
// by up to 3 where rho is near 1 or above (the model foresaw the step well), stays at
// rho = 1/2, and grows by up to 2 as rho falls towards 0; after each refused step it grows
// by a factor that doubles at each refusal. And the fit stops once the undamped Gauss-Newton step
// would gain less than kConvergedGain in cost: at the optimum, to within a negligible
// share of a log evidence. With fixed factors (lambda / 3 after every taken step, x 4
// after a refused one) and a stop only when a taken step gained little, the free fits
// crawled along the flat valleys of curves still far from their plateaus.
constexpr double kConvergedGain = 1e-4;

Fit FitFamily(const Family& f, const Points& pts, const Params& start, const Params& prior,
              double sigma, bool pin_asymptote = false) {
  const int k = f.num_params;
  const double inv_sigma = 1.0 / sigma;
  Params u = start;
  // The residuals and Jacobian at u, and at the step being tried: two buffers that trade
  // places when a step is taken, rather than a copy of the step's into u's.
  Residual residuals[2];
  Jacobian jacobians[2];
  int at = 0;
  PointScales scale{};
  for (size_t i = 0; i < pts.weight.size(); ++i) scale[i] = std::sqrt(pts.weight[i]) * inv_sigma;
  Residuals(f, pts, scale, u, prior, pin_asymptote, residuals[at], jacobians[at]);
  double cost = residuals[at].squaredNorm();
  double lambda = 1e-2;
  double growth = 2;  // lambda's factor after a refused step, doubled at each refusal
  for (int iteration = 0; iteration < 60; ++iteration) {
    Square jtj;
    Vector jtr;
    NormalEquations(jacobians[at], residuals[at], jtj, jtr);
    // The Gauss-Newton step -jtj^-1 jtr would lower the cost by jtr . jtj^-1 jtr.
    if (Dot(jtr, SolvePositiveDefinite(jtj, jtr), k) < kConvergedGain) break;
    bool improved = false;
    for (int tries = 0; tries < 8 && !improved; ++tries) {
      Square damped = jtj;
      damped.diagonal() += lambda * (jtj.diagonal().array() + 1e-9).matrix();
      const Vector solved = SolvePositiveDefinite(damped, -jtr);
      Vector step(k);
      Params trial = u;
      for (int j = 0; j < k; ++j) trial[j] += step(j) = std::clamp(solved(j), -3.0, 3.0);
      // The quadratic model's decrease for the step taken (clamped or not).
      double predicted = -2 * Dot(jtr, step, k);
      for (int a = 0; a < k; ++a) predicted -= step(a) * Dot(jtj.col(a), step, k);
      // With its Jacobian at once, which a taken step needs, rather than once for its cost
      // and again for its Jacobian if it is taken: on the replay tables this cut a
      // prediction's instructions by about a seventh (session 37), so taken steps outnumber
      // refused ones by enough to pay for the Jacobians of the refused.
      Residuals(f, pts, scale, trial, prior, pin_asymptote, residuals[1 - at], jacobians[1 - at]);
      const double cost2 = residuals[1 - at].squaredNorm();
      if (std::isfinite(cost2) && cost2 < cost) {
        const bool converged = cost - cost2 < 1e-6 * (1 + cost);
        const double rho = (cost - cost2) / std::max(predicted, 1e-300);
        lambda = std::max(1e-7, lambda * std::max(1.0 / 3, 1 - std::pow(2 * rho - 1, 3)));
        growth = 2;
        u = trial;
        at = 1 - at;
        cost = cost2;
        improved = true;
        if (converged) iteration = 1 << 20;
      } else {
        lambda *= growth;
        growth *= 2;
      }
    }
    if (!improved) break;
  }
  const Residual& r = residuals[at];
  Fit fit;
  fit.family = &f;
  fit.u = u;
  Square precision;
  Vector unused;
  NormalEquations(jacobians[at], r, precision, unused);
  precision.diagonal().array() += 1e-9;
  Eigen::LLT<Square> llt(precision);
  if (llt.info() != Eigen::Success || !std::isfinite(cost)) return fit;
  // Covariance = precision^-1; its Cholesky factor L_cov with L_cov L_cov^T = covariance
  // is L^-T (precision = L L^T).
  const Square lower = llt.matrixL();
  fit.chol = lower.transpose().triangularView<Eigen::Upper>().solve(Square::Identity(k, k));
  const int m = static_cast<int>(pts.t.size());
  double data_cost = r.head(m).squaredNorm();
  double epochs = 0;
  for (double w : pts.weight) epochs += w;
  fit.log_evidence = -0.5 * data_cost - 0.5 * k * std::log(std::max(2.0, epochs));
  fit.ok = std::isfinite(fit.log_evidence);
  return fit;
}

// The first epoch e in [begin, max_epochs] at which a sampled trend plus noise, f(e) +
// N(0, sigma), reaches `target`; kNever if none does. One epoch crosses with probability
// q(e) = P(noise >= target - f(e)). Three ways, by what bounds the work:
//  - every family is monotone and bounded by its asymptote p[0], so q(e) <= q_hi, q at the
//    trend's largest value on the range. Where q_hi < options.thin_below (a trend that
//    levels off below the target, crossing by noise alone), by thinning: candidate epochs
//    at geometric gaps of rate q_hi, each kept with probability q(e) / q_hi. Exact, and
//    about q_hi x span candidates where epoch by epoch would take ~1 / q epochs;
//  - a range of at most options.scan_epochs: epoch by epoch, drawing each epoch's noise;
//  - a longer one: blocks of w epochs, each with the trend at its middle, so that the
//    search takes at most scan_epochs steps. None of a block's len epochs crosses with
//    (1 - q)^len; where one does, the first is a geometric draw truncated to the block.
// `log_epoch` caches ln e (0 until computed; ln 1 = 0).
double FirstCrossing(const Family& family, const double* p, double target, double sigma, int begin,
                     int max_epochs, const CurveModelOptions& options,
                     std::vector<double>& log_epoch, std::mt19937_64& rng) {
  const int span = max_epochs - begin + 1;
  if (span <= 0) return EpochsToTarget::kNever;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto log_of = [&](int e) {
    double& l = log_epoch[static_cast<size_t>(e)];
    if (l == 0.0 && e > 1) l = std::log(static_cast<double>(e));
    return l;
  };
  const auto crossing = [&](double trend) {
    return 0.5 * std::erfc((target - trend) / (sigma * std::sqrt(2.0)));
  };
  const double top = std::max({p[0], family.value(begin, log_of(begin), p),
                               family.value(max_epochs, log_of(max_epochs), p)});
  const double q_hi = crossing(top);
  if (q_hi < options.thin_below) {
    if (q_hi <= 0.0) return EpochsToTarget::kNever;
    const double log_miss = std::log1p(-q_hi);
    for (double e = begin;;) {
      // 1 - unit is in (0, 1]: a gap of 0 epochs or more.
      e += std::floor(std::log(1.0 - unit(rng)) / log_miss);
      if (e > max_epochs) return EpochsToTarget::kNever;
      const int epoch = static_cast<int>(e);
      if (unit(rng) * q_hi < crossing(family.value(epoch, log_of(epoch), p))) return epoch;
      e += 1;
    }
  }
  const int scan_epochs = std::max(1, options.scan_epochs);
  if (span <= scan_epochs) {
    std::normal_distribution<double> gauss(0.0, 1.0);
    for (int e = begin; e <= max_epochs; ++e) {
      if (family.value(e, log_of(e), p) + sigma * gauss(rng) >= target) return e;
    }
    return EpochsToTarget::kNever;
  }
  const int w = (span + scan_epochs - 1) / scan_epochs;
  for (int b = begin; b <= max_epochs; b += w) {
    const int len = std::min(w, max_epochs - b + 1);
    const double mid = b + (len - 1) / 2.0;
    const double q = crossing(family.value(mid, std::log(mid), p));
    const double none = std::pow(1.0 - q, len);
    if (unit(rng) < none) continue;
    const double u = unit(rng);
    const int j = q < 1.0 - 1e-12
                      ? static_cast<int>(std::floor(std::log1p(-u * (1.0 - none)) / std::log1p(-q)))
                      : 0;
    return b + std::clamp(j, 0, len - 1);
  }
  return EpochsToTarget::kNever;
}

// How many of the curve's last accuracies equal its last one, exactly.
int StuckEpochs(const std::vector<double>& curve) {
  int stuck = 0;
  while (stuck < static_cast<int>(curve.size()) &&
         curve[curve.size() - 1 - static_cast<size_t>(stuck)] == curve.back()) {
    ++stuck;
  }
  return stuck;
}

// The chance that a flat curve stuck for `stuck` epochs still reaches the target. For each
// d from `from` (CurveModelOptions::stuck_epochs) to `stuck`: among the `others` that were
// stuck for d epochs while still flat (within 3 `sigma` of their first epochs), the share
// that went on to reach the target, with one failure and `prior_successes` successes added
// (1: Laplace's rule, 1/2 with no evidence, generous as the stop rules want; 0: what the
// sampler learns from, CurveModelOptions::censored_take_off, where a stuck network counts
// as a failed trial does until one in the job has recovered). Each counts as soon as it has been
// stuck that long, whether it was then stopped or not. The answer is the least of these: a network
// stuck for longer is taken to be no more likely to recover, so curves a search stopped after a few
// stuck epochs still speak for one stuck for longer (without this, a curve stuck past the point
// where the job stopped the others would fall back to 1/2). A network that predicts one class for
// epochs on end seldom recovers: on the committed replay tables, 231-238 curves (with the noise at
// 0.003-0.01) were stuck for 3 epochs or more while flat, and none reached the target.
double StuckRecoveryRate(const CurveRefs& others, int from, int stuck, double target,
                         int max_epochs, double sigma, double prior_successes) {
  std::vector<int> at_risk(static_cast<size_t>(stuck) + 1, 0);
  std::vector<int> recovered(static_cast<size_t>(stuck) + 1, 0);
  for (const std::vector<double>* other : others) {
    const std::vector<double>& z = *other;
    if (z.empty()) continue;
    const size_t horizon = std::min(z.size(), static_cast<size_t>(std::max(0, max_epochs)));
    const bool reached = std::any_of(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(horizon),
                                     [&](double a) { return a >= target; });
    const double early = (z[0] + z[std::min<size_t>(1, z.size() - 1)]) / 2;
    // The longest run of equal accuracies while the curve was still flat, up to `stuck`.
    int run = 1, longest = 1;
    double top = z[0];
    for (size_t i = 1; i < z.size() && longest < stuck; ++i) {
      top = std::max(top, z[i]);
      if (top - early > 3 * sigma) break;
      run = z[i] == z[i - 1] ? run + 1 : 1;
      longest = std::max(longest, run);
    }
    for (int d = from; d <= longest; ++d) {
      ++at_risk[static_cast<size_t>(d)];
      recovered[static_cast<size_t>(d)] += reached;
    }
  }
  double rate = 1.0;
  for (int d = from; d <= stuck; ++d) {
    rate = std::min(rate, (recovered[static_cast<size_t>(d)] + prior_successes) /
                              (at_risk[static_cast<size_t>(d)] + prior_successes + 1.0));
  }
  return rate;
}

// For a curve still flat after its n epochs: the law of its first epoch at the target,
// from the job's other curves by two Kaplan-Meier estimates, each hazard shrunk towards a
// prior.
//  1. Leaving chance. A curve is at risk at epoch e while it is still flat (the test Predict
//     applies: its best epoch is at most 3 sigma above its first two) and observed there;
//     it leaves at the epoch it first passes the test, and is censored at its last epoch
//     if it never does. The hazard at e is (leaving + w h0) / (at risk + w).
//  2. Reaching the target after leaving: the same over the epochs since a curve left
//     chance (k = 0 when it reached the target at the epoch it left).
// h0 is the hazard of the log-uniform take-off prior with a rate of 1/2 (see Predict), and
// w = kPriorCurves pseudo-curves: where few curves were observed (late epochs, or early
// in a job), the answer is the prior's; where many were, it is what they did. Censoring,
// not a rate among finished curves, is what lets curves the search stopped early count:
// a curve flat for 30 epochs and then stopped is evidence about epochs 1 to 30, none after.
//
// The first epoch is the leaving epoch plus the delay, two independent draws, so it is
// kept as their two laws and sampled by inverting each. Where no curve was observed, a
// hazard is the prior's, whose survival over a stretch is a ratio of the prior's own (the
// product telescopes), so each law is tabulated over the steps the other curves cover and
// inverted in closed form after them: O(the others' epochs) to build and O(log of that)
// per sample, at any epoch limit. (Their convolution, tabulated to the limit, cost
// O(max_epochs^2): 10^8 steps per prediction at a 10,000-epoch limit.)
class TakeOffLaw {
 public:
  TakeOffLaw(int flat_epochs, double target, int max_epochs, double sigma, const CurveRefs& others);
  // One first epoch at the target; kNever when the curve does not reach it by max_epochs.
  double Sample(std::mt19937_64& rng) const;

 private:
  static constexpr double kPriorCurves = 2.0;
  static constexpr double kPriorRate = 0.5;
  // A law over the steps first, first + 1, ..., last (or never), with the hazard
  // (events + w h0) / (at risk + w) at each step: tabulated while at_risk has counts,
  // the prior's beyond.
  class Law {
   public:
    Law(const TakeOffLaw& owner, int first, int last, const std::vector<double>& at_risk,
        const std::vector<double>& events);
    // The least step whose distribution function exceeds u in [0, 1); -1 for never.
    long Invert(double u) const;

   private:
    const TakeOffLaw* owner_;
    int first_, last_;
    std::vector<double> cdf_;  // at the steps first_, first_ + 1, ...
  };
  // The prior's survival: a time log-uniform over [1, m] with probability kPriorRate, and
  // never otherwise. Its hazard at step i is (S(i - 1) - S(i)) / S(i - 1): 0 at 0 and 1.
  double PriorSurvival(double step) const {
    return 1.0 - kPriorRate * std::log(std::max(1.0, step)) / log_m_;
  }

  int max_epochs_;
  double log_m_;
  int first_leave_;        // the earliest epoch it can leave chance: n + 1
  std::vector<Law> laws_;  // leaving chance (by epoch), then the delay (by epochs after it)
};

TakeOffLaw::Law::Law(const TakeOffLaw& owner, int first, int last,
                     const std::vector<double>& at_risk, const std::vector<double>& events)
    : owner_(&owner), first_(first), last_(last) {
  double survival = 1.0;
  for (int i = first; i <= last && i < static_cast<int>(at_risk.size()); ++i) {
    const double prior = owner.PriorSurvival(i - 1);
    const double h0 = (prior - owner.PriorSurvival(i)) / prior;
    const double hazard = (events[static_cast<size_t>(i)] + kPriorCurves * h0) /
                          (at_risk[static_cast<size_t>(i)] + kPriorCurves);
    survival *= 1.0 - hazard;
    cdf_.push_back(1.0 - survival);
  }
}

long TakeOffLaw::Law::Invert(double u) const {
  const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  if (it != cdf_.end()) return first_ + (it - cdf_.begin());
  // Beyond the table, survival(e) = survival(t) S(e) / S(t) for the table's last step t:
  // the least e > t with 1 - survival(e) > u has S(e) < s = (1 - u) S(t) / survival(t),
  // that is ln e > (1 - s) ln m / kPriorRate.
  const int t = first_ + static_cast<int>(cdf_.size()) - 1;
  const double survival_t = cdf_.empty() ? 1.0 : 1.0 - cdf_.back();
  if (survival_t <= 0.0) return -1;
  const double s = (1.0 - u) * owner_->PriorSurvival(t) / survival_t;
  const double x = std::exp((1.0 - s) * owner_->log_m_ / kPriorRate);
  if (!(x < last_)) return -1;
  return std::max<long>(t + 1, static_cast<long>(std::floor(x)) + 1);
}

TakeOffLaw::TakeOffLaw(int flat_epochs, double target, int max_epochs, double sigma,
                       const CurveRefs& others)
    : max_epochs_(std::max(2, max_epochs)),
      log_m_(std::log(static_cast<double>(max_epochs_))),
      first_leave_(std::max(1, flat_epochs + 1)) {
  const int m = max_epochs_;
  size_t longest = 0;
  for (const std::vector<double>* z : others) longest = std::max(longest, z->size());
  const size_t size = std::min<size_t>(longest, static_cast<size_t>(m)) + 1;
  std::vector<double> leave_at_risk(size, 0.0), leave_events(size, 0.0);
  std::vector<double> reach_at_risk(size, 0.0), reach_events(size, 0.0);
  for (const std::vector<double>* other : others) {
    const std::vector<double>& z = *other;
    const int length = std::min(static_cast<int>(z.size()), m);
    if (length == 0) continue;
    const double early = (z[0] + z[std::min<size_t>(1, z.size() - 1)]) / 2;
    int left = 0, reached = 0;
    double top = -1.0;
    for (int e = 1; e <= length; ++e) {
      top = std::max(top, z[static_cast<size_t>(e - 1)]);
      if (left == 0 && e >= 2 && top - early > 3 * sigma) left = e;
      if (z[static_cast<size_t>(e - 1)] >= target) {
        reached = e;
        break;
      }
    }
    if (reached > 0 && left == 0) left = reached;  // at the target from its start
    const int flat_until = left > 0 ? left : length;
    for (int e = 1; e <= flat_until; ++e) leave_at_risk[static_cast<size_t>(e)] += 1;
    if (left == 0) continue;
    leave_events[static_cast<size_t>(left)] += 1;
    const int last = reached > 0 ? reached : length;
    for (int k = 0; k <= last - left; ++k) reach_at_risk[static_cast<size_t>(k)] += 1;
    if (reached > 0) reach_events[static_cast<size_t>(reached - left)] += 1;
  }
  // Trim each table to the last step a curve was at risk: the prior's beyond.
  const auto observed = [](std::vector<double>& at_risk, std::vector<double>& events) {
    while (!at_risk.empty() && at_risk.back() == 0.0) at_risk.pop_back();
    events.resize(at_risk.size());
  };
  observed(leave_at_risk, leave_events);
  observed(reach_at_risk, reach_events);
  laws_.emplace_back(*this, first_leave_, m, leave_at_risk, leave_events);
  laws_.emplace_back(*this, 0, m - 1, reach_at_risk, reach_events);
}

double TakeOffLaw::Sample(std::mt19937_64& rng) const {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const long leave = laws_[0].Invert(unit(rng));
  const long delay = laws_[1].Invert(unit(rng));
  if (leave < 0 || delay < 0 || leave + delay > max_epochs_) return EpochsToTarget::kNever;
  return static_cast<double>(leave + delay);
}

}  // namespace

double EpochsToTarget::ProbabilityBy(double epoch) const {
  if (samples.empty()) return 0.0;
  const auto end = std::upper_bound(samples.begin(), samples.end(), epoch);
  return static_cast<double>(end - samples.begin()) / static_cast<double>(samples.size());
}

CurveModel::CurveModel(CurveModelOptions options) : options_(options) {}

int CurveModel::FewestEpochsToFit() {
  int fewest = std::numeric_limits<int>::max();
  for (const Family& f : kFamilies) fewest = std::min(fewest, f.num_params);
  return fewest;
}

bool CurveModel::HasMoved(const std::vector<double>& curve, double noise) {
  if (curve.size() < 2) return false;
  const double early = (curve[0] + curve[1]) / 2;
  return *std::max_element(curve.begin(), curve.end()) - early > 3 * noise;
}

double CurveModel::TakeOffPriorMedian(int max_epochs) {
  return std::sqrt(static_cast<double>(std::max(1, max_epochs)));
}

double CurveModel::EstimateNoise(const std::vector<std::vector<double>>& curves) const {
  std::vector<double> deviations;
  for (const std::vector<double>& c : curves) {
    for (size_t i = 2; i < c.size(); ++i) {
      // Three equal accuracies are a network that predicts one class (a curve at chance),
      // not a measurement of noise: counted, they pull the estimate to zero.
      if (c[i] == c[i - 1] && c[i - 1] == c[i - 2]) continue;
      deviations.push_back(std::abs(c[i] - 2 * c[i - 1] + c[i - 2]));
    }
  }
  if (deviations.size() < 3) return std::clamp(0.01, options_.min_noise, options_.max_noise);
  auto mid = deviations.begin() + static_cast<std::ptrdiff_t>(deviations.size() / 2);
  std::nth_element(deviations.begin(), mid, deviations.end());
  // A second difference of iid noise has variance 6 sigma^2; MAD / 0.6745 estimates its
  // standard deviation (the median of |x| for a centred normal).
  const double sigma = *mid / 0.6745 / std::sqrt(6.0);
  return std::clamp(sigma, options_.min_noise, options_.max_noise);
}

EpochsToTarget CurveModel::Predict(const std::vector<double>& curve, double target, int max_epochs,
                                   double noise, uint64_t seed,
                                   const std::vector<std::vector<double>>& others) {
  CurveRefs refs;
  refs.reserve(others.size());
  for (const std::vector<double>& z : others) refs.push_back(&z);
  return Predict(curve, target, max_epochs, noise, seed, refs);
}

EpochsToTarget CurveModel::Predict(const std::vector<double>& curve, double target, int max_epochs,
                                   double noise, uint64_t seed, const CurveRefs& others) {
  EpochsToTarget out;
  const int n = static_cast<int>(curve.size());
  const int samples = std::max(16, options_.samples);
  out.samples.reserve(static_cast<size_t>(samples));
  for (int i = 0; i < n; ++i) {
    if (curve[static_cast<size_t>(i)] >= target) {
      out.p_reach = 1.0;
      out.median = out.lo = out.hi = i + 1;
      out.samples.assign(static_cast<size_t>(samples), i + 1);
      return out;
    }
  }
  std::mt19937_64 rng(seed);
  // The job's pooled noise is mostly that of curves on their plateaus; a curve that is still
  // rising is often noisier (a large learning rate, a small batch). Its own second
  // differences over its last epochs, where there are enough, raise the noise it is
  // predicted with; the last ones only, as a curve that has settled is less noisy.
  constexpr int kOwnNoiseEpochs = 12;
  const double own = n >= 7 ? EstimateNoise({std::vector<double>(
                                  curve.end() - std::min(n, kOwnNoiseEpochs), curve.end())})
                            : 0.0;
  const double sigma = std::clamp(std::max(noise, own), options_.min_noise, options_.max_noise);
  // Analogs: other curves longer than this one, nearest first, each with the first epoch
  // after this curve's end at which it reached the target (kNever if it ran to the limit
  // without). A curve that stopped short of the limit without reaching it tells nothing.
  struct Analog {
    double distance2;
    double first;
  };
  std::vector<Analog> analogs;
  if (n >= 1 && options_.analogs > 0) {
    for (const std::vector<double>* other : others) {
      const std::vector<double>& z = *other;
      if (static_cast<int>(z.size()) <= n) continue;
      double d2 = 0;
      for (int i = 0; i < n; ++i) {
        const double d = curve[static_cast<size_t>(i)] - z[static_cast<size_t>(i)];
        d2 += d * d;
      }
      double first = EpochsToTarget::kNever;
      const int horizon = std::min(static_cast<int>(z.size()), max_epochs);
      for (int e = n + 1; e <= horizon; ++e) {
        if (z[static_cast<size_t>(e - 1)] >= target) {
          first = e;
          break;
        }
      }
      if (std::isinf(first) && static_cast<int>(z.size()) < max_epochs) continue;
      analogs.push_back({d2 / n, first});
    }
    std::sort(analogs.begin(), analogs.end(),
              [](const Analog& a, const Analog& b) { return a.distance2 < b.distance2; });
    if (static_cast<int>(analogs.size()) > options_.analogs) {
      analogs.resize(static_cast<size_t>(options_.analogs));
    }
  }
  const bool use_analogs = !analogs.empty() && static_cast<int>(analogs.size()) >= options_.analogs;
  const int analog_samples =
      use_analogs ? static_cast<int>(std::lround(options_.analog_share * samples)) : 0;
  if (analog_samples > 0) {
    // Nearer analogs weigh more: a Gaussian kernel on the mean squared distance, as wide as
    // the noise or the spread of the analogs' distances, whichever is larger.
    const double width2 = std::max(2 * sigma * sigma, analogs.back().distance2);
    std::vector<double> weights;
    for (const Analog& a : analogs) weights.push_back(std::exp(-a.distance2 / (2 * width2)));
    std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
    for (int s = 0; s < analog_samples; ++s) out.samples.push_back(analogs[pick(rng)].first);
  }
  const int parametric_samples = samples - analog_samples;

  // A curve that has not yet moved beyond its noise (a slow starter at chance, or a
  // configuration that never learns) says nothing about its future: no family is fitted to
  // it, and its parametric share is the uninformative answer below.
  const double early = n > 0 ? (curve[0] + curve[std::min<size_t>(1, n - 1)]) / 2 : 0.0;
  const bool moved = HasMoved(curve, sigma);
  std::vector<Fit> fits;
  if (moved && n < max_epochs) {
    const Points pts = Bin(curve);
    for (const Family& f : kFamilies) {
      if (n < f.num_params) continue;
      Fit best;
      for (const Params& start : Starts(f, curve.front(), curve.back(), n)) {
        Fit fit = FitFamily(f, pts, start, start, sigma);
        if (fit.ok && fit.log_evidence > best.log_evidence) best = std::move(fit);
      }
      if (!best.ok) continue;
      // The asymptote decides whether a curve reaches the target, and the first epochs
      // of a curve that is still rising hardly constrain it: a Gaussian at the best fit
      // would put all samples near one plateau. Profile it instead: refit with the
      // asymptote held at levels between the best epoch so far and 1, and let each fit
      // take the share of samples its evidence earns (a flat prior over the asymptote).
      // Each level starts from the fit at the level below (continuation: the curve's
      // other parameters move little from one level to the next), its prior around the
      // best fit's.
      const double top = *std::max_element(curve.begin(), curve.end());
      Params from = best.u;
      for (int level = 0; level < kAsymptoteLevels; ++level) {
        const double a = top + (0.995 - top) * (level + 0.5) / kAsymptoteLevels;
        if (a <= top) continue;
        Params prior = best.u;
        prior[0] = from[0] = Logit(a);
        Fit fit = FitFamily(f, pts, from, prior, sigma, /*pin_asymptote=*/true);
        if (!fit.ok) continue;
        from = fit.u;
        fits.push_back(std::move(fit));
      }
      fits.push_back(std::move(best));
    }
  }
  // How curves take off. A prior free of scale on the epoch T at which a flat curve takes
  // off, log-uniform over [1, max_epochs] for a curve that learns at all, makes a curve still
  // flat after n epochs less and less likely to: given T > n,
  //   P(reach) = q (1 - ln n / ln M) / (q (1 - ln n / ln M) + 1 - q),
  // and its first epoch at the target is log-uniform over (n, M]. q, the chance that a
  // curve learns enough to reach the target at all, is the job's rate over its finished
  // curves (those that reached the target or ran to the limit), with one success and one
  // failure added (Laplace's rule), so 1/2 while none has finished. Curves stopped early
  // are left out: counting them would let the job's own stopping lower the rate. With
  // `learned_only`, only the curves that had, by epoch n, risen more than 3 noise deviations
  // above their first epochs count (the test this curve passed): the rate among the curves
  // that had learned something by then; and none at all until one of them has reached the
  // target. Not 1/2 from nothing: in a search most curves are stopped early, so the rate
  // would stay uninformed for long, every creeping trial would get the same good chance,
  // and the forecast would keep creepers and tell configurations apart less (search
  // benchmark, mnist-hard table, 80 seeds: success 94% -> 85% with the 1/2).
  // A flat curve whose last stuck_epochs accuracies are identical is a network that
  // predicts one class, not a slow starter still finding its way: its q is the rate at
  // which the job's curves stuck as long recovered (StuckRecoveryRate), not the rate
  // among finished curves.
  const int stuck = StuckEpochs(curve);
  const bool is_stuck = options_.stuck_epochs > 0 && stuck >= options_.stuck_epochs;
  const auto take_off_chance = [&](bool learned_only) {
    double q;
    if (is_stuck && !learned_only) {
      q = StuckRecoveryRate(others, options_.stuck_epochs, stuck, target, max_epochs, sigma,
                            options_.censored_take_off ? 0.0 : 1.0);
    } else {
      int reached = 0, finished = 0;
      for (const std::vector<double>* other : others) {
        const std::vector<double>& z = *other;
        const size_t horizon = std::min(z.size(), static_cast<size_t>(std::max(0, max_epochs)));
        const bool hit = std::any_of(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(horizon),
                                     [&](double a) { return a >= target; });
        if (!hit && static_cast<int>(z.size()) < max_epochs) continue;
        if (learned_only) {
          if (static_cast<int>(z.size()) <= n) continue;
          const double start = (z[0] + z[1]) / 2;
          if (*std::max_element(z.begin(), z.begin() + n) - start <= 3 * sigma) continue;
        }
        reached += hit;
        ++finished;
      }
      if (learned_only && reached == 0) return 0.0;
      q = (reached + 1.0) / (finished + 2.0);
    }
    const double left =
        std::clamp(1.0 - std::log(std::max(1, n)) / std::log(std::max(2, max_epochs)), 0.0, 1.0);
    return n < max_epochs ? q * left / (q * left + 1.0 - q) : 0.0;
  };
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // A take-off epoch drawn from the prior above, given T > n.
  const auto take_off_epoch = [&]() {
    const double log_n = std::log(std::max(1, n));
    const double log_first = log_n + unit(rng) * (std::log(std::max(2, max_epochs)) - log_n);
    return std::clamp(std::ceil(std::exp(log_first)), n + 1.0, 1.0 * max_epochs);
  };
  if (fits.empty() && options_.censored_take_off && !is_stuck) {
    // Nothing to go on but how the job's curves left chance and went on from there.
    const TakeOffLaw law(n, target, max_epochs, sigma, others);
    for (int s = 0; s < parametric_samples; ++s) out.samples.push_back(law.Sample(rng));
  } else if (fits.empty()) {
    // Nothing to go on but how curves take off (stuck: how the job's stuck curves did).
    const double p_take_off = take_off_chance(/*learned_only=*/false);
    for (int s = 0; s < parametric_samples; ++s) {
      out.samples.push_back(unit(rng) < p_take_off ? take_off_epoch() : EpochsToTarget::kNever);
    }
  } else {
    // Each family's share of the samples follows its evidence; every family keeps a little,
    // as the evidence of a few points overrates the family that bends to them.
    double top = -1e300;
    for (const Fit& f : fits) top = std::max(top, f.log_evidence);
    std::vector<double> weights;
    double total = 0;
    const double temperature = std::max(1.0, options_.evidence_temperature);
    for (const Fit& f : fits) total += std::exp((f.log_evidence - top) / temperature);
    for (const Fit& f : fits) {
      weights.push_back(0.02 / fits.size() +
                        0.98 * std::exp((f.log_evidence - top) / temperature) / total);
    }
    std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
    std::normal_distribution<double> gauss(0.0, 1.0);
    // A curve that has covered little of the way from its start to the target is where
    // the families are least right, in two ways. A slow creep is often the foot of a late,
    // steep rise that no family fitted to the creep foresees: its posterior is widened, the
    // more the less of the way it has come (creep_widening x at none, not at all from half
    // way on). And a creep that has levelled off is, to the families, a plateau: the best
    // fits put it there, and every rising alternative has a log evidence lower by ~10
    // (mnist-hard table, curves at 0.13-0.16 after 20 epochs that take off at 27-70), while
    // such a curve can still leave its plateau, as a flat one can; widening a plateau does
    // not make it take off. So, with the same weight (1 at no progress, 0 from half way on),
    // a creeping curve keeps the flat curve's chance of taking off: a take-off epoch from
    // the same log-uniform prior, its chance of carrying the curve to the target the job's
    // rate among the finished curves that had learned something by this epoch (as this one
    // has), and the curve's first epoch at the target the earlier of its family's and its
    // take-off's. At no progress this is the flat curve's answer, so a curve that has just
    // moved no longer drops from the take-off prior to the families' plateau.
    const double progress =
        target > early
            ? std::clamp((*std::max_element(curve.begin(), curve.end()) - early) / (target - early),
                         0.0, 1.0)
            : 1.0;
    // ln e, computed once per epoch that a sample's search visits (0 until then; ln 1 = 0).
    std::vector<double> log_epoch(static_cast<size_t>(std::max(1, max_epochs)) + 1, 0.0);
    const double creep = std::max(0.0, 1.0 - progress / 0.5);
    const double widen = options_.posterior_scale * (1.0 + (options_.creep_widening - 1.0) * creep);
    const double p_escape =
        options_.creep_take_off && creep > 0 ? creep * take_off_chance(/*learned_only=*/true) : 0.0;
    for (int s = 0; s < parametric_samples; ++s) {
      const Fit& fit = fits[pick(rng)];
      const int k = fit.family->num_params;
      Vector z(k);
      for (int j = 0; j < k; ++j) z(j) = gauss(rng);
      const Vector du = widen * (fit.chol * z);
      Params u = fit.u;
      Decoded p{};
      for (int j = 0; j < k; ++j) u[j] += du(j);
      fit.family->decode(u.data(), p.data());
      // The sampled trend reaches target - 3 sigma at `from`: before that, noise crosses
      // the target with negligible probability. From there, draw each epoch's noise.
      const double from = fit.family->reaches(target - 3 * sigma, p.data());
      const int begin =
          from <= max_epochs ? std::max(n + 1, static_cast<int>(std::ceil(from))) : max_epochs + 1;
      double first = FirstCrossing(*fit.family, p.data(), target, sigma, begin, max_epochs,
                                   options_, log_epoch, rng);
      if (p_escape > 0 && unit(rng) < p_escape) first = std::min(first, take_off_epoch());
      out.samples.push_back(first);
    }
  }
  std::sort(out.samples.begin(), out.samples.end());
  const auto quantile = [&](double q) {
    const size_t i = std::min(out.samples.size() - 1,
                              static_cast<size_t>(q * static_cast<double>(out.samples.size())));
    return out.samples[i];
  };
  out.p_reach = out.ProbabilityBy(max_epochs);
  out.lo = quantile(0.1);
  out.median = quantile(0.5);
  out.hi = quantile(0.9);
  return out;
}

}  // namespace topotune
