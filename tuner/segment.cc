#include "tuner/segment.h"

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

}  // namespace topotune
