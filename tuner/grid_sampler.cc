#include "tuner/grid_sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace topotune {

GridSampler::GridSampler(SearchSpace space, int lr_points)
    : points_(Points(space, lr_points)), times_proposed_(points_.size(), 0) {}

std::vector<TrialConfig> GridSampler::Points(const SearchSpace& space, int lr_points) {
  lr_points = std::max(lr_points, 1);
  std::vector<double> lrs(static_cast<size_t>(lr_points));
  const double log_min = std::log(space.lr_min);
  const double log_max = std::log(space.lr_max);
  if (lr_points == 1) {
    lrs[0] = std::exp(0.5 * (log_min + log_max));
  } else {
    for (int i = 0; i < lr_points; ++i) {
      lrs[i] = std::exp(log_min + (log_max - log_min) * i / (lr_points - 1));
    }
    lrs.front() = space.lr_min;  // exactly, not exp(log(lr_min))
    lrs.back() = space.lr_max;
  }
  std::vector<TrialConfig> points;
  points.reserve(space.batch_sizes.size() * space.optimizers.size() * lrs.size());
  for (int batch_size : space.batch_sizes) {
    for (Optimizer optimizer : space.optimizers) {
      for (double lr : lrs) points.push_back({batch_size, lr, optimizer});
    }
  }
  return points;
}

int GridSampler::Size(const SearchSpace& space, int lr_points) {
  return static_cast<int>(space.batch_sizes.size() * space.optimizers.size()) *
         std::max(lr_points, 1);
}

TrialConfig GridSampler::Propose(int max_batch_size) {
  if (points_.empty()) return TrialConfig{};  // an empty space: nothing to propose
  size_t chosen = points_.size();
  for (size_t i = 0; i < points_.size(); ++i) {
    if (points_[i].batch_size > max_batch_size) continue;
    if (chosen == points_.size() || times_proposed_[i] < times_proposed_[chosen]) chosen = i;
  }
  if (chosen == points_.size()) {
    // Nothing fits (the caller promised something would): the least-proposed smallest batch.
    for (size_t i = 0; i < points_.size(); ++i) {
      if (chosen == points_.size() || points_[i].batch_size < points_[chosen].batch_size ||
          (points_[i].batch_size == points_[chosen].batch_size &&
           times_proposed_[i] < times_proposed_[chosen])) {
        chosen = i;
      }
    }
  }
  ++times_proposed_[chosen];
  return points_[chosen];
}

}  // namespace topotune
