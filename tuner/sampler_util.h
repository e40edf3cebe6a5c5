#pragma once

// Small helpers the samplers share (tuner/*_sampler.cc). Not a public interface.

#include <deque>
#include <random>
#include <vector>

#include "tuner/sampler.h"

namespace topotune {

// A uniform double in [0, 1) from the raw engine output, identical on every platform
// (std::uniform_real_distribution is not specified bit-for-bit).
double Uniform01(std::mt19937_64& rng);

// A standard normal draw by Box-Muller: portable, unlike std::normal_distribution.
double StandardNormal(std::mt19937_64& rng);

// The rung a model fits: `fit_rung` when it has enough observations, else (fit_rung < 0)
// the highest rung with at least `min_points`; -1 when there is none.
int ModelledRung(const std::vector<Observation>& observations, int fit_rung, int min_points);

bool SameConfig(const TrialConfig& a, const TrialConfig& b);

// An observation at a rung below the modelled one whose configuration got no further and
// ranked below the top `promote_fraction` of its rung: successive halving stopped it (or
// will). Models of the higher rung must see these, or they re-propose what died early.
// `position` in [0, 1) orders them as Optuna orders pruned trials, by rung reached and
// then by score: 0 is the worst of rung 0; a higher rung ranks above every lower one.
struct StoppedBelow {
  int observation;  ///< index into the observations
  double position;
  double gap;  ///< the best stopped score of its rung minus its own score: how much worse
};
std::vector<StoppedBelow> StoppedBelowRung(const std::vector<Observation>& observations, int rung,
                                           double promote_fraction);

// Proposals not yet observed, which model-based samplers treat as if their result were the
// model's prediction so concurrent proposals spread out. Remember keeps the newest
// max_pending (0 keeps none); Forget drops the oldest one equal to `config`.
void RememberPending(std::deque<TrialConfig>* pending, const TrialConfig& config, int max_pending);
void ForgetPending(std::deque<TrialConfig>* pending, const TrialConfig& config);

}  // namespace topotune
