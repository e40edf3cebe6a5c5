#pragma once

// A configuration measured on several seeds. One seed's time-to-accuracy is one draw: on
// the 80-epoch replay tables one configuration's seeds differ by up to 2.4x, and a job
// that names the least single TTA names a lucky seed (bench/RESULTS.md, session 40). With
// JobSpec::incumbent_seeds > 1 a sampler's trial that reaches the target faster than the
// incumbent is rerun on the next seeds, and the job names its best configuration by the
// mean TTA over them (SMAC's intensification, simplified: a challenger runs its seeds one
// at a time, each capped where it could no longer beat the incumbent's mean). A new trial
// is one seed, so it is measured against the slowest of the named configuration's runs,
// not their mean (JobEngine::ChallengerBar).

#include <map>
#include <optional>
#include <vector>

#include "tuner/types.h"

namespace topotune {

struct SeedGroup {
  const TrialRecord* first = nullptr;  ///< the sampler's trial
  // Its reruns on other seeds (TrialRecord::confirms is first's number, the seed differs),
  // in number order; repeats included.
  std::vector<const TrialRecord*> reruns;
  std::vector<double> tta_s;  ///< per distinct seed that reached the target, first's first
  bool running = false;       ///< a rerun has not ended (nor reached the target)
  // A rerun trained to its cap (or the epoch limit) without reaching the target (it ended
  // kCompleted): this configuration's mean cannot beat the incumbent's.
  bool missed = false;
  // A rerun ended before it measured anything (stopped by a cancel or the time budget, or
  // failed): the group cannot settle, and gets no more reruns.
  bool incomplete = false;
  // A rerun repeated an earlier run's curve (TrialRecord::repeats): the seed does not
  // change this configuration's training, so its runs so far are all it has.
  bool seed_free = false;
  int runs = 0;  ///< distinct runs measured (first included once it reached the target)
  // Whether the job may name it: every run reached the target, none is running or ended
  // unmeasured, and it has `seeds` distinct runs (or its seed changes nothing).
  bool Settled(int seeds) const;
  double MeanTta() const;     ///< mean of tta_s; +inf when empty
  double SlowestTta() const;  ///< the largest of tta_s; +inf when empty
};

// Whether `t` reruns `first`'s configuration on another seed.
bool IsRerunOf(const TrialRecord& t, const TrialRecord& first);

// The sampler's trials (confirms < 0) and their reruns, keyed by the sampler's trial
// number. Pointers into `trials`, which must outlive the result. Trials confirmed on the
// reference class with the same seed (TrialRecord::confirms) are not reruns: left out.
std::map<int, SeedGroup> GroupBySeed(const std::vector<const TrialRecord*>& trials);

// The settled group with the least mean TTA (ties: the lower number); none if no group is.
const SeedGroup* NamedGroup(const std::map<int, SeedGroup>& groups, int seeds);

}  // namespace topotune
