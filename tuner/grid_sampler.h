#pragma once

#include <vector>

#include "tuner/sampler.h"
#include "tuner/types.h"

namespace topotune {

// The brute-force grid a researcher would run by hand: every batch size x optimizer x
// `lr_points` learning rates log-spaced over [lr_min, lr_max], both ends included. Proposes
// the points in a fixed order (batch size ascending, then the space's optimizer order,
// then learning rate ascending) and cycles once all have been proposed.
//
// A point whose batch size exceeds the caller's max_batch_size is skipped, not lost: each
// call returns the least-proposed point that fits, first in grid order, so a later call
// with a larger limit picks the skipped points up before any point repeats. Ignores
// observations. Not thread-safe.
class GridSampler final : public Sampler {
 public:
  // lr_points < 1 is treated as 1; a single learning rate is the geometric midpoint of
  // [lr_min, lr_max]. The space must have a batch size and an optimizer.
  GridSampler(SearchSpace space, int lr_points);

  TrialConfig Propose(int max_batch_size) override;

  // The grid, in proposal order.
  static std::vector<TrialConfig> Points(const SearchSpace& space, int lr_points);
  // The number of grid points: batch sizes x optimizers x learning rates.
  static int Size(const SearchSpace& space, int lr_points);

 private:
  std::vector<TrialConfig> points_;
  std::vector<int> times_proposed_;  ///< per point, parallel to points_
};

}  // namespace topotune
