#pragma once

// The objective, defined once: time-to-accuracy (TTA), censored. A trial that reached the
// target has a TTA, its training seconds until then; one that did not (stopped, or still
// running) has only "more than its elapsed time", and is ranked by its best accuracy so
// far. ASHA's promotions, the report's ranking and the samplers' scores all use this.

namespace topotune {

struct TtaOutcome {
  bool reached_target = false;
  double tta_s = 0.0;     ///< training seconds to the target, when reached
  double accuracy = 0.0;  ///< best validation accuracy so far (< 0: failed or infeasible)
};

// Whether `a` ranks strictly above `b`: every outcome that reached the target beats every
// one that did not; among those that did, the lower TTA wins, and among the rest (or at
// equal TTA) the higher accuracy.
bool RanksAbove(const TtaOutcome& a, const TtaOutcome& b);

// The samplers' higher-better score: in (1.01, 2] by TTA for an outcome at the target,
// else the accuracy in [0, 1]. Log-TTA keeps a 2x faster trial clearly apart from the rest
// (1 + 1/(1+TTA) would squeeze 50 s vs 100 s into 0.01).
double SamplerScore(const TtaOutcome& outcome);

}  // namespace topotune
