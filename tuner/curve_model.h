#pragma once

// The learning-curve model: from the first epochs of a trial's validation-accuracy curve, when
// will it first reach the target accuracy, with what uncertainty, and how likely is it never
// to within the job's epoch limit?
//
// Which model, and why. The anchors were:
//  - parametric curve ensembles (Domhan, Springenberg, Hutter, IJCAI 2015): a weighted sum of
//    11 saturating families (pow3, log-power, Janoschek, MMF, ...), sampled by MCMC;
//  - Freeze-Thaw BO (Swersky et al. 2014): a GP with an exponential-decay kernel per curve
//    under a GP over configurations;
//  - DyHPO (Wistuba et al., NeurIPS 2022): a deep-kernel GP over (configuration, budget,
//    curve so far), trained during the search;
//  - LC-PFN (Adriaensen et al., NeurIPS 2023) and ifBO (Rakotoarison et al., ICML 2024):
//    transformers pre-trained on millions of synthetic curves, answering in one forward pass.
// The PFNs need pre-trained weights (nothing may be downloaded, and they are Python models);
// DyHPO needs a network trained per job, for a few dozen curves; Freeze-Thaw's kernel only
// describes exponential decay towards an asymptote, so it cannot express the slow starters
// (flat, then a late rise) that this model exists for. We take Domhan's approach: saturating
// parametric families fitted to the partial curve, with sigmoid-in-log-time families for the
// slow starters, combined by how well each explains the curve. MCMC (Domhan's 250 k samples)
// is far over a 1 ms budget, so each family is fitted by Levenberg-Marquardt and its posterior
// is approximated by a Gaussian at the optimum (Laplace), from which parameter samples are
// drawn. The first epoch at which a sampled curve plus observation noise reaches the target
// gives one sample of the answer; noise matters, because a noisy curve crosses a target near
// its plateau earlier than its mean does. The noise level is pooled over the job's curves.
//
// Pure C++ and Eigen. Deterministic: the same curve and seed give the same prediction.

#include <cstdint>
#include <limits>
#include <vector>

namespace topotune {

// The model's answer for one partial curve.
struct EpochsToTarget {
  static constexpr double kNever = std::numeric_limits<double>::infinity();
  // Probability that the curve first reaches the target at an epoch <= the limit.
  double p_reach = 0.0;
  // Quantiles of that first epoch, "never" counted as kNever: the median and an 80%
  // interval (10th and 90th percentiles). An interval end is kNever when more than that
  // share of the samples never reaches the target.
  double median = kNever;
  double lo = kNever;
  double hi = kNever;
  // The sampled first epochs, ascending, kNever last: P(first epoch <= e) for any e.
  std::vector<double> samples;
  // P(first epoch <= epoch), from the samples.
  double ProbabilityBy(double epoch) const;
};

struct CurveModelOptions {
  int samples = 256;         ///< posterior samples per prediction
  double min_noise = 0.003;  ///< floor of the observation noise's standard deviation
  double max_noise = 0.2;    ///< and its ceiling
  // Widens the Laplace posterior of each family's parameters (its standard deviations are
  // multiplied by this): a Gaussian at the optimum understates how far a curve's few
  // epochs leave its future open.
  double posterior_scale = 1.0;
  // And further for a curve that has come less than half way from its start to the target,
  // up to this factor for one that has not come at all. Chosen on the committed replay
  // tables' calibration (bench/RESULTS.md), so it is fitted to them, not validated.
  double creep_widening = 3.0;
  // And gives a creeping curve (same measure) the flat curve's chance of taking off later,
  // with the job's rate among curves that learned something (see Predict).
  bool creep_take_off = true;
  // Divides each family's log evidence before the families share the samples: > 1 keeps
  // families that explain the epochs so far nearly as well, whose futures differ.
  double evidence_temperature = 2.0;
  // A curve still at chance: when it leaves chance and then reaches the target, from how
  // the job's other curves did, each counted for the epochs it was observed (Kaplan-Meier,
  // with a weak prior), rather than from the take-off prior with the rate among finished
  // curves. The rate ignores the curves a search stops early, so it stays near 1/2 and
  // is generous to slow starters: the stop rules want that, a sampler learning from
  // stopped trials does not (JobEngine::observed_model_). Off by default.
  bool censored_take_off = false;
  // A sample's search for its first epoch at the target takes at most this many steps:
  // beyond that horizon, blocks of epochs (see Predict). Bounds a prediction's time at
  // any epoch limit.
  int scan_epochs = 1024;
  // Below this per-epoch chance of crossing at the trend's highest, the search thins
  // (exactly) instead of drawing every epoch's noise: a curve levelling off below the
  // target. 0 turns it off.
  double thin_below = 0.05;
  // A flat curve whose last this many accuracies are identical predicts one class for
  // every validation sample (a collapsed or diverged network): its chance of taking off is
  // the rate at which the job's curves that were stuck as long recovered (with
  // censored_take_off, without the prior's success: a failure until one has). 0 turns it
  // off.
  int stuck_epochs = 3;
  int analogs = 8;            ///< nearest other curves consulted (0: none)
  double analog_share = 0.5;  ///< of the samples, when `analogs` of them are usable
};

// Fits and extrapolates learning curves. Not thread-safe (it keeps a random engine).
class CurveModel {
 public:
  explicit CurveModel(CurveModelOptions options = {});

