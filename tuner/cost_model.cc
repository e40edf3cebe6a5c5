#include "tuner/cost_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <utility>

namespace topotune {
namespace {

constexpr double kZ80 = 1.2816;            // the 90th percentile of a standard normal
constexpr double kMinRelativeError = 0.1;  // no interval narrower than +-10%

// Half-width of an 80% interval, relative, from residuals `fitted / measured - 1` of a
// fit with `parameters` parameters; kMinRelativeError when there are too few to tell.
double RelativeError(const std::vector<double>& residuals, int parameters) {
  const int dof = static_cast<int>(residuals.size()) - parameters;
  if (dof <= 0) return kMinRelativeError;
  double sum = 0.0;
  for (double r : residuals) sum += r * r;
  return std::max(kMinRelativeError, kZ80 * std::sqrt(sum / dof));
}

Estimate Around(double value, double relative_error) {
  return Estimate::Predicted(value, value / (1.0 + relative_error), value * (1.0 + relative_error));
}

}  // namespace

Estimate Times(const Estimate& a, const Estimate& b) {
  return {a.value * b.value, a.lo * b.lo, a.hi * b.hi, a.measured && b.measured};
}

Estimate Plus(const Estimate& a, const Estimate& b) {
  return {a.value + b.value, a.lo + b.lo, a.hi + b.hi, a.measured && b.measured};
}

StatusOr<StepTimeModel> StepTimeModel::Fit(std::vector<StepSample> samples) {
  if (samples.empty()) return Status::InvalidArgument("a step-time model needs a measured batch");
  std::map<int, std::vector<double>> by_batch;
  for (const StepSample& s : samples) {
    if (s.batch < 1 || !(s.seconds > 0) || !std::isfinite(s.seconds)) {
      return Status::InvalidArgument("a step-time sample needs batch >= 1 and seconds > 0 (batch " +
                                     std::to_string(s.batch) + ")");
    }
    by_batch[s.batch].push_back(s.seconds);
  }
  StepTimeModel model;
  for (auto& [batch, seconds] : by_batch) {
    std::sort(seconds.begin(), seconds.end());
    model.samples_.push_back({batch, seconds[seconds.size() / 2]});
  }
  const size_t n = model.samples_.size();
  if (n == 1) {
    model.beta_ = model.samples_[0].seconds / model.samples_[0].batch;
    return model;
  }
  // Least squares of seconds on batch, relative, so that a small batch's step counts as much
  // as a large one's: minimise the sum of ((alpha + beta b) / s - 1)^2, the least squares of
  // 1 on the columns u = 1 / s and v = b / s. In units of the slowest step, and by
  // Gram-Schmidt (a QR of the two columns): the normal equations' determinant,
  // sum(u^2) sum(v^2) - sum(uv)^2, cancelled to 0 where the steps spanned many orders of
  // magnitude (1.5 s and 1e60 s), and the fit was NaN.
  double unit = 0.0;
  for (const StepSample& s : model.samples_) unit = std::max(unit, s.seconds);
  std::vector<double> u, v;
  for (const StepSample& s : model.samples_) {
    u.push_back(unit / s.seconds);
    v.push_back(s.batch * (unit / s.seconds));
    if (!std::isfinite(v.back())) {
      char why[120];
      std::snprintf(why, sizeof(why), "step times of %g s and %g s are too far apart to fit",
                    s.seconds, unit);
      return Status::InvalidArgument(why);
    }
  }
  // The least-squares coefficient of 1 on one column x: sum(x) / sum(x^2), scaled by its
  // largest element so that no square overflows.
  auto through_one = [](const std::vector<double>& x) {
    const double top = *std::max_element(x.begin(), x.end());
    double sum = 0, squares = 0;
    for (double xi : x) sum += xi / top, squares += (xi / top) * (xi / top);
    return sum / squares / top;
  };
  auto norm = [](const std::vector<double>& x) {
    double top = 0;
    for (double xi : x) top = std::max(top, std::abs(xi));
    if (top == 0) return 0.0;
    double squares = 0;
    for (double xi : x) squares += (xi / top) * (xi / top);
    return top * std::sqrt(squares);
  };
  const double r11 = norm(u);
  std::vector<double> q1(n), w(n);
  double r12 = 0;
  for (size_t i = 0; i < n; ++i) q1[i] = u[i] / r11, r12 += q1[i] * v[i];
  for (size_t i = 0; i < n; ++i) w[i] = v[i] - r12 * q1[i];
  const double r22 = norm(w);
  if (!std::isfinite(r11) || !std::isfinite(r22)) {
    return Status::InvalidArgument("step times are too far apart to fit");
  }
  double alpha = -1, beta = 0;  // in units of `unit`
  if (r22 > 0) {                // else u and v are parallel to rounding: through the origin
    double c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; ++i) c1 += q1[i], c2 += w[i] / r22;
    beta = c2 / r22;
    alpha = (c1 - r12 * beta) / r11;
  }
  // Noise can give a negative overhead or a step that gets faster with the batch; then the
  // nearest sensible shape: through the origin, or flat.
  if (!(alpha >= 0)) {
    alpha = 0.0;
    beta = through_one(v);
  } else if (beta < 0) {
    alpha = through_one(u);
    beta = 0.0;
  }
  model.alpha_ = alpha * unit;
  model.beta_ = beta * unit;
  if (!std::isfinite(model.alpha_) || !std::isfinite(model.beta_) || model.alpha_ < 0 ||
      model.beta_ < 0 || !(model.alpha_ + model.beta_ > 0)) {
    return Status::InvalidArgument("the step times do not fit alpha + beta x batch");
  }
  std::vector<double> residuals;
  for (const StepSample& s : model.samples_) {
    residuals.push_back((model.alpha_ + model.beta_ * s.batch) / s.seconds - 1.0);
  }
  model.relative_error_ = RelativeError(residuals, 2);
  return model;
}

