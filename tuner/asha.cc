#include "tuner/asha.h"

#include <algorithm>

#include "tuner/objective.h"

namespace topotune {

bool RanksAbove(const RungResult& a, const RungResult& b) {
  return RanksAbove(TtaOutcome{a.reached_target, a.tta_s, a.accuracy},
                    TtaOutcome{b.reached_target, b.tta_s, b.accuracy});
}

AshaRungs::AshaRungs(int num_rungs, int reduction_factor, bool synchronous, int first_rung)
    : reduction_factor_(reduction_factor),
      synchronous_(synchronous),
      first_rung_(first_rung),
      entered_(static_cast<size_t>(num_rungs)),
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
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const RungResult& a, const RungResult& b) { return RanksAbove(a, b); });
  sorted.resize(sorted.size() / static_cast<size_t>(reduction_factor_));
  std::vector<int64_t> ids;
  for (const auto& r : sorted) ids.push_back(r.trial_id);
  return ids;
}

void AshaRungs::Enter(int rung) { ++entered_[static_cast<size_t>(rung)]; }

bool AshaRungs::RungComplete(int rung) const {
  if (rung == first_rung_ && !first_rung_closed_) return false;
  return Size(rung) >= entered_[static_cast<size_t>(rung)];
}

std::vector<AshaRungs::Candidate> AshaRungs::PromotionCandidates() const {
  std::vector<Candidate> candidates;
  for (int rung = static_cast<int>(rungs_.size()) - 2; rung >= first_rung_; --rung) {
    if (synchronous_ && !RungComplete(rung)) continue;
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
