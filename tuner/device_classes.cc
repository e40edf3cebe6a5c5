#include "tuner/device_classes.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "tuner/cost_model.h"

namespace topotune {
namespace {

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

std::vector<DeviceClassProfile> GroupByClass(const std::vector<WorkerRecord>& workers,
                                             const std::vector<DeviceProbe>& probes) {
  std::map<std::string, DeviceClassProfile> classes;
  std::map<std::string, std::string> class_of;  // worker id -> class
  for (const WorkerRecord& w : workers) {
    const std::string name = DeviceClassOf(w.device);
    class_of[w.id] = name;
    auto [it, inserted] = classes.try_emplace(name);
    DeviceClassProfile& c = it->second;
    if (inserted) {
      c.name = name;
      c.device = w.device;
    }
    c.device.memory_bytes = std::min(c.device.memory_bytes, w.device.memory_bytes);
    c.workers.push_back(w.id);
    if (std::find(c.sites.begin(), c.sites.end(), w.device.site) == c.sites.end()) {
      c.sites.push_back(w.device.site);
    }
  }
  // (class, model, input) -> batch -> the workers' measurements.
  std::map<std::tuple<std::string, std::string, std::string>,
           std::map<int, std::vector<BatchProbe>>>
      pooled;
  for (const DeviceProbe& p : probes) {
    auto it = class_of.find(p.worker_id);
    if (it == class_of.end()) continue;
    for (const BatchProbe& b : p.batches) {
      pooled[{it->second, p.model, p.input}][b.batch_size].push_back(b);
    }
  }
  for (const auto& [key, batches] : pooled) {
    ClassProbe probe;
    probe.model = std::get<1>(key);
    probe.input = std::get<2>(key);
    std::vector<StepSample> samples;
    for (const auto& [batch_size, measured] : batches) {
      ClassProbe::Batch b;
      b.batch_size = batch_size;
      b.workers = static_cast<int>(measured.size());
      b.fits =
          std::all_of(measured.begin(), measured.end(), [](const BatchProbe& m) { return m.fits; });
      std::vector<double> steps, forward, backward, optimizer, adam_optimizer;
      for (const BatchProbe& m : measured) {
        if (!m.fits) continue;
        steps.push_back(m.step_ms);
        if (m.forward_ms + m.backward_ms + m.optimizer_ms > 0) {
          forward.push_back(m.forward_ms);
          backward.push_back(m.backward_ms);
          optimizer.push_back(m.optimizer_ms);
        }
        if (m.adam_optimizer_ms > 0) adam_optimizer.push_back(m.adam_optimizer_ms);
        b.peak_memory_bytes = std::max(b.peak_memory_bytes, m.peak_memory_bytes);
        b.timed_s += m.timed_s;
      }
      b.step_ms = Median(steps);
      b.forward_ms = Median(forward);
      b.backward_ms = Median(backward);
      b.optimizer_ms = Median(optimizer);
      b.adam_optimizer_ms = Median(adam_optimizer);
      b.adam_does_not_fit =
          b.fits && std::any_of(measured.begin(), measured.end(),
                                [](const BatchProbe& m) { return m.adam_does_not_fit; });
      if (b.fits && !b.adam_does_not_fit) probe.adam_max_batch_size = batch_size;
      if (b.fits) {
        probe.max_batch_size = batch_size;
        if (b.step_ms > 0) samples.push_back({batch_size, b.step_ms});
      }
      probe.batches.push_back(b);
    }
    StatusOr<StepTimeModel> fit = StepTimeModel::Fit(samples);
    if (fit.ok()) {
      probe.alpha_ms = fit->alpha();
      probe.beta_ms = fit->beta();
    }
    classes[std::get<0>(key)].probes.push_back(std::move(probe));
  }
  std::vector<DeviceClassProfile> out;
  for (auto& [name, c] : classes) {
    std::sort(c.sites.begin(), c.sites.end());
    std::sort(c.workers.begin(), c.workers.end());
    out.push_back(std::move(c));
  }
  return out;
}

const ClassProbe* FindProbe(const DeviceClassProfile& c, const std::string& model,
                            const std::string& input) {
  for (const ClassProbe& p : c.probes) {
    if (p.model == model && p.input == input) return &p;
  }
  return nullptr;
}

std::optional<double> StepMsAt(const ClassProbe& probe, int batch, Optimizer optimizer) {
  const bool adam = optimizer == Optimizer::kAdam;
  std::vector<double> adam_extra;  // Adam's update - SGD's, over the batches that have it
  for (const ClassProbe::Batch& b : probe.batches) {
    if (!b.fits || b.step_ms <= 0) continue;
    if (b.batch_size == batch) {
      const double adam_ms = b.step_ms - b.optimizer_ms + b.adam_optimizer_ms;
      return adam && b.adam_optimizer_ms > 0 && adam_ms > 0 ? adam_ms : b.step_ms;
    }
    if (b.adam_optimizer_ms > 0) adam_extra.push_back(b.adam_optimizer_ms - b.optimizer_ms);
  }
  double fitted = probe.alpha_ms + probe.beta_ms * batch;
  if (adam && !adam_extra.empty()) fitted += Median(adam_extra);
  if (probe.beta_ms > 0 && fitted > 0) return fitted;
  return std::nullopt;
}

std::map<int, double> TimeScales(const std::vector<DeviceClassProfile>& classes,
                                 const std::string& reference, const std::string& device,
                                 const std::string& model, const std::string& input,
                                 const std::vector<int>& batch_sizes, Optimizer optimizer) {
  std::map<int, double> scales;
  if (reference == device) {
    for (int b : batch_sizes) scales[b] = 1.0;
    return scales;
  }
  const ClassProbe* ref = nullptr;
  const ClassProbe* dev = nullptr;
  for (const DeviceClassProfile& c : classes) {
    if (c.name == reference) ref = FindProbe(c, model, input);
    if (c.name == device) dev = FindProbe(c, model, input);
  }
  if (ref == nullptr || dev == nullptr) return scales;
  for (int b : batch_sizes) {
    const std::optional<double> r = StepMsAt(*ref, b, optimizer);
    const std::optional<double> d = StepMsAt(*dev, b, optimizer);
    if (r && d) scales[b] = *r / *d;
  }
  return scales;
}

std::map<int, double> TargetTimeScales(const std::vector<DeviceClassProfile>& classes,
                                       const Target& target, const Workload& workload,
                                       const std::string& device, const std::string& model,
                                       const std::string& input,
                                       const std::vector<int>& batch_sizes, Optimizer optimizer) {
  const auto compute_only = [&] {
    return TimeScales(classes, target.device_class, device, model, input, batch_sizes, optimizer);
  };
  const bool federated = target.kind == Target::Kind::kFederated;
  if (!OnSeveralDevices(target) || (federated && workload.train_samples < 1)) {
    return compute_only();
  }
  const ClassProbe* ref = nullptr;
  const ClassProbe* dev = nullptr;
  for (const DeviceClassProfile& c : classes) {
    if (c.name == target.device_class) ref = FindProbe(c, model, input);
    if (c.name == device) dev = FindProbe(c, model, input);
  }
  if (ref == nullptr || dev == nullptr) return {};
  std::vector<StepSample> samples;
  for (const ClassProbe::Batch& b : ref->batches) {
    const std::optional<double> ms = StepMsAt(*ref, b.batch_size, optimizer);
    if (b.fits && ms) samples.push_back({b.batch_size, *ms / 1000.0});
  }
  StatusOr<StepTimeModel> step = StepTimeModel::Fit(samples);
  if (!step.ok()) return {};
  std::map<int, double> scales;
  for (int b : batch_sizes) {
    const std::optional<double> device_ms = StepMsAt(*dev, b, optimizer);
    if (!device_ms || b < 1) continue;
    const double device_step_s = *device_ms / 1000.0;
    Workload w = workload;
    int local = b;
    if (!federated) {
      local = std::max(1, b / target.devices);
      w.train_samples = static_cast<long long>(local) * target.devices;  // one step an epoch
    }
    StatusOr<TtaBreakdown> cost = PredictTta(target, w, local, Estimate::Measured(1.0), *step);
    if (!cost.ok()) return compute_only();
    if (federated) {
      const double device_epoch_s =
          static_cast<double>((workload.train_samples + b - 1) / b) * device_step_s;
      scales[b] = cost->round.value / target.local_epochs / device_epoch_s;
    } else {
      scales[b] = cost->epoch.value / device_step_s;
    }
  }
  return scales;
}

}  // namespace topotune
