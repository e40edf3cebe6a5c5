#pragma once

// The search algorithms a job can name: which sampler proposes configurations and how
// fidelity (epochs) is allocated among them.
//
//   grid       every batch size x optimizer x grid_lr_points learning rates, each trained
//              to the top rung (or the target): the baseline users run by hand
//   random     random sampling, each trial trained to the top rung (or the target)
//   asha       random sampling under asynchronous successive halving
//   sha        random sampling under synchronous successive halving
//   hyperband  random sampling in Hyperband's brackets (synchronous halving in each)
//   tpe        TPE sampling under ASHA
//   gp         Gaussian-process Bayesian optimization (expected improvement) under ASHA
//   bohb       TPE sampling in Hyperband's brackets (model on the highest rung with
//              enough observations): BOHB
//   forecast   TPE sampling (GP with scheduler.sampler "gp"); no rungs: each trial trains
//              in segments up to max_epochs and goes on while the learning-curve model
//              (tuner/curve_model.h) gives it a fair chance to beat the incumbent's
//              time-to-accuracy; resources go to the best predicted time-to-accuracy
//   auto       one of the above, chosen from the job's budget and limit; the spec records
//              which

#include <memory>
#include <string>
#include <vector>

#include "tuner/sampler.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

const std::vector<std::string>& KnownAlgorithms();  // without "auto"

// What "auto" picks for `spec` (its budget and space), and why, in words.
std::string AutoAlgorithm(const JobSpec& spec, std::string* why);

// A bracket of successive halving: trials enter at start_rung; quota of them in all.
struct BracketPlan {
  int start_rung = 0;
  int quota = 0;
  bool synchronous = false;
};

// The brackets of spec.algorithm, whose quotas add up to spec.max_trials.
std::vector<BracketPlan> PlanBrackets(const JobSpec& spec);

// The sampler of spec.algorithm, seeded with spec.seed.
std::unique_ptr<Sampler> MakeSampler(const JobSpec& spec);

}  // namespace topotune
