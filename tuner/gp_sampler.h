#pragma once

#include <cstdint>
#include <memory>

#include "tuner/sampler.h"
#include "tuner/types.h"

namespace topotune {

struct GpSamplerOptions {
  int n_startup = 8;             ///< random proposals until this many observations
  double random_fraction = 0.1;  ///< then this share of proposals is random (as SMAC, BOHB)
  int min_points_per_rung = 0;   ///< observations a rung needs to be modelled; 0 = n_startup
  int fit_rung = -1;             ///< >= 0: model only this rung; -1: the highest rung with enough
  int max_model_points = 200;    ///< observations the GP conditions on: best half + most recent
  int max_fit_points = 100;      ///< of those, used to fit the hyperparameters (same rule)
  int refit_every = 25;          ///< refit after n/10 new points, at least 1, at most this
  int fit_restarts = 3;          ///< Nelder-Mead starts of the first fit; later fits use 2
  int n_candidates = 500;        ///< stratified random candidates (a pool; see Acquisition)
  int n_local_candidates = 100;  ///< perturbations of the five best observations
  int n_refine_candidates = 60;  ///< learning-rate perturbations of the winner (second stage)
  int max_pending = 8;           ///< unobserved proposals fantasised by kriging believer; 0 = off
  double failure_margin = 0.25;  ///< failed/infeasible score: worst - margin * (best - worst)
  double promote_fraction = 1.0 / 3;  ///< the scheduler's 1/eta (see StoppedBelowRung)
  bool incremental = true;  ///< edit the Cholesky factor as data changes; false: refactor (tests)
  double repeat_radius = 0.0;  ///< log-lr distance of a repeat (same batch, optimizer); 0 = off
};

// Gaussian-process Bayesian optimisation over (batch size, learning rate, optimizer).
//
// Model. A configuration is a point of the unit cube: log2 batch size and log learning
// rate, each normalised over the space's range, and the optimizer's index normalised to
// [0, 1] (0 or 1 with two optimizers). A zero-mean GP with a Matérn-5/2 ARD kernel (signal
// variance, one length scale per dimension, Gaussian noise) models the score, standardised
// (minus the mean, over the standard deviation). The hyperparameters maximise the log
// marginal likelihood (Cholesky by Eigen's LLT) in log space within bounds, by Nelder-Mead:
// the first fit from a default and random starts, later fits from the previous optimum
// and the default. A fit uses at most max_fit_points points and is repeated after n/10 new
// observations (at least 1, at most refit_every). Once the fit set is full, a refit of the
// same rung starts from the previous optimum only, with a smaller simplex and half the
// evaluations, and from the default too only where that has the higher likelihood.
// Between refits the hyperparameters stay and the Cholesky factor is edited in place: a
// point that joins the conditioning set adds a last row (O(n^2)), one that leaves it is
// removed by a rank-one update of the rows after it (O(n^2)), instead of factorising K
// anew (O(n^3)); a refit, a change of rung or a large change of the set factorises anew.
//
// Acquisition. Expected improvement over the best posterior mean at the data, in log form
// (no underflow far from the incumbent), maximised exactly over candidates: a pool with
// every (batch size, optimizer) pair and a jittered grid of learning rates (n_candidates
// in all), those of allowed batch sizes, and Gaussian perturbations of the five best
// observations (learning rate, one power of two of batch size, optimizer); then a second
// round of learning-rate perturbations around the winner. The pool persists across
// proposals, one (batch size, optimizer) slice drawn afresh per proposal, and its
// covariances with the conditioning set follow the factor's edits (a row per point that
// joins), so a proposal computes covariances only for its fresh candidates.
// Batch sizes stay on the space's powers of two and at most max_batch_size. Upper bounds
// on EI come from upper bounds on the posterior variance (conditioning on fewer points
// leaves more of it): the variance given the nearest point, for all candidates, in order
// of which the others are examined; given the six nearest, and the best exact candidate's
// standard deviation plus their distance in the prior's metric (the posterior standard
// deviation is 1-Lipschitz in it). The O(n^2) exact variance is computed only for a
// candidate whose bounds can still beat the best exact EI.
// A random_fraction of the proposals after the start-up is random (SMAC's and BOHB's
// interleaving), which keeps EI from settling on a local optimum the GP is sure of.
//
// Repeats (repeat_radius > 0, which the forecast sets). A candidate with the batch size and
// optimizer of an earlier proposal (observed, or one of the pending ones below) and a
// normalised log learning rate within repeat_radius of its is a repeat. Repeats are left
// out of the first stage unless every candidate is one, and out of the second unless the
// first stage's winner is one; so the GP proposes a repeat only when it has nothing else,
// and then the one of largest EI. Under the forecast a trial is stopped as soon as it
// cannot beat the incumbent, and its score is what its forecast expects: a point the GP
// knows well can keep the largest EI while the GP is surer still that the rest is worse,
// and it was proposed again and again (38 of 60 trials on one replay-table configuration
// in a run; see algorithms.cc). A job long enough that every learning rate of every
// (batch size, optimizer) pair lies within the radius of an earlier proposal has only
// repeats left, and the rule no longer applies (bench_sampler_latency's 1,000 random
// observations are such a history).
//
// Failed and infeasible observations. A configuration that diverged or ran out of memory
// at a short budget would at a longer one too, so they count at every rung: each enters
// the modelled rung's data with the score worst - failure_margin * (best - worst) of that
// rung's successful observations, low enough to steer EI away, close enough not to
// flatten the model of the good region.
//
// Fidelity (BOHB). Scores are comparable only within a rung. The model fits the highest
// rung with at least min_points_per_rung observations; with none, it proposes at random.
// Configurations that successive halving stopped at a lower rung (below the top
// promote_fraction there, never seen higher) enter that model too, ranked below all of its
// own observations (by rung reached, then score) and above the failures' score. Without
// them the model of rung 1 knows nothing of what died at rung 0 and proposes it again.
//
// Scale. With more than max_model_points observations the GP conditions on the best half
// and the most recent of the rest (so recent failures stay), and the cost of a proposal
// hardly grows with the history:
// bench_sampler_latency measures a round (Propose and Observe) at 1,000 observations at
// about 0.7 ms on one core (p50), a refit every 25 observations at about 10 ms, and the
// first fit (three starts) at about 45 ms.
//
// Parallel workers. Proposals not yet observed (the last max_pending) are fantasised at
// their posterior mean (kriging believer): the mean stays, the variance there vanishes
// and the bar of EI rises to their mean, so concurrent proposals spread out instead of
// repeating. An observation whose config equals a pending one clears it.
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

  // The model's posterior at `config` on the scale of the scores, pending proposals left
  // out; NaNs while proposals are random (before n_startup observations). Fits the model
  // first where the next Propose would.
  struct Prediction {
    double mean;
    double sd;
  };
  Prediction Predict(const TrialConfig& config);

 private:
  struct State;  // keeps Eigen out of this header
  std::unique_ptr<State> state_;
};

}  // namespace topotune
