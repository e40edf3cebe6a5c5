#include "tuner/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "tuner/curve_model.h"

namespace topotune {
namespace {

// The measured epochs to target of one recorded configuration: the mean first epoch at the
// target over its seeds, with the fastest and slowest seed as the interval; none when a
// seed never gets there within its curve.
std::optional<Estimate> MeasuredEpochs(const CurveTable::Run& run, double target) {
  if (run.curves.empty()) return std::nullopt;
  double sum = 0.0, lo = 1e300, hi = 0.0;
  for (const auto& [seed, curve] : run.curves) {
    int first = 0;
    for (size_t e = 0; e < curve.size() && first == 0; ++e) {
      if (curve[e].val_accuracy >= target) first = static_cast<int>(e) + 1;
    }
    if (first == 0) return std::nullopt;
    sum += first;
    lo = std::min<double>(lo, first);
    hi = std::max<double>(hi, first);
  }
  return Estimate{sum / run.curves.size(), lo, hi, true};
}

// Whether no seed of `run` reaches `target` (a trial stopped short, not one that failed to
// on some seeds only).
bool NoSeedReaches(const CurveTable::Run& run, double target) {
  for (const auto& [seed, curve] : run.curves) {
    for (const CurveTable::Epoch& e : curve) {
      if (e.val_accuracy >= target) return false;
    }
  }
  return !run.curves.empty();
}

std::vector<double> Accuracies(const std::vector<CurveTable::Epoch>& curve) {
  std::vector<double> out;
  for (const CurveTable::Epoch& e : curve) out.push_back(e.val_accuracy);
  return out;
}

// Seconds per step of `run` on the recording device: its mean epoch seconds, divided by the
// steps of an epoch. Epoch 1 is left out where a curve has more (WarmupSteps charges it).
double RecordedStepSeconds(const CurveTable::Run& run, long long train_samples) {
  double seconds = 0.0;
  int epochs = 0;
  for (const auto& [seed, curve] : run.curves) {
    for (size_t i = curve.size() > 1 ? 1 : 0; i < curve.size(); ++i) {
      seconds += curve[i].seconds;
      ++epochs;
    }
  }
  const long long steps = (train_samples + run.config.batch_size - 1) / run.config.batch_size;
  return epochs == 0 || steps == 0 ? 0.0 : seconds / epochs / steps;
}

// A trial's start-up, in steps: how much longer a curve's first epoch took than its steady
// ones (the median of epochs 2..n), in units of the steady step (that median / the steps of
// an epoch). The median (nearest rank) over every curve of the table with kMinWarmupEpochs
// or more, at least 0; the 80% interval spans their 10th to 90th percentiles. In steps
// because the excess scales with the step: on this machine's LeNet tables it is 5-11 steps
// at every batch size from 16 to 256, on 2 threads and on a quarter of a core alike
// (bench/RESULTS.md, session 24), where in epochs it grows eightfold over that range. Zero
// without such a curve; near zero where first epochs were no slower (the two oldest
// committed tables).
constexpr size_t kMinWarmupEpochs = 3;

Estimate WarmupSteps(const CurveTable& table, long long train_samples) {
  std::vector<double> excess;
  for (const CurveTable::Run& run : table.runs()) {
    const long long steps = (train_samples + run.config.batch_size - 1) / run.config.batch_size;
    for (const auto& [seed, curve] : run.curves) {
      if (curve.size() < kMinWarmupEpochs) continue;
      std::vector<double> later;
      for (size_t i = 1; i < curve.size(); ++i) later.push_back(curve[i].seconds);
      std::sort(later.begin(), later.end());
      const size_t k = later.size();
      const double steady = (later[(k - 1) / 2] + later[k / 2]) / 2;
      if (!(steady > 0) || !std::isfinite(steady) || !std::isfinite(curve[0].seconds)) continue;
      const double steps_more = (curve[0].seconds - steady) / (steady / steps);
      if (std::isfinite(steps_more)) excess.push_back(std::max(0.0, steps_more));
    }
  }
  if (excess.empty()) return Estimate::Measured(0.0);
  std::sort(excess.begin(), excess.end());
  auto at = [&](double q) { return excess[static_cast<size_t>(q * (excess.size() - 1) + 0.5)]; };
  return Estimate::Predicted(at(0.5), at(0.1), at(0.9));
}

// The recorded runs of one optimizer at one batch size: learning rate -> epochs to target,
// or none when the run does not reach it on every seed.
using LearningRateFamily = std::map<double, std::optional<Estimate>>;

// What a family (or two) says of the epochs at one point between its recorded ones.
struct Reading {
  enum class Kind {
    kOutside,    ///< beyond the recorded points: nothing to read
    kUndecided,  ///< between a point that reaches the target and one that does not
    kNoReach,    ///< between points that both do not reach it
    kEpochs,     ///< `epochs`
  };
  Kind kind = Kind::kOutside;
  Estimate epochs;
};

// Epochs at `x` from the points a and b around it (a.x <= x <= b.x), linear in
// (log x, log epochs), the interval's ends likewise.
Estimate Interpolate(double xa, const Estimate& a, double xb, const Estimate& b, double x) {
  const double w = xb > xa ? std::log(x / xa) / std::log(xb / xa) : 0.0;
  auto mix = [w](double u, double v) { return std::exp((1 - w) * std::log(u) + w * std::log(v)); };
  return Estimate::Predicted(mix(a.value, b.value), mix(a.lo, b.lo), mix(a.hi, b.hi));
}

// The epochs at `learning_rate` read off `family`: a recorded rate (to a relative 1e-9) as
// recorded; between two recorded rates, interpolated when both reach the target. Where one
// of the two does not, the point is at the edge of the rates that reach it, where the epochs
// change too fast to interpolate: undecided.
Reading ReadFamily(const LearningRateFamily& family, double learning_rate) {
  Reading r;
  auto reached = [&r](const std::optional<Estimate>& e) {
    r.kind = e ? Reading::Kind::kEpochs : Reading::Kind::kNoReach;
    if (e) r.epochs = *e;
    return r;
  };
  auto above = family.lower_bound(learning_rate);
  if (above != family.end() && std::abs(std::log(above->first / learning_rate)) < 1e-9) {
    return reached(above->second);
  }
  if (above != family.begin() &&
      std::abs(std::log(std::prev(above)->first / learning_rate)) < 1e-9) {
    return reached(std::prev(above)->second);
  }
  if (above == family.begin() || above == family.end()) return r;  // kOutside
  const auto& [lr_a, a] = *std::prev(above);
  const auto& [lr_b, b] = *above;
  if (a && b) {
    r.kind = Reading::Kind::kEpochs;
    r.epochs = Interpolate(lr_a, *a, lr_b, *b, learning_rate);
  } else {
    r.kind = a || b ? Reading::Kind::kUndecided : Reading::Kind::kNoReach;
  }
  return r;
}

// A profile row's ranges. The devices as a topology's (api/topology_json.cc), the batch as a
// table's; a step from a nanosecond to 11 days, whose least-squares weights (1 / step^2) and
// products with the steps to target stay finite.
constexpr double kMinStepSeconds = 1e-9;
constexpr double kMaxStepSeconds = 1e6;

// What is wrong with a row of PROFILE.csv, or "" when nothing is.
std::string PlacementProblem(const PlacementMeasurement& m) {
  if (m.device_class.empty() || m.nodes < 1 || m.devices_per_node < 1 || m.local_batch < 1 ||
      !(m.step_seconds > 0) || !std::isfinite(m.step_seconds) || !(m.sync_seconds >= 0) ||
      !std::isfinite(m.sync_seconds)) {
    return "needs a device_class, nodes, devices_per_node and local_batch >= 1, step_seconds > "
           "0 and sync_seconds >= 0";
  }
  char why[160];
  if (static_cast<long long>(m.nodes) * m.devices_per_node > kMaxDevices) {
    std::snprintf(why, sizeof(why), "nodes x devices_per_node must be at most %d, got %d x %d",
                  kMaxDevices, m.nodes, m.devices_per_node);
    return why;
  }
  if (m.local_batch > kMaxBatchSize) {
    std::snprintf(why, sizeof(why), "local_batch must be at most %d, got %d", kMaxBatchSize,
                  m.local_batch);
    return why;
  }
  if (m.step_seconds < kMinStepSeconds || m.step_seconds > kMaxStepSeconds) {
    std::snprintf(why, sizeof(why), "step_seconds must be in [%g, %g], got %g", kMinStepSeconds,
                  kMaxStepSeconds, m.step_seconds);
    return why;
  }
  // The step includes its synchronisation (topotune-worker dp-probe's step_s); a sync longer
  // than the step would leave the compute a negative time.
  if (m.sync_seconds > m.step_seconds) {
    std::snprintf(why, sizeof(why),
                  "sync_seconds (%g) is more than step_seconds (%g), the whole step that includes "
                  "it",
                  m.sync_seconds, m.step_seconds);
    return why;
  }
  return "";
}

}  // namespace

StatusOr<std::vector<PlacementMeasurement>> ParseProfileCsv(const std::string& text,
                                                            const std::string& name) {
  static const char* kHeader =
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds";
  static const char* kHeaderWithOptimizer =
      "device_class,nodes,devices_per_node,local_batch,step_seconds,sync_seconds,optimizer";
  size_t fields = 6;
  std::vector<PlacementMeasurement> rows;
  std::stringstream in(text);
  std::string line;
  int number = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const std::string where = name + ":" + std::to_string(number);
    if (!header) {
      if (line != kHeader && line != kHeaderWithOptimizer) {
        return Status::InvalidArgument(where + ": expected the header '" + std::string(kHeader) +
                                       "', optionally with ',optimizer'");
      }
      fields = line == kHeader ? 6 : 7;
      header = true;
      continue;
    }
    const std::vector<std::string> f = SplitCsvLine(line);
    if (f.size() != fields) {
      return Status::InvalidArgument(where + ": expected " + std::to_string(fields) + " fields");
    }
    PlacementMeasurement m;
    m.device_class = f[0];
    if (fields == 7 && !f[6].empty()) {
      m.optimizer = ParseOptimizer(f[6]);
      if (!m.optimizer) {
        return Status::InvalidArgument(where + ": optimizer must be 'sgd', 'adam' or empty, got '" +
                                       f[6].substr(0, 20) + "'");
      }
    }
    try {
      size_t used = 0;
      auto whole = [&](const std::string& s) {
        const int v = std::stoi(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return v;
      };
      auto real = [&](const std::string& s) {
        const double v = std::stod(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return v;
      };
      m.nodes = whole(f[1]);
      m.devices_per_node = whole(f[2]);
      m.local_batch = whole(f[3]);
      m.step_seconds = real(f[4]);
      m.sync_seconds = real(f[5]);
    } catch (const std::exception&) {
      return Status::InvalidArgument(where + ": a field is not a number");
    }
    if (const std::string problem = PlacementProblem(m); !problem.empty()) {
      return Status::InvalidArgument(where + ": " + problem);
    }
    rows.push_back(m);
  }
  if (!header) return Status::InvalidArgument(name + ": no header: not a profile");
  return rows;
}

StatusOr<std::vector<TargetPlan>> Plan(const PlanInput& input) {
  if (input.curves == nullptr || input.curves->runs().empty()) {
    return Status::InvalidArgument("planning needs a table of learning curves");
  }
  if (!(input.target_accuracy > 0 && input.target_accuracy <= 1)) {
    return Status::InvalidArgument("the target accuracy must be in (0, 1]");
  }
  if (input.workload.train_samples < 1) {
    return Status::InvalidArgument(
        "planning needs the number of training samples (a '# train_samples=N' line in the "
        "curves, or --train-samples)");
  }
  const long long n = input.workload.train_samples;
  const Estimate warmup_steps = WarmupSteps(*input.curves, n);

  // Measured epochs per configuration, and the least per (optimizer, batch) for the
  // batch-size model.
  struct Measured {
    const CurveTable::Run* run;  ///< the recorded configuration, the one scaled from, or null
    Estimate epochs;
    TrialConfig config;  ///< run->config, or at a what-if batch size
    std::string from;    ///< how the epochs were obtained
  };
  std::vector<Measured> measured;
  std::map<Optimizer, std::vector<std::pair<int, double>>> least;
  std::vector<const CurveTable::Run*> unreached;  // no seed at the target
  for (const CurveTable::Run& run : input.curves->runs()) {
    std::optional<Estimate> e = MeasuredEpochs(run, input.target_accuracy);
    if (!e) {
      if (NoSeedReaches(run, input.target_accuracy)) unreached.push_back(&run);
      continue;
    }
    const std::string seeds = std::to_string(run.curves.size());
    measured.push_back(
        {&run, *e, run.config,
         "measured (" + seeds + " seed" + (run.curves.size() == 1 ? "" : "s") + ")"});
    least[run.config.optimizer].push_back({run.config.batch_size, e->value});
  }
  // Curves stopped short of the target: their crossing as the curve model predicts it,
  // from the longest seed and every other curve of the table.
  std::vector<Measured> forecast;
  if (!unreached.empty()) {
    std::vector<std::vector<double>> all;
    int longest = 0;
    for (const CurveTable::Run& run : input.curves->runs()) {
      for (const auto& [seed, curve] : run.curves) {
        all.push_back(Accuracies(curve));
        longest = std::max(longest, static_cast<int>(curve.size()));
      }
    }
    const int limit = input.epoch_limit > 0 ? input.epoch_limit : longest;
    CurveModel model;
    const double noise = model.EstimateNoise(all);
    for (const CurveTable::Run* run : unreached) {
      const std::vector<CurveTable::Epoch>* curve = nullptr;
      for (const auto& [seed, c] : run->curves) {
        if (curve == nullptr || c.size() > curve->size()) curve = &c;
      }
      const std::vector<double> accuracies = Accuracies(*curve);
      // One epoch shows no trend: the model's answer there is the job's prior over curves
      // that started alike, not this configuration's. On the testbed (ASHA, 12 trials)
      // three trials stopped after one epoch at chance were ranked first on both targets,
      // ahead of the one measured to the target.
      if (accuracies.size() < 2) continue;
      std::vector<std::vector<double>> others;
      for (const std::vector<double>& other : all) {
        if (&other != &accuracies && other != accuracies) others.push_back(other);
      }
      const EpochsToTarget f =
          model.Predict(accuracies, input.target_accuracy, limit, noise,
                        /*seed=*/accuracies.size() * 7919 + run->config.batch_size, others);
      if (!(f.p_reach > 0.5) || !std::isfinite(f.median)) continue;
      const double hi = std::isfinite(f.hi) ? f.hi : limit;
      char why[160];
      std::snprintf(why, sizeof(why), "curve model from %zu epochs (P(reach by epoch %d) = %.2f)",
                    accuracies.size(), limit, f.p_reach);
      forecast.push_back({run, Estimate::Predicted(f.median, f.lo, hi), run->config, why});
    }
  }
  std::map<Optimizer, BatchScaling> scaling;
  for (const auto& [optimizer, points] : least) {
    StatusOr<BatchScaling> fit = BatchScaling::Fit(points);
    if (fit.ok()) scaling.emplace(optimizer, *fit);
  }
  // The epochs of `m` scaled to `batch` by the optimizer's batch-size model.
  auto scaled = [&](const Measured& m, int batch) {
    auto it = scaling.find(m.config.optimizer);
    const Estimate ratio = it != scaling.end()
                               ? it->second.Ratio(m.config.batch_size, batch)
                               : BatchScaling::UnfittedRatio(m.config.batch_size, batch);
    Measured out = m;
    out.config.batch_size = batch;
    out.epochs = Times(m.epochs, ratio);
    out.from = "batch scaling from " + std::to_string(m.config.batch_size) + " (" +
               (it != scaling.end()
                    ? "B_noise " + std::to_string(static_cast<long long>(it->second.noise_batch()))
                    : std::string("unfitted: one batch size")) +
               ")";
    return out;
  };
  // What-if batch sizes. Each (learning rate, optimizer) of the table at a batch size B it
  // was not recorded at trains as the learning rate with the same noise temperature does at
  // a recorded batch size (EquivalentLearningRate), whose epochs are read off that batch
  // size's recorded rates (ReadFamily): from the nearest recorded batch size below B and the
  // nearest above, interpolated in log B where both read epochs (the interval spans both),
  // one where only it does. Where one reads epochs and another that the target is not
  // reached, the epochs, with an interval up to the longest recorded curve; where every side
  // says it is not reached, left out. Where no side reads epochs (a table with one rate per
  // batch size, an equivalent rate beyond the recorded ones or at the edge of those that
  // reach the target), the same learning rate at its nearest recorded batch size (in ratio)
  // that reaches the target, scaled by the optimizer's BatchScaling.
  std::map<Optimizer, std::map<int, LearningRateFamily>> families;
  std::set<std::pair<Optimizer, double>> recorded_rates;
  // Per optimizer, the configurations that reach the target on every seed.
  std::map<Optimizer, std::vector<TemperatureScaling::Sample>> temperature_samples;
  int longest = 0;  // epochs of the longest recorded curve
  for (const CurveTable::Run& run : input.curves->runs()) {
    const TrialConfig& c = run.config;
    const std::optional<Estimate> epochs = MeasuredEpochs(run, input.target_accuracy);
    families[c.optimizer][c.batch_size][c.learning_rate] = epochs;
    recorded_rates.insert({c.optimizer, c.learning_rate});
    if (epochs) {
      temperature_samples[c.optimizer].push_back(
          {c.batch_size, c.learning_rate, epochs->value, static_cast<double>(run.curves.size())});
    }
    for (const auto& [seed, curve] : run.curves) {
      longest = std::max(longest, static_cast<int>(curve.size()));
    }
  }
  std::map<Optimizer, TemperatureScaling> temperature_fits;
  for (const auto& [optimizer, samples] : temperature_samples) {
    StatusOr<TemperatureScaling> fit = TemperatureScaling::Fit(optimizer, samples);
    if (fit.ok()) temperature_fits.emplace(optimizer, *fit);
  }
  std::vector<Measured> what_if;
  for (int batch : input.what_if_batches) {
    for (const auto& [optimizer, learning_rate] : recorded_rates) {
      const std::map<int, LearningRateFamily>& by_batch = families[optimizer];
      if (by_batch.count(batch) != 0 && by_batch.at(batch).count(learning_rate) != 0) continue;
      // The nearest recorded batch sizes below and above `batch`, and what each reads.
      std::vector<std::pair<int, Reading>> sides;
      auto above = by_batch.upper_bound(batch);
      if (above != by_batch.begin() && std::prev(above)->first != batch) {
        sides.push_back({std::prev(above)->first, Reading()});
      } else if (above != by_batch.begin() && std::prev(above) != by_batch.begin()) {
        sides.push_back({std::prev(std::prev(above))->first, Reading()});
      }
      if (above != by_batch.end()) sides.push_back({above->first, Reading()});
      std::string from;
      int epochs_sides = 0;
      size_t no_reach = 0;  // sides where the equivalent rate does not reach the target
      for (auto& [recorded, reading] : sides) {
        const double rate = EquivalentLearningRate(optimizer, learning_rate, batch, recorded);
        reading = ReadFamily(by_batch.at(recorded), rate);
        if (reading.kind == Reading::Kind::kNoReach) ++no_reach;
        if (reading.kind != Reading::Kind::kEpochs) continue;
        ++epochs_sides;
        char part[64];
        std::snprintf(part, sizeof(part), "%slr %.3g at %d", from.empty() ? "" : ", ", rate,
                      recorded);
        from += part;
      }
      if (!sides.empty() && no_reach == sides.size()) continue;
      Measured m;
      m.run = nullptr;
      m.config = {batch, learning_rate, optimizer};
      if (epochs_sides == 2) {
        const Estimate& a = sides[0].second.epochs;
        const Estimate& b = sides[1].second.epochs;
        m.epochs = Interpolate(sides[0].first, a, sides[1].first, b, batch);
        m.epochs.lo = std::min({m.epochs.lo, a.lo, b.lo});
        m.epochs.hi = std::max({m.epochs.hi, a.hi, b.hi});
      } else if (epochs_sides == 1) {
        for (const auto& [recorded, reading] : sides) {
          if (reading.kind == Reading::Kind::kEpochs) m.epochs = reading.epochs;
        }
        m.epochs.measured = false;
      }
      if (epochs_sides > 0) {
        // Where the sides bracket the equivalent temperature, the value from the fit over
        // every configuration of the optimizer, which averages their seed noise; the sides'
        // interval stays, widened to include it.
        auto fit = temperature_fits.find(optimizer);
        if (fit != temperature_fits.end()) {
          m.epochs.value = fit->second.EpochsAt(learning_rate, batch);
          m.epochs.lo = std::min(m.epochs.lo, m.epochs.value);
          m.epochs.hi = std::max(m.epochs.hi, m.epochs.value);
          char part[64];
          std::snprintf(part, sizeof(part), "; fitted over %zu configurations",
                        temperature_samples[optimizer].size());
          from += part;
        }
        // A side where the equivalent rate does not reach the target: it may not within the
        // recorded epochs.
        if (no_reach > 0) m.epochs.hi = std::max<double>(m.epochs.hi, longest);
        m.from = std::string("equal noise temperature (lr / ") +
                 (optimizer == Optimizer::kSgd ? "B" : "sqrt B") + "): " + from;
        what_if.push_back(m);
        continue;
      }
      // Nothing to read at the equivalent rate: the same rate, scaled by the batch size.
      const Measured* nearest = nullptr;
      auto distance = [&](const Measured* x) {
        return std::abs(std::log(static_cast<double>(x->config.batch_size) / batch));
      };
      for (const Measured& r : measured) {
        if (r.config.optimizer == optimizer && r.config.learning_rate == learning_rate &&
            (nearest == nullptr || distance(&r) < distance(nearest))) {
          nearest = &r;
        }
      }
      if (nearest != nullptr) what_if.push_back(scaled(*nearest, batch));
    }
  }

  std::vector<TargetPlan> plans;
  for (const Target& target : input.targets) {
    TargetPlan plan;
    plan.target = target;
    // Compute step times of the class: its rows of one device, and those that name an
    // optimizer fitted for that optimizer alone. Adam's update does more work per weight
    // than momentum SGD's (two moment buffers, a square root and a division), a per-step
    // cost that weighs most at small batches.
    std::vector<StepSample> samples;
    std::map<Optimizer, std::vector<StepSample>> tagged;
    for (const PlacementMeasurement& m : input.profile) {
      if (m.device_class == target.device_class && m.nodes == 1 && m.devices_per_node == 1) {
        if (m.optimizer) {
          tagged[*m.optimizer].push_back({m.local_batch, m.step_seconds});
        } else {
          samples.push_back({m.local_batch, m.step_seconds});
        }
      }
    }
    if (samples.empty()) {
      for (const auto& [optimizer, rows] : tagged) {
        samples.insert(samples.end(), rows.begin(), rows.end());
      }
    }
    std::string step_from = "profile";
    std::string of_rows = "'s rows";
    std::map<Optimizer, StepTimeModel> step_of_optimizer;
    for (const auto& [optimizer, rows] : tagged) {
      StatusOr<StepTimeModel> fit = StepTimeModel::Fit(rows);
      if (fit.ok()) step_of_optimizer.emplace(optimizer, *fit);
    }
    // From the curves' own seconds, a fit per optimizer too.
    if (samples.empty() && !input.curves_class.empty() &&
        input.curves_class == target.device_class) {
      std::map<Optimizer, std::vector<StepSample>> by_optimizer;
      for (const CurveTable::Run& run : input.curves->runs()) {
        const double s = RecordedStepSeconds(run, n);
        if (s > 0) {
          samples.push_back({run.config.batch_size, s});
          by_optimizer[run.config.optimizer].push_back({run.config.batch_size, s});
        }
      }
      for (const auto& [optimizer, own] : by_optimizer) {
        std::set<int> batches;
        for (const StepSample& x : own) batches.insert(x.batch);
        if (batches.size() < 2) continue;
        StatusOr<StepTimeModel> fit = StepTimeModel::Fit(own);
        if (fit.ok()) step_of_optimizer.emplace(optimizer, *fit);
      }
      step_from = "the curves' epoch seconds";
      of_rows = "'s runs";
    }
    StatusOr<StepTimeModel> step = StepTimeModel::Fit(samples);
    if (!step.ok()) {
      plan.note =
          "no step time for device class '" + target.device_class + "': " +
          (samples.empty() ? "add its rows (one device) to the profile" : step.status().message());
      plans.push_back(std::move(plan));
      continue;
    }
    if (measured.empty()) {
      plan.note = "no recorded configuration reaches the target accuracy on every seed";
      plans.push_back(std::move(plan));
      continue;
    }
    const bool data_parallel = target.kind == Target::Kind::kDataParallel;
    const int devices = data_parallel ? std::max(1, target.devices) : 1;
    if ((devices > 1 || target.kind == Target::Kind::kFederated) &&
        !(input.workload.model_bytes > 0)) {
      plan.note =
          "needs the model's size in bytes (\"model_bytes\" in the topology) to cost "
          "its synchronisation";
      plans.push_back(std::move(plan));
      continue;
    }
    // Synchronisations measured at other placements of the class, with the same kind of
    // slowest hop (across nodes, or within one): the ring's link fitted to them predicts
    // the target's, in place of the declared link.
    std::optional<Estimate> fitted_sync;
    std::string fitted_from;
    if (data_parallel && devices > 1) {
      std::vector<SyncSample> syncs;
      for (const PlacementMeasurement& p : input.profile) {
        const int n_devices = p.nodes * p.devices_per_node;
        if (p.device_class == target.device_class && n_devices > 1 && p.sync_seconds > 0 &&
            (p.nodes > 1) == (target.nodes > 1)) {
          syncs.push_back({n_devices, p.sync_seconds});
        }
      }
      double relative_error = 0.0;
      StatusOr<Link> link =
          syncs.empty() ? StatusOr<Link>(Status::NotFound("no measured placement"))
                        : FitRingLink(input.workload.model_bytes, syncs,
                                      target.nodes > 1 ? target.inter_node : target.intra_node,
                                      &relative_error);
      if (link.ok()) {
        const double ring = RingAllReduceSeconds(input.workload.model_bytes, devices, *link);
        const double spread = std::max(0.05, relative_error);
        fitted_sync = Estimate::Predicted(ring, ring * (1 - spread), ring * (1 + spread));
        char why[160];
        std::snprintf(why, sizeof(why),
                      "ring all-reduce over a link fitted to %zu measured placement%s "
                      "(%.3g Mbit/s, %.3g ms)",
                      syncs.size(), syncs.size() == 1 ? "" : "s", link->bandwidth_bytes_s * 8e-6,
                      link->latency_s * 1e3);
        fitted_from = why;
      }
    }
    // Within a placement, how its sync moves with its local batch: devices that share a
    // host's cores wait in the all-reduce for peers still computing, a wait that grows with
    // the batch (measured here: 2 to 4 ranks on 2 cores). The slope of sync on local batch
    // within each placement of the class with the target's kind of slowest hop and two local
    // batches or more, pooled (least squares on the placements' deviations from their own
    // means); at least 0.
    double sync_per_sample = 0.0;
    if (data_parallel && devices > 1) {
      std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> rows;
      for (const PlacementMeasurement& p : input.profile) {
        if (p.device_class == target.device_class && p.nodes * p.devices_per_node > 1 &&
            (p.nodes > 1) == (target.nodes > 1) && p.sync_seconds > 0) {
          rows[{p.nodes, p.devices_per_node}].push_back(
              {static_cast<double>(p.local_batch), p.sync_seconds});
        }
      }
      double cross = 0.0, square = 0.0;
      for (const auto& [placement, points] : rows) {
        if (points.size() < 2) continue;
        double mean_batch = 0.0, mean_sync = 0.0;
        for (const auto& [b, sync] : points) {
          mean_batch += b / points.size();
          mean_sync += sync / points.size();
        }
        for (const auto& [b, sync] : points) {
          cross += (b - mean_batch) * (sync - mean_sync);
          square += (b - mean_batch) * (b - mean_batch);
        }
      }
      if (square > 0) sync_per_sample = std::max(0.0, cross / square);
    }
    std::string error;
    auto limit = input.no_fit_batch.find(target.device_class);
    const int no_fit = limit == input.no_fit_batch.end() ? 0 : limit->second;
    auto adam_limit = input.adam_no_fit_batch.find(target.device_class);
    const int adam_no_fit = adam_limit == input.adam_no_fit_batch.end() ? no_fit
                            : no_fit > 0 ? std::min(no_fit, adam_limit->second)
                                         : adam_limit->second;
    int too_large = 0;
    int adam_too_large = 0;  // of those, the Adam configurations that fit with SGD's state
    int beyond_int = 0;      // configurations whose global batch on this target exceeds an int
    std::vector<Measured> all_runs = measured;
    all_runs.insert(all_runs.end(), forecast.begin(), forecast.end());
    all_runs.insert(all_runs.end(), what_if.begin(), what_if.end());
    for (const Measured& m : all_runs) {
      const TrialConfig& c = m.config;
      // (local batch, epochs, how the epochs were obtained)
      struct Candidate {
        int local_batch;
        Estimate epochs;
        std::string from;
      };
      std::vector<Candidate> candidates;
      if (!data_parallel || devices == 1) {
        candidates.push_back({c.batch_size, m.epochs, m.from});
      } else {
        if (c.batch_size % devices == 0) {
          candidates.push_back({c.batch_size / devices, m.epochs, m.from});
        }
        const long long global = static_cast<long long>(c.batch_size) * devices;
        const auto at_global = [&](const std::vector<Measured>& list) {
          return std::any_of(list.begin(), list.end(), [&](const Measured& o) {
            return o.config.batch_size == global && o.config.optimizer == c.optimizer &&
                   o.config.learning_rate == c.learning_rate;
          });
        };
        // Not where that global batch was recorded: the measurement answers there. Nor where
        // the what-if batches already predict it (at the equal noise temperature where the
        // recorded batch sizes around it allow): one prediction per configuration and
        // placement. Both used to be listed, and the lower ranked first.
        if (global > std::numeric_limits<int>::max()) {
          ++beyond_int;
        } else if (!at_global(measured) && !at_global(what_if)) {
          const Measured up = scaled(m, static_cast<int>(global));
          candidates.push_back({c.batch_size, up.epochs, up.from});
        }
      }
      for (const Candidate& cand : candidates) {
        const int limit_of_c = c.optimizer == Optimizer::kAdam ? adam_no_fit : no_fit;
        if (limit_of_c > 0 && cand.local_batch >= limit_of_c) {
          ++too_large;
          if (no_fit == 0 || cand.local_batch < no_fit) ++adam_too_large;
          continue;
        }
        std::optional<Estimate> sync;
        std::optional<Estimate> compute;
        bool sync_measured = false;
        std::string sync_from_rows;  // this placement's other rows, where they gave the sync
        std::string compute_from;
        if (data_parallel && devices > 1) {
          // This placement's rows: the one at this local batch measures the step; the others
          // give the slowdown of one device's compute there against the class's step alone
          // (devices sharing a host, waiting for stragglers), as (step - sync) / alone, and
          // its synchronisation: the all-reduce moves the model's bytes over the same ring
          // whatever the batch, and the same devices share the host's cores as they did, so
          // those rows measure it more closely than a link fitted across ring sizes. Each
          // row's sync is moved along sync_per_sample to this local batch.
          std::vector<double> slowdowns;
          std::vector<double> other_syncs;
          for (const PlacementMeasurement& p : input.profile) {
            if (p.device_class != target.device_class || p.nodes != target.nodes ||
                p.nodes * p.devices_per_node != devices) {
              continue;
            }
            if (p.local_batch == cand.local_batch) {
              sync = Estimate::Measured(p.sync_seconds);
              compute = Estimate::Measured(std::max(0.0, p.step_seconds - p.sync_seconds));
              sync_measured = true;
            } else {
              if (p.sync_seconds > 0) {
                other_syncs.push_back(std::max(
                    0.0, p.sync_seconds + sync_per_sample * (cand.local_batch - p.local_batch)));
              }
              if (const double alone = step->At(p.local_batch).value; alone > 0) {
                slowdowns.push_back((p.step_seconds - p.sync_seconds) / alone);
              }
            }
          }
          if (!sync && !other_syncs.empty()) {
            std::sort(other_syncs.begin(), other_syncs.end());
            const size_t k = other_syncs.size();
            const double median = (other_syncs[(k - 1) / 2] + other_syncs[k / 2]) / 2;
            sync = Estimate::Predicted(median, std::min(other_syncs.front(), 0.95 * median),
                                       std::max(other_syncs.back(), 1.05 * median));
            sync_from_rows = "measured at " + std::to_string(k) + " other batch" +
                             (k == 1 ? "" : "es") + " of this placement";
            if (sync_per_sample > 0) {
              char why[120];
              std::snprintf(why, sizeof(why),
                            ", moved by %.3g ms per sample of local batch (sync on batch within "
                            "this class's placements)",
                            sync_per_sample * 1e3);
              sync_from_rows += why;
            }
          }
          if (!sync) sync = fitted_sync;
          if (!compute && !slowdowns.empty()) {
            std::sort(slowdowns.begin(), slowdowns.end());
            const double median = slowdowns[slowdowns.size() / 2];
            const Estimate alone = step->At(cand.local_batch);
            compute = Estimate::Predicted(alone.value * median,
                                          alone.lo * std::min(1.0, slowdowns.front()),
                                          alone.hi * std::max(1.0, slowdowns.back()));
            char why[120];
            std::snprintf(why, sizeof(why),
                          " x %.2f, the slowdown measured at %zu other batch%s of this placement",
                          median, slowdowns.size(), slowdowns.size() == 1 ? "" : "es");
            compute_from = why;
          }
        }
        const auto own_step = step_of_optimizer.find(c.optimizer);
        const bool per_optimizer = own_step != step_of_optimizer.end();
        StatusOr<TtaBreakdown> cost =
            PredictTta(target, input.workload, cand.local_batch, cand.epochs,
                       per_optimizer ? own_step->second : *step, sync, compute, warmup_steps);
        if (!cost.ok()) {
          error = cost.status().message();
          continue;
        }
        PlannedConfig planned;
        planned.config = c;
        planned.config.batch_size = cost->global_batch;
        planned.cost = *cost;
        planned.epochs_from = cand.from;
        const std::string of_optimizer =
            per_optimizer ? std::string(", ") + OptimizerName(c.optimizer) + of_rows : "";
        planned.step_from =
            sync_measured ? "measured at this placement"
            : cost->step_compute.measured
                ? "measured (" + step_from + of_optimizer + ")"
                : "fitted alpha + beta x batch (" + step_from + of_optimizer + ")" + compute_from;
        planned.sync_from = target.kind == Target::Kind::kFederated ? target.links_measured
                            : !(data_parallel && devices > 1)       ? ""
                            : sync_measured                         ? "measured at this placement"
                            : !sync_from_rows.empty()               ? sync_from_rows
                            : sync                                  ? fitted_from
                            : target.links_measured.empty()
                                ? "ring all-reduce over declared links"
                                : "ring all-reduce, " + target.links_measured;
        planned.transfer_from = !(target.data_bytes > 0)            ? ""
                                : target.data_link_measured.empty() ? "declared link"
                                                                    : target.data_link_measured;
        if (target.kind == Target::Kind::kSingle) {
          auto on_class = input.measured_tta.find(target.device_class);
          if (on_class != input.measured_tta.end()) {
            auto m = on_class->second.find(
                {planned.config.batch_size, planned.config.learning_rate, c.optimizer});
            if (m != on_class->second.end()) planned.measured_tta_s = m->second;
          }
        }
        plan.ranked.push_back(std::move(planned));
      }
    }
    std::stable_sort(plan.ranked.begin(), plan.ranked.end(),
                     [](const PlannedConfig& a, const PlannedConfig& b) {
                       return a.cost.tta.value < b.cost.tta.value;
                     });
    auto configurations = [](int n) {
      return std::to_string(n) + " configuration" + (n == 1 ? "" : "s");
    };
    if (too_large > 0) {
      const int sgd_too_large = too_large - adam_too_large;
      if (sgd_too_large > 0) {
        plan.left_out = configurations(sgd_too_large) + " with a local batch of " +
                        std::to_string(no_fit) + " or more";
      }
      if (adam_too_large > 0) {
        plan.left_out += (plan.left_out.empty() ? "" : ", and ") + configurations(adam_too_large) +
                         " of Adam with a local batch of " + std::to_string(adam_no_fit) +
                         " or more (Adam's state)";
      }
      plan.left_out += ": it does not fit " + target.device_class + "'s memory (its probe)";
    }
    if (beyond_int > 0) {
      plan.left_out += (plan.left_out.empty() ? "" : "; ") + configurations(beyond_int) +
                       " whose global batch on the target's devices is above " +
                       std::to_string(std::numeric_limits<int>::max());
    }
    if (plan.ranked.empty()) plan.note = too_large + beyond_int > 0 ? plan.left_out : error;
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::vector<DataMoveVerdict> CompareDataMoves(const std::vector<TargetPlan>& plans) {
  const TargetPlan* staying = nullptr;
  for (const TargetPlan& plan : plans) {
    if (plan.ranked.empty() || plan.target.data_bytes > 0) continue;
    if (staying == nullptr ||
        plan.ranked.front().cost.tta.value < staying->ranked.front().cost.tta.value) {
      staying = &plan;
    }
  }
  std::vector<DataMoveVerdict> verdicts;
  if (staying == nullptr) return verdicts;
  for (const TargetPlan& plan : plans) {
    if (plan.ranked.empty() || !(plan.target.data_bytes > 0)) continue;
    const TtaBreakdown& best = plan.ranked.front().cost;
    DataMoveVerdict v;
    v.moving = plan.target.name;
    v.staying = staying->target.name;
    v.transfer_s = best.transfer.value;
    v.moving_train_s = best.tta.value - v.transfer_s;
    v.staying_s = staying->ranked.front().cost.tta.value;
    v.data_bytes = plan.target.data_bytes;
    v.bandwidth_bytes_s = plan.target.data_link.bandwidth_bytes_s;
    v.break_even_transfer_s = v.staying_s - v.moving_train_s;
    v.pays = best.tta.value < v.staying_s;
    // The link's latency is paid once whatever the bandwidth.
    const double bytes_time = v.break_even_transfer_s - plan.target.data_link.latency_s;
    if (bytes_time > 0) {
      v.min_bandwidth_bytes_s = v.data_bytes / bytes_time;
      v.max_data_bytes = v.bandwidth_bytes_s * bytes_time;
    } else {
      v.min_bandwidth_bytes_s = std::numeric_limits<double>::infinity();
    }
    verdicts.push_back(v);
  }
  return verdicts;
}

std::map<std::string, std::map<std::tuple<int, double, Optimizer>, double>> MeasuredTtaByClass(
    const std::vector<TrialRecord>& trials, const std::vector<CurvePoint>& points,
    const std::map<std::string, std::string>& class_of, double target_accuracy) {
  std::map<int64_t, const TrialRecord*> by_id;
  for (const TrialRecord& t : trials) by_id[t.id] = &t;
  struct Elapsed {
    double seconds = 0.0;
    bool done = false;
    bool scaled = false;
    bool unscaled = false;
  };
  std::map<int64_t, Elapsed> elapsed;
  std::map<std::string, std::map<std::tuple<int, double, Optimizer>, std::vector<double>>> reached;
  for (const CurvePoint& p : points) {
    auto t = by_id.find(p.trial_id);
    Elapsed& e = elapsed[p.trial_id];
    if (t == by_id.end() || e.done) continue;
    e.seconds += p.compute_s + p.comm_s;
    (p.reference_s != p.compute_s + p.comm_s ? e.scaled : e.unscaled) = true;
    if (p.val_accuracy < target_accuracy) continue;
    e.done = true;
    auto cls = class_of.find(t->second->worker);
    if ((e.scaled && e.unscaled) || cls == class_of.end()) continue;
    const TrialConfig& c = t->second->config;
    reached[cls->second][{c.batch_size, c.learning_rate, c.optimizer}].push_back(e.seconds);
  }
  std::map<std::string, std::map<std::tuple<int, double, Optimizer>, double>> mean;
  for (const auto& [name, configs] : reached) {
    for (const auto& [key, seconds] : configs) {
      double sum = 0.0;
      for (double s : seconds) sum += s;
      mean[name][key] = sum / seconds.size();
    }
  }
  return mean;
}

}  // namespace topotune