Estimate StepTimeModel::At(int batch) const {
  for (const StepSample& s : samples_) {
    if (s.batch == batch) return Estimate::Measured(s.seconds);
  }
  return Around(alpha_ + beta_ * batch, relative_error_);
}

double RingAllReduceSeconds(double bytes, int devices, const Link& link) {
  if (devices <= 1) return 0.0;
  const double n = devices;
  return 2.0 * (n - 1.0) / n * bytes / link.bandwidth_bytes_s + 2.0 * (n - 1.0) * link.latency_s;
}

StatusOr<Link> FitRingLink(double model_bytes, const std::vector<SyncSample>& samples,
                           const Link& declared, double* relative_error) {
  // seconds = a x (1 / bandwidth) + b x latency, a = 2(N-1)/N x bytes, b = 2(N-1).
  std::vector<std::array<double, 3>> rows;  // a, b, seconds
  std::set<int> sizes;
  for (const SyncSample& s : samples) {
    if (s.devices < 2 || !(s.seconds > 0) || !std::isfinite(s.seconds)) continue;
    const double n = s.devices;
    rows.push_back({2.0 * (n - 1.0) / n * model_bytes, 2.0 * (n - 1.0), s.seconds});
    sizes.insert(s.devices);
  }
  if (rows.empty() || !(model_bytes > 0)) {
    return Status::InvalidArgument(
        "fitting a link needs a measured synchronisation over 2 or "
        "more devices and the model's bytes");
  }
  Link link = declared;
  bool solved = false;
  if (sizes.size() >= 2) {
    double saa = 0, sab = 0, sbb = 0, say = 0, sby = 0;
    for (const auto& [a, b, y] : rows) {
      saa += a * a, sab += a * b, sbb += b * b, say += a * y, sby += b * y;
    }
    const double det = saa * sbb - sab * sab;
    if (det > 0) {
      const double inverse_bw = (say * sbb - sby * sab) / det;
      const double latency = (saa * sby - sab * say) / det;
      if (inverse_bw > 0 && latency >= 0) {
        link = {1.0 / inverse_bw, latency};
        solved = true;
      }
    }
  }
  if (!solved) {
    // The two-term fit left the physical region (a bandwidth <= 0 or a negative latency):
    // one term is held at its declared value and the other solved by least squares. With
    // one ring size only the bandwidth is solved. With several, the latency may be the
    // term to solve instead: syncs that grow with the ring's length faster than its bytes
    // (2(N-1) against 2(N-1)/N) are per-hop costs, such as CPU-limited devices whose every
    // hop waits on a peer. Of the two, the one with the smaller squared residuals.
    double saa = 0, say = 0, sbb = 0, sby = 0;
    for (const auto& [a, b, y] : rows) {
      saa += a * a, say += a * (y - b * declared.latency_s);
      sbb += b * b, sby += b * (y - a / declared.bandwidth_bytes_s);
    }
    std::vector<Link> options;
    if (say > 0) options.push_back({saa / say, declared.latency_s});
    if (sizes.size() >= 2 && sby > 0) options.push_back({declared.bandwidth_bytes_s, sby / sbb});
    if (options.empty()) {
      return Status::InvalidArgument(
          "the measured synchronisations are shorter than the declared latency alone");
    }
    auto squared_residuals = [&](const Link& l) {
      double sum = 0;
      for (const auto& [a, b, y] : rows) {
        const double r = a / l.bandwidth_bytes_s + b * l.latency_s - y;
        sum += r * r;
      }
      return sum;
    };
    link = *std::min_element(options.begin(), options.end(), [&](const Link& x, const Link& y) {
      return squared_residuals(x) < squared_residuals(y);
    });
  }
  if (relative_error != nullptr) {
    *relative_error = 0.0;
    for (const auto& [a, b, y] : rows) {
      const double fit = a / link.bandwidth_bytes_s + b * link.latency_s;
      *relative_error = std::max(*relative_error, std::abs(fit - y) / y);
    }
  }
  return link;
}

