#include "tuner/objective.h"

#include <algorithm>
#include <cmath>

namespace topotune {

bool RanksAbove(const TtaOutcome& a, const TtaOutcome& b) {
  if (a.reached_target != b.reached_target) return a.reached_target;
  if (a.reached_target && a.tta_s != b.tta_s) return a.tta_s < b.tta_s;
  return a.accuracy > b.accuracy;
}

double SamplerScore(const TtaOutcome& outcome) {
  if (outcome.reached_target) return std::max(1.01, 2.0 - std::log10(1.0 + outcome.tta_s) / 10.0);
  return std::max(outcome.accuracy, 0.0);
}

}  // namespace topotune