  // Predict fits no family to a curve of fewer epochs than this (the fewest parameters of
  // a family): such a curve's answer is the take-off prior (and its analogs), the same
  // whatever level the curve has reached.
  static int FewestEpochsToFit();

  // Whether `curve` has moved beyond its noise: its best accuracy is more than 3 `noise`
  // deviations above the mean of its first two epochs. Until it has, Predict fits no family
  // to it (a slow starter at chance, or a configuration that never learns).
  static bool HasMoved(const std::vector<double>& curve, double noise);

  // The epoch by which half of the curves that learn at all have taken off, under the
  // take-off prior Predict gives a curve still at chance (log-uniform over [1, max_epochs],
  // free of scale): sqrt(max_epochs).
  static double TakeOffPriorMedian(int max_epochs);

  // Predicts when `curve` (validation accuracy after epochs 1, 2, ..., its size) first
  // reaches `target` at an epoch of at most `max_epochs`. `noise` is the standard deviation
  // of one epoch's accuracy around the curve's trend (EstimateNoise over the job's curves);
  // `seed` makes the sampling reproducible. A curve that already reached the target gets
  // p_reach 1 at that epoch. A curve with fewer than 2 points, or one that has not risen
  // more than 3 noise deviations above its first epochs, predicts from its analogs and
  // a prior on when flat curves take off (see Predict), less likely the longer it has been
  // flat (with censored_take_off: from the job's curves that were flat that long). A curve
  // stuck at one value (stuck_epochs) takes, either way, the rate at which the job's curves
  // stuck as long recovered. A
  // curve that has moved but come less than half way to the target keeps part of that
  // chance of taking off, besides its fitted families.
  //
  // `others` are the curves of the job's other trials. Those that overlap this one's epochs
  // and run past them are analogs: the nearest (by the distance between their first epochs
  // and this curve) say, by when they themselves reached the target, where a curve that
  // started like this one went. Half the samples come from them when there are enough.
  EpochsToTarget Predict(const std::vector<double>& curve, double target, int max_epochs,
                         double noise, uint64_t seed,
                         const std::vector<std::vector<double>>& others = {});
  // The same, with the other curves by address (not copied; they must outlive the call),
  // in the same order: the same prediction. The job engine predicts every live trial from
  // all the job's curves; copying them (and pooling the noise) for each prediction took
  // about a third of its forecasts' time at 300 trials (session 38). (An empty braced list
  // as `others` would match both overloads: leave the argument out instead.)
  EpochsToTarget Predict(const std::vector<double>& curve, double target, int max_epochs,
                         double noise, uint64_t seed,
                         const std::vector<const std::vector<double>*>& others);

  // The epoch-to-epoch noise of validation accuracy, pooled over `curves`: the median
  // absolute deviation of second differences, scaled to a standard deviation, clamped to
  // the options' range. Robust to the trend itself and to a few outliers.
  double EstimateNoise(const std::vector<std::vector<double>>& curves) const;

 private:
  CurveModelOptions options_;
};

}  // namespace topotune
