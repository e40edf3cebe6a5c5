#pragma once

#include <cstdint>
#include <memory>

#include "tuner/sampler.h"
#include "tuner/types.h"

namespace topotune {

struct GpSamplerOptions {
  int n_startup = 8;            ///< random proposals until this many observations
  int min_points_per_rung = 0;  ///< observations a rung needs to be modelled; 0 = n_startup
  int fit_rung = -1;            ///< >= 0: model only this rung; -1: the highest rung with enough
  int max_model_points = 200;   ///< observations the GP conditions on: best half + most recent
  int max_fit_points = 100;     ///< of those, used to fit the hyperparameters (same rule)
  int refit_every = 25;         ///< refit after n/10 new points, at least 1, at most this
  int fit_restarts = 3;         ///< Nelder-Mead starts of the first fit; later fits use 2
  int n_candidates = 500;       ///< stratified random candidates per proposal
  int n_local_candidates = 100; ///< perturbations of the five best observations
  int n_refine_candidates = 60; ///< learning-rate perturbations of the winner (second stage)
  int max_pending = 8;          ///< unobserved proposals fantasised by kriging believer; 0 = off
  double failure_margin = 0.25; ///< failed/infeasible score: worst - margin * (best - worst)
};

// Gaussian-process Bayesian optimisation over (batch size, learning rate, optimizer).
//
// Model. A configuration is a point of the unit cube: log2 batch size and log learning
// rate, each normalised over the space's range, and the optimizer's index (0 or 1). A
// zero-mean GP with a Matérn-5/2 ARD kernel (signal variance, one length scale per
// dimension, Gaussian noise) models the standardised score. The hyperparameters maximise
// the log marginal likelihood (Cholesky by Eigen's LLT) in log space, within bounds, by
// Nelder-Mead from a few starts (the previous optimum, a default, random points): a fit
// costs a few hundred likelihood evaluations on at most max_fit_points points. Between
// refits the hyperparameters stay and only the Cholesky factor is recomputed.
//
// Acquisition. Expected improvement over the best posterior mean at the observed points,
// computed in log form (no underflow far from the incumbent), maximised exactly over a
// candidate set: every allowed (batch size, optimizer) pair with a jittered grid of
// learning rates (n_candidates in all), plus Gaussian perturbations of the five best
// observations in learning rate, batch size (one power of two) and optimizer. Batch sizes
// stay on the space's powers of two and at most max_batch_size. Candidates are ranked by
// an upper bound on EI (the posterior variance given only the nearest point bounds the
// full one from above), so the O(n^2) variance is computed only for candidates that can
// still win.
//
// Failed and infeasible observations. A configuration that diverged or ran out of memory
// at a short budget would at a longer one too, so they count at every rung: each enters
// the modelled rung's data with the score worst - failure_margin * (best - worst) of that
// rung's successful observations, low enough to steer EI away, close enough not to
// flatten the model of the good region.
//
// Fidelity (BOHB). Scores are comparable only within a rung. The model fits the highest
// rung with at least min_points_per_rung observations; with none, it proposes at random.
//
// Scale. With more than max_model_points observations the GP conditions on the best half
// and the most recent of the rest (keeping recent failures), so a proposal costs about
// O(max_model_points^2 * candidates that survive the bound) regardless of history.
//
// Parallel workers. Proposals not yet observed (the last max_pending) are fantasised at
// the posterior mean (kriging believer): the mean stays, their variance vanishes, so
// concurrent proposals spread out instead of repeating. An observation whose config
// equals a pending one clears it.
//
// Deterministic for a seed. Not thread-safe.
class GpSampler final : public Sampler {
 public:
  GpSampler(SearchSpace space, uint64_t seed, GpSamplerOptions options = {});
  ~GpSampler() override;
  GpSampler(const GpSampler&) = delete;
  GpSampler& operator=(const GpSampler&) = delete;

  TrialConfig Propose(int max_batch_size) override;
  void Observe(const Observation& observation) override;

  // The rung the last proposal modelled; -1 if it was random.
  int modelled_rung() const;

 private:
  struct State;  // keeps Eigen out of this header
  std::unique_ptr<State> state_;
};

}  // namespace topotune