double TransferSeconds(double bytes, const Link& link) {
  return bytes <= 0 ? 0.0 : link.latency_s + bytes / link.bandwidth_bytes_s;
}

StatusOr<BatchScaling> BatchScaling::Fit(const std::vector<std::pair<int, double>>& batch_epochs) {
  std::map<int, double> least;  // the least epochs per batch size
  for (const auto& [batch, epochs] : batch_epochs) {
    if (batch < 1 || !(epochs > 0) || !std::isfinite(epochs)) {
      return Status::InvalidArgument("batch scaling needs batch >= 1 and epochs > 0 (batch " +
                                     std::to_string(batch) + ")");
    }
    auto [it, inserted] = least.emplace(batch, epochs);
    if (!inserted) it->second = std::min(it->second, epochs);
  }
  if (least.size() < 2) {
    return Status::InvalidArgument(
        "batch scaling needs epochs to target at two batch sizes or more");
  }
  // E(B) = a B + c, least squares relative to E (weights 1/E^2); B_noise = c / a.
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [batch, epochs] : least) {
    const double w = 1.0 / (epochs * epochs);
    sw += w;
    sx += w * batch;
    sy += w * epochs;
    sxx += w * batch * batch;
    sxy += w * batch * epochs;
  }
  const double a = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  const double c = (sy - a * sx) / sw;
  const double max_noise = 100.0 * least.rbegin()->first;
  BatchScaling scaling;
  // a <= 0: epochs do not grow with the batch over the measured range (perfect scaling so
  // far): B_noise beyond it. c <= 0: steps did not shrink with the batch: B_noise 0.
  scaling.noise_batch_ = a <= 0 ? max_noise : std::clamp(c / a, 0.0, max_noise);
  const double b_noise = scaling.noise_batch_;
  // The shape is fixed by B_noise; its scale is the least-squares one for that shape.
  double num = 0, den = 0;
  for (const auto& [batch, epochs] : least) {
    const double shape = batch + b_noise;
    num += shape / epochs;
    den += shape * shape / (epochs * epochs);
  }
  const double scale = num / den;
  std::vector<double> residuals;
  for (const auto& [batch, epochs] : least) {
    residuals.push_back(scale * (batch + b_noise) / epochs - 1.0);
  }
  scaling.relative_error_ = RelativeError(residuals, 2);
  return scaling;
}

