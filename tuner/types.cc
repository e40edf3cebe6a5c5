#include "tuner/types.h"

#include <algorithm>

namespace topotune {

const char* OptimizerName(Optimizer optimizer) {
  return optimizer == Optimizer::kAdam ? "adam" : "sgd";
}

std::optional<Optimizer> ParseOptimizer(const std::string& name) {
  if (name == "sgd") return Optimizer::kSgd;
  if (name == "adam") return Optimizer::kAdam;
  return std::nullopt;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
  }
  return "unknown";
}

std::optional<Role> ParseRole(const std::string& name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "user") return Role::kUser;
  if (name == "worker") return Role::kWorker;
  return std::nullopt;
}

int AshaSettings::RungEpochs(int rung) const {
  int epochs = min_epochs;
  for (int k = 0; k < rung; ++k) epochs *= reduction_factor;
  return epochs;
}

int AshaSettings::MaxEpochs() const {
  return unit == RungUnit::kSeconds || rungless ? max_epochs : RungEpochs(num_rungs - 1);
}

int AshaSettings::SegmentEpochs() const {
  return std::min(max_epochs, std::max(min_epochs, (max_epochs + 19) / 20));
}

double AshaSettings::RungSeconds(int rung) const {
  double seconds = min_seconds;
  for (int k = 0; k < rung; ++k) seconds *= reduction_factor;
  return seconds;
}

AshaSettings AshaSettings::InEpochs(int min_epochs, int reduction_factor, int num_rungs) {
  AshaSettings a;
  a.min_epochs = min_epochs;
  a.reduction_factor = reduction_factor;
  a.num_rungs = num_rungs;
  return a;
}

AshaSettings AshaSettings::InSeconds(double min_seconds, int reduction_factor, int num_rungs,
                                     int max_epochs) {
  AshaSettings a;
  a.unit = RungUnit::kSeconds;
  a.min_seconds = min_seconds;
  a.reduction_factor = reduction_factor;
  a.num_rungs = num_rungs;
  a.max_epochs = max_epochs;
  return a;
}

const char* RungUnitName(RungUnit unit) {
  return unit == RungUnit::kSeconds ? "seconds" : "epochs";
}

int DeviceProbe::MaxBatchSize() const { return MaxBatchSize({Optimizer::kSgd}); }

int DeviceProbe::MaxBatchSize(const std::vector<Optimizer>& optimizers) const {
  int best = 0;
  for (const BatchProbe& b : batches) {
    const bool fits = std::all_of(optimizers.begin(), optimizers.end(),
                                  [&](Optimizer o) { return b.FitsWith(o); });
    if (fits && b.fits && b.batch_size > best) best = b.batch_size;
  }
  return best;
}

const std::vector<std::string>& KnownModels() {
  static const std::vector<std::string> kModels = {
      "lenet", "resnet8", "resnet20", "resnet18", "resnet50", "mobilenetv2", "vgg11"};
  return kModels;
}

namespace {
constexpr const char* kJobStates[] = {"queued", "running", "completed", "cancelled", "failed"};
constexpr const char* kTrialStates[] = {"pending", "running",    "paused", "completed",
                                        "stopped", "infeasible", "failed"};
}  // namespace

const char* JobStateName(JobState state) { return kJobStates[static_cast<int>(state)]; }

std::optional<JobState> ParseJobState(const std::string& name) {
  for (int i = 0; i < 5; ++i)
    if (name == kJobStates[i]) return static_cast<JobState>(i);
  return std::nullopt;
}

bool IsTerminal(JobState state) {
  return state == JobState::kCompleted || state == JobState::kCancelled ||
         state == JobState::kFailed;
}

const char* TrialStateName(TrialState state) { return kTrialStates[static_cast<int>(state)]; }

std::optional<TrialState> ParseTrialState(const std::string& name) {
  for (int i = 0; i < 7; ++i)
    if (name == kTrialStates[i]) return static_cast<TrialState>(i);
  return std::nullopt;
}

bool IsTerminal(TrialState state) {
  return state == TrialState::kCompleted || state == TrialState::kStopped ||
         state == TrialState::kInfeasible || state == TrialState::kFailed;
}

std::string DeviceClassOf(const DeviceProfile& device) {
  if (!device.device_class.empty()) return device.device_class;
  return device.kind + "-" + std::to_string(device.cores) + "c";
}

}  // namespace topotune
