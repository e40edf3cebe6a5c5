#include "tuner/segment.h"

#include <cmath>

namespace topotune {
namespace {

constexpr const char* kSegmentStatuses[] = {"completed", "stopped", "infeasible", "failed"};

}  // namespace

const char* SegmentStatusName(SegmentStatus status) {
  return kSegmentStatuses[static_cast<int>(status)];
}

std::optional<SegmentStatus> ParseSegmentStatus(const std::string& name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kSegmentStatuses[i]) return static_cast<SegmentStatus>(i);
  }
  return std::nullopt;
}

double Placement::TimeScaleOf(const TrialConfig& config) const {
  auto by_batch = time_scale.find(config.optimizer);
  if (by_batch == time_scale.end()) return 1.0;
  auto scale = by_batch->second.find(config.batch_size);
  if (scale == by_batch->second.end() || !std::isfinite(scale->second) || scale->second <= 0) {
    return 1.0;
  }
  return scale->second;
}

}  // namespace topotune