Estimate BatchScaling::Ratio(int from_batch, int to_batch) const {
  if (from_batch == to_batch) return Estimate::Measured(1.0);
  return Around((to_batch + noise_batch_) / (from_batch + noise_batch_), relative_error_);
}

Estimate BatchScaling::UnfittedRatio(int from_batch, int to_batch) {
  if (from_batch == to_batch) return Estimate::Measured(1.0);
  const double steps_fixed = static_cast<double>(to_batch) / from_batch;
  return Estimate::Predicted(std::sqrt(steps_fixed), std::min(1.0, steps_fixed),
                             std::max(1.0, steps_fixed));
}

double EquivalentLearningRate(Optimizer optimizer, double learning_rate, int from_batch,
                              int to_batch) {
  const double ratio = static_cast<double>(to_batch) / from_batch;
  return learning_rate * (optimizer == Optimizer::kSgd ? ratio : std::sqrt(ratio));
}

namespace {

// The fit's coordinates: log of the noise temperature u and log B.
std::pair<double, double> TemperatureCoordinates(Optimizer optimizer, double learning_rate,
                                                 int batch) {
  const double v = std::log(static_cast<double>(batch));
  return {std::log(learning_rate) - (optimizer == Optimizer::kSgd ? 1.0 : 0.5) * v, v};
}

}  // namespace

StatusOr<TemperatureScaling> TemperatureScaling::Fit(Optimizer optimizer,
                                                     const std::vector<Sample>& samples) {
  if (samples.size() < kMinSamples) {
    return Status::InvalidArgument("temperature scaling needs " + std::to_string(kMinSamples) +
                                   " configurations or more that reach the target");
  }
  TemperatureScaling fit;
  fit.optimizer_ = optimizer;
  double weights = 0.0;
  for (const Sample& s : samples) {
    if (s.batch < 1 || !(s.learning_rate > 0) || !(s.epochs > 0) || !(s.weight > 0)) {
      return Status::InvalidArgument(
          "temperature scaling needs batch >= 1, learning rate, epochs and weight > 0 (batch " +
          std::to_string(s.batch) + ")");
    }
    const auto [u, v] = TemperatureCoordinates(optimizer, s.learning_rate, s.batch);
    fit.center_u_ += s.weight * u;
    fit.center_v_ += s.weight * v;
    weights += s.weight;
  }
  fit.center_u_ /= weights;
  fit.center_v_ /= weights;
  // Normal equations of the weighted least squares in centred coordinates; a tiny ridge on
  // the slopes keeps them solvable where the coordinates are collinear (one learning rate at
  // every batch size).
  constexpr int kN = 4;
  constexpr double kRidge = 1e-9;
  double a[kN][kN + 1] = {};
  for (const Sample& s : samples) {
    const std::array<double, kN> x = fit.Features(s.learning_rate, s.batch);
    for (int i = 0; i < kN; ++i) {
      for (int j = 0; j < kN; ++j) a[i][j] += s.weight * x[i] * x[j];
      a[i][kN] += s.weight * x[i] * std::log(s.epochs);
    }
  }
  for (int i = 1; i < kN; ++i) a[i][i] += kRidge * weights;
  for (int c = 0; c < kN; ++c) {  // Gauss-Jordan, partial pivoting
    int pivot = c;
    for (int r = c + 1; r < kN; ++r) {
      if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
    }
    if (!(std::abs(a[pivot][c]) > 0)) return Status::InvalidArgument("singular fit");
    std::swap(a[c], a[pivot]);
    for (int r = 0; r < kN; ++r) {
      if (r == c) continue;
      const double f = a[r][c] / a[c][c];
      for (int j = c; j <= kN; ++j) a[r][j] -= f * a[c][j];
    }
  }
  for (int i = 0; i < kN; ++i) fit.coefficients_[i] = a[i][kN] / a[i][i];
  return fit;
}

