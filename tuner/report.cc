#include "tuner/report.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "tuner/objective.h"
#include "tuner/seed_groups.h"

namespace topotune {

bool TrialRanksAbove(const TrialRecord& a, const TrialRecord& b) {
  const TtaOutcome x{a.reached_target, a.tta_s, a.best_accuracy};
  const TtaOutcome y{b.reached_target, b.tta_s, b.best_accuracy};
  if (RanksAbove(x, y)) return true;
  if (RanksAbove(y, x)) return false;
  return a.number < b.number;
}

namespace {

// The named configuration's runs (Report::best): its seed group (tuner/seed_groups.h),
// or where none is settled, the best trial alone. A trial confirmed on the job's
// reference class (TrialRecord::confirms) gives way to its confirmation: what was measured
// there supersedes what was counted from another class. A rerun on another seed counts
// only through its group, and a configuration with a run that missed the target is not
// named.
std::optional<TrialRecord> Best(const std::vector<TrialRecord>& trials, int seeds,
                                std::vector<double>* seed_tta_s = nullptr) {
  std::vector<const TrialRecord*> records;
  for (const auto& t : trials) records.push_back(&t);
  const std::map<int, SeedGroup> groups = GroupBySeed(records);
  if (const SeedGroup* named = NamedGroup(groups, seeds); named != nullptr && seeds > 1) {
    TrialRecord best = *named->first;
    best.tta_s = named->MeanTta();
    if (seed_tta_s != nullptr) *seed_tta_s = named->tta_s;
    return best;
  }
  std::set<int> confirmed;
  std::set<int> reruns;
  for (const auto& t : trials) {
    auto group = groups.find(t.confirms);
    if (group != groups.end() && IsRerunOf(t, *group->second.first)) {
      reruns.insert(t.number);
    } else if (t.confirms >= 0 && t.epochs_done > 0) {
      confirmed.insert(t.confirms);
    }
  }
  std::optional<TrialRecord> best;
  for (const auto& t : trials) {
    if (t.epochs_done == 0 || reruns.count(t.number) ||
        (t.confirms < 0 && (confirmed.count(t.number) || groups.at(t.number).missed))) {
      continue;
    }
    if (!best || TrialRanksAbove(t, *best)) best = t;
  }
  if (best && seed_tta_s != nullptr && best->reached_target) *seed_tta_s = {best->tta_s};
  return best;
}

// Mean epoch wall time per batch size, from the measured points.
std::map<int, double> EpochSecondsByBatch(const std::vector<TrialRecord>& trials,
                                          const std::vector<CurvePoint>& points) {
  std::map<int64_t, int> batch_of;
  for (const auto& t : trials) batch_of[t.id] = t.config.batch_size;
  std::map<int, std::pair<double, int>> sums;
  for (const auto& p : points) {
    auto it = batch_of.find(p.trial_id);
    if (it == batch_of.end()) continue;
    sums[it->second].first += p.wall_s;
    sums[it->second].second += 1;
  }
  std::map<int, double> mean;
  for (const auto& [b, s] : sums) mean[b] = s.first / s.second;
  return mean;
}

// Epoch seconds at batch size b: measured, else interpolated linearly in (log b, log s)
// between the nearest measured sizes, else the nearest one's.
double EpochSecondsAt(const std::map<int, double>& measured, int b) {
  auto hi = measured.lower_bound(b);
  if (hi != measured.end() && hi->first == b) return hi->second;
  if (hi == measured.end()) return std::prev(hi)->second;
  if (hi == measured.begin()) return hi->second;
  auto lo = std::prev(hi);
  const double x =
      (std::log(b) - std::log(lo->first)) / (std::log(hi->first) - std::log(lo->first));
  return std::exp(std::log(lo->second) + x * (std::log(hi->second) - std::log(lo->second)));
}

}  // namespace

bool CountedAsMeasured(const CurvePoint& p, const std::string& reference_class,
                       const Target& reference) {
  const double measured = p.compute_s + p.comm_s;
  if (reference_class.empty() || p.device_class.empty() || !(measured > 0)) return false;
  if (p.device_class == reference_class && !OnSeveralDevices(reference)) return false;
  return p.reference_s == measured;
}

Report BuildReport(const JobRecord& job, const JobSpec& spec,
                   const std::vector<TrialRecord>& trials, const std::vector<CurvePoint>& points) {
  Report r;
  r.job = job;
  r.algorithm = spec.algorithm;
  if (spec.algorithm == "forecast") r.sampler = spec.forecast_sampler;
  r.auto_reason = spec.auto_reason;
  r.reference_class = spec.reference_class;
  r.reference_target = job.counted_links
                           ? WithCountedLinks(ReferenceTarget(spec), *job.counted_links)
                           : ReferenceTarget(spec);
  r.target_accuracy = spec.target_accuracy;
  r.trials_total = static_cast<int>(trials.size());
  for (const auto& t : trials) {
    ++r.trials_by_state[TrialStateName(t.state)];
    r.cut_s += t.cut_s;
  }
  r.best = Best(trials, spec.incumbent_seeds, &r.best_seed_tta_s);
  r.target_reached = r.best && r.best->reached_target;
  for (const auto& p : points) {
    r.compute_s += p.wall_s;
    r.train_s += p.compute_s + p.comm_s;
    ++r.epochs_trained;
    if (r.best && p.trial_id == r.best->id) r.best_curve.push_back(p);
    if (!p.device_class.empty()) {
      std::vector<std::string>& classes = r.classes_of[p.trial_id];
      if (std::find(classes.begin(), classes.end(), p.device_class) == classes.end()) {
        classes.push_back(p.device_class);
      }
    }
    if (CountedAsMeasured(p, r.reference_class, r.reference_target)) {
      ++r.unscaled_epochs[p.trial_id];
      ++r.unscaled_epochs_total;
    }
  }
  std::sort(r.best_curve.begin(), r.best_curve.end(),
            [](const CurvePoint& a, const CurvePoint& b) { return a.epoch < b.epoch; });
  r.ranking = trials;
  std::stable_sort(r.ranking.begin(), r.ranking.end(), TrialRanksAbove);

  const std::map<int, double> measured = EpochSecondsByBatch(trials, points);
  const int per_batch = static_cast<int>(spec.space.optimizers.size()) * spec.grid_lr_points;
  r.grid.points = per_batch * static_cast<int>(spec.space.batch_sizes.size());
  if (spec.asha.unit == RungUnit::kSeconds) {
    r.grid.seconds_per_point = spec.asha.RungSeconds(spec.asha.num_rungs - 1);
    r.grid.batch_sizes_measured = static_cast<int>(measured.size());
    if (r.train_s > 0) {
      r.grid.cost_s = r.grid.points * r.grid.seconds_per_point * (r.compute_s / r.train_s);
    }
  } else {
    r.grid.epochs_per_point = spec.asha.MaxEpochs();
    for (int b : spec.space.batch_sizes) {
      if (measured.empty()) break;  // no epoch time to estimate from
      if (measured.count(b)) ++r.grid.batch_sizes_measured;
      r.grid.cost_s += per_batch * r.grid.epochs_per_point * EpochSecondsAt(measured, b);
    }
  }
  r.grid_ratio = r.grid.cost_s > 0 ? r.compute_s / r.grid.cost_s : 0.0;
  return r;
}

JobProgress SummariseProgress(const JobRecord& job, const JobSpec& spec,
                              const std::vector<TrialRecord>& trials) {
  JobProgress p;
  p.trials_total = spec.max_trials;
  p.trials_sampled = static_cast<int>(trials.size());
  int settled = 0;
  double spent_s = 0;
  for (const auto& t : trials) {
    ++p.trials_by_state[TrialStateName(t.state)];
    if (IsTerminal(t.state) || t.state == TrialState::kPaused) ++settled;
    spent_s += t.train_s + t.cut_s;
  }
  p.best = Best(trials, spec.incumbent_seeds);
  if (IsTerminal(job.state)) {
    p.fraction = 1.0;
  } else if (spec.max_trials > 0) {
    p.fraction = static_cast<double>(settled) / spec.max_trials;
    // A job with a time budget ends when it is spent, whichever comes first.
    if (spec.time_budget_s > 0) p.fraction = std::max(p.fraction, spent_s / spec.time_budget_s);
    p.fraction = std::min(0.99, p.fraction);
  }
  return p;
}

}  // namespace topotune
