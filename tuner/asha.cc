#include "tuner/asha.h"

#include <algorithm>

namespace topotune {

bool RanksAbove(const RungResult& a, const RungResult& b) {
  if (a.reached_target != b.reached_target) return a.reached_target;
  if (a.reached_target) return a.tta_s < b.tta_s;
  return a.accuracy > b.accuracy;
}

AshaRungs::AshaRungs(int num_rungs, int reduction_factor)
    : reduction_factor_(reduction_factor),
      rungs_(static_cast<size_t>(num_rungs)),
      promoted_(static_cast<size_t>(num_rungs)) {}

void AshaRungs::Record(int rung, const RungResult& result) {
  auto& results = rungs_[static_cast<size_t>(rung)];
  for (auto& r : results) {
    if (r.trial_id == result.trial_id) {
      r = result;
      return;
    }
  }
  results.push_back(result);
}

std::vector<int64_t> AshaRungs::TopOfRung(int rung) const {
  std::vector<RungResult> sorted = rungs_[static_cast<size_t>(rung)];
  std::stable_sort(sorted.begin(), sorted.end(), RanksAbove);
  sorted.resize(sorted.size() / static_cast<size_t>(reduction_factor_));
  std::vector<int64_t> ids;
  for (const auto& r : sorted) ids.push_back(r.trial_id);
  return ids;
}

std::vector<AshaRungs::Candidate> AshaRungs::PromotionCandidates() const {
  std::vector<Candidate> candidates;
  for (int rung = static_cast<int>(rungs_.size()) - 2; rung >= 0; --rung) {
    for (int64_t id : TopOfRung(rung)) {
      if (!IsPromoted(rung, id)) candidates.push_back({rung, id});
    }
  }
  return candidates;
}

void AshaRungs::MarkPromoted(int rung, int64_t trial_id) {
  if (!IsPromoted(rung, trial_id)) promoted_[static_cast<size_t>(rung)].push_back(trial_id);
}

bool AshaRungs::IsPromoted(int rung, int64_t trial_id) const {
  const auto& ids = promoted_[static_cast<size_t>(rung)];
  return std::find(ids.begin(), ids.end(), trial_id) != ids.end();
}

}  // namespace topotune