std::array<double, 4> TemperatureScaling::Features(double learning_rate, int batch) const {
  const auto [u, v] = TemperatureCoordinates(optimizer_, learning_rate, batch);
  const double du = u - center_u_;
  return {1.0, du, du * du, v - center_v_};
}

double TemperatureScaling::EpochsAt(double learning_rate, int batch) const {
  const std::array<double, 4> x = Features(learning_rate, batch);
  double log_epochs = 0.0;
  for (int i = 0; i < 4; ++i) log_epochs += coefficients_[i] * x[i];
  return std::exp(log_epochs);
}

StatusOr<TtaBreakdown> PredictTta(const Target& target, const Workload& workload, int local_batch,
                                  const Estimate& epochs_to_target, const StepTimeModel& step,
                                  std::optional<Estimate> sync, std::optional<Estimate> compute,
                                  const Estimate& warmup_steps) {
  auto invalid = [&](const std::string& what) {
    return Status::InvalidArgument("target " + target.name + ": " + what);
  };
  if (workload.train_samples < 1) return invalid("the workload needs train_samples >= 1");
  if (local_batch < 1) return invalid("local batch must be >= 1");
  if (!(epochs_to_target.value > 0)) return invalid("epochs to target must be > 0");
  if (!(warmup_steps.lo >= 0)) return invalid("warm-up steps must be >= 0");
  auto needs_bandwidth = [](const Link& link) { return !(link.bandwidth_bytes_s > 0); };
  // Finite terms, or an error naming the first that is not: a product of extreme inputs (a
  // step of 1e306 s) overflows.
  auto finite = [&](const TtaBreakdown& t) -> StatusOr<TtaBreakdown> {
    const std::pair<const char*, const Estimate*> terms[] = {
        {"epochs", &t.epochs},       {"step compute", &t.step_compute},
        {"step sync", &t.step_sync}, {"epoch", &t.epoch},
        {"rounds", &t.rounds},       {"round", &t.round},
        {"transfer", &t.transfer},   {"warm-up steps", &t.warmup_steps},
        {"warm-up", &t.warmup},      {"time to accuracy", &t.tta}};
    for (const auto& [name, e] : terms) {
      if (!std::isfinite(e->value) || !std::isfinite(e->lo) || !std::isfinite(e->hi)) {
        char why[160];
        std::snprintf(why, sizeof(why), "the %s term is not a finite number (%g, %g-%g)", name,
                      e->value, e->lo, e->hi);
        return invalid(why);
      }
    }
    return t;
  };
  TtaBreakdown t;
  t.local_batch = local_batch;
  t.global_batch = local_batch;
  t.epochs = epochs_to_target;
  t.step_compute = compute ? *compute : step.At(local_batch);
  t.warmup_steps = warmup_steps;
  t.warmup = Times(warmup_steps, t.step_compute);
  t.step_sync = Estimate::Measured(0.0);
  t.rounds = Estimate::Measured(0.0);
  t.round = Estimate::Measured(0.0);
  t.epoch = Estimate::Measured(0.0);
  if (target.data_bytes > 0 && needs_bandwidth(target.data_link)) {
    return invalid("data_link needs a bandwidth to move " + std::to_string(target.data_bytes) +
                   " bytes");
  }
  // Over a declared link the transfer is predicted; over a measured one, measured.
  const double transfer_s = TransferSeconds(target.data_bytes, target.data_link);
  t.transfer = !(target.data_bytes > 0) ? Estimate::Measured(0.0)
               : target.data_link_measured.empty()
                   ? Estimate::Predicted(transfer_s, transfer_s, transfer_s)
                   : Estimate::Measured(transfer_s);
  const auto steps = [&](long long samples, int batch) { return (samples + batch - 1) / batch; };

  if (target.kind == Target::Kind::kFederated) {
    if (target.clients_per_edge < 1 || target.edges < 1 || target.local_epochs < 1) {
      return invalid("federated needs clients_per_edge, edges and local_epochs >= 1");
    }
    if (needs_bandwidth(target.client_edge) || needs_bandwidth(target.edge_cloud)) {
      return invalid("federated needs client_edge and edge_cloud bandwidths");
    }
    const long long clients = static_cast<long long>(target.clients_per_edge) * target.edges;
    const long long shard = std::max(1LL, workload.train_samples / clients);
    const double local_steps = target.local_epochs * static_cast<double>(steps(shard, local_batch));
    // Down and up: the client's own link to its edge, then the edge's averaged model to and
    // from the cloud.
    const double comm = 2.0 * TransferSeconds(workload.model_bytes, target.client_edge) +
                        2.0 * TransferSeconds(workload.model_bytes, target.edge_cloud);
    t.steps_per_epoch = steps(shard, local_batch);
    t.round = Plus(Times(Estimate::Measured(local_steps), t.step_compute),
                   Estimate::Predicted(comm, comm, comm));
    const auto rounds = [&](double epochs) { return std::ceil(epochs / target.local_epochs); };
    t.rounds =
        Estimate::Predicted(rounds(t.epochs.value), rounds(t.epochs.lo), rounds(t.epochs.hi));
    t.tta = Plus(Plus(Times(t.rounds, t.round), t.warmup), t.transfer);
    t.tta.measured = false;  // a prediction, whatever its terms were
    return finite(t);
  }

  int devices = 1;
  Link slowest;
  if (target.kind == Target::Kind::kDataParallel) {
    if (target.devices < 1 || target.nodes < 1 || target.devices % target.nodes != 0) {
      return invalid("data-parallel needs devices >= 1 spread evenly over nodes >= 1");
    }
    devices = target.devices;
    const bool per_node = target.devices / target.nodes > 1;
    if (target.nodes > 1 && needs_bandwidth(target.inter_node) && !sync) {
      return invalid("data-parallel over nodes needs an inter_node bandwidth");
    }
    if (per_node && needs_bandwidth(target.intra_node) && !sync) {
      return invalid("data-parallel within a node needs an intra_node bandwidth");
    }
    // The ring's slowest hop sets its pace; latency adds up on every hop, so take the larger.
    slowest = target.nodes > 1 ? target.inter_node : target.intra_node;
    if (target.nodes > 1 && per_node) {
      slowest.bandwidth_bytes_s =
          std::min(target.inter_node.bandwidth_bytes_s, target.intra_node.bandwidth_bytes_s);
      slowest.latency_s = std::max(target.inter_node.latency_s, target.intra_node.latency_s);
    }
  }
  if (static_cast<long long>(local_batch) * devices > std::numeric_limits<int>::max()) {
    return invalid("a global batch of " + std::to_string(local_batch) + " x " +
                   std::to_string(devices) + " devices is above " +
                   std::to_string(std::numeric_limits<int>::max()));
  }
  t.global_batch = local_batch * devices;
  t.steps_per_epoch = steps(workload.train_samples, t.global_batch);
  if (devices > 1 && sync) {
    t.step_sync = *sync;
  } else if (devices > 1) {
    const double ring = RingAllReduceSeconds(workload.model_bytes, devices, slowest);
    t.step_sync = Estimate::Predicted(ring, ring, ring);
  }
  const double overlap = std::clamp(target.overlap, 0.0, 1.0);
  // The hidden part of the synchronisation: overlap x the shorter of the two.
  auto per_step = [&](double compute, double sync_s) {
    return compute + sync_s - overlap * std::min(compute, sync_s);
  };
  const Estimate step_total{per_step(t.step_compute.value, t.step_sync.value),
                            per_step(t.step_compute.lo, t.step_sync.lo),
                            per_step(t.step_compute.hi, t.step_sync.hi),
                            t.step_compute.measured && t.step_sync.measured};
  t.epoch = Times(Estimate::Measured(static_cast<double>(t.steps_per_epoch)), step_total);
  t.tta = Plus(Plus(Times(t.epochs, t.epoch), t.warmup), t.transfer);
  t.tta.measured = false;  // a prediction, whatever its terms were
  return finite(t);
}

}  // namespace topotune
