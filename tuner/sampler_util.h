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

// Proposals not yet observed, which model-based samplers treat as if their result were the
// model's prediction so concurrent proposals spread out. Remember keeps the newest
// max_pending (0 keeps none); Forget drops the oldest one equal to `config`.
void RememberPending(std::deque<TrialConfig>* pending, const TrialConfig& config, int max_pending);
void ForgetPending(std::deque<TrialConfig>* pending, const TrialConfig& config);

}  // namespace topotune
