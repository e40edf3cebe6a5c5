#include "workers/device_probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <new>

#include "workers/dataset.h"
#include "workers/memory_stats.h"
#include "workers/models.h"

namespace topotune {
namespace {

using Clock = std::chrono::steady_clock;

bool IsOutOfMemory(const std::string& what) {
  return what.find("out of memory") != std::string::npos ||
         what.find("can't allocate memory") != std::string::npos ||
         what.find("bad_alloc") != std::string::npos ||
         what.find("Cannot allocate memory") != std::string::npos;
}

// The seconds of one training step's parts, split as the trainer splits them.
struct StepSeconds {
  double forward = 0.0, backward = 0.0, optimizer = 0.0;
  double total() const { return forward + backward + optimizer; }
};

// One training step of `model` on a batch. On a GPU each part is synchronised before it is
// timed, so the parts add up to the step.
StepSeconds Step(ImageClassifierImpl& model, torch::optim::Optimizer& optimizer,
                 const torch::Tensor& images, const torch::Tensor& labels,
                 const torch::Device& device) {
  auto now = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
    return Clock::now();
  };
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t0 = now();
  torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(images), labels);
  const auto t1 = now();
  loss.backward();
  const auto t2 = now();
  optimizer.step();
  DropGradients(model);
  const auto t3 = now();
  return {seconds(t0, t1), seconds(t1, t2), seconds(t2, t3)};
}

}  // namespace

std::string InputKey(int channels, int height, int width) {
  return std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
}

StatusOr<DeviceProbe> DeviceProber::Probe(const ProbeRequest& request) {
  StatusOr<ModelInput> shape = InputOfDataset(request.data_format, request.data_dir);
  if (!shape.ok()) return shape.status();
  const ModelInput input = *shape;
  DeviceProbe probe;
  probe.model = request.model;
  probe.input = InputKey(input.channels, input.height, input.width);
  const torch::Device device(torch::cuda::is_available() ? torch::kCUDA : torch::kCPU);
  const int memory_device = device.is_cuda() ? 0 : -1;
  // The CUDA caching allocator starts at the first allocation on the device; until then
  // its statistics refuse the device ("Invalid device argument"). Start it here.
  if (device.is_cuda()) torch::zeros({1}, device);

  std::vector<int> sizes = request.batch_sizes;
  std::sort(sizes.begin(), sizes.end());
  int failed_at = 0;  // the smallest batch size that ran out of memory
  for (int batch_size : sizes) {
    const auto key = std::make_tuple(request.model, probe.input, batch_size);
    if (auto hit = cache_.find(key); hit != cache_.end()) {
      probe.batches.push_back(hit->second);
      if (!hit->second.fits && failed_at == 0) failed_at = batch_size;
      continue;
    }
    BatchProbe b;
    b.batch_size = batch_size;
    if (failed_at > 0) {
      b.error = "larger than batch size " + std::to_string(failed_at) + ", which did not fit";
      probe.batches.push_back(b);  // not cached: a later probe may retry it
      continue;
    }
    ResetPeakMemory(memory_device);
    try {
      StatusOr<std::shared_ptr<ImageClassifierImpl>> model = MakeModel(request.model, input);
      if (!model.ok()) return model.status();
      (*model)->to(device);
      (*model)->train();
      // Momentum SGD, as training's default; random data made once, outside the timing.
      torch::optim::SGD optimizer((*model)->parameters(),
                                  torch::optim::SGDOptions(0.01).momentum(0.9));
      const torch::Tensor images =
          torch::randn({batch_size, input.channels, input.height, input.width}, device);
      const torch::Tensor labels =
          torch::randint(input.num_classes, {batch_size},
                         torch::TensorOptions().dtype(torch::kInt64).device(device));
      // Warm-up: allocations, caches, the optimizer's state (the first steps run slower).
      for (int i = 0; i < 2; ++i) Step(**model, optimizer, images, labels, device);
      StepSeconds timed;
      int steps = 0;
      while (steps < std::max(1, request.timed_steps) || timed.total() < request.min_timed_s) {
        const StepSeconds s = Step(**model, optimizer, images, labels, device);
        timed.forward += s.forward;
        timed.backward += s.backward;
        timed.optimizer += s.optimizer;
        ++steps;
      }
      b.fits = true;
      b.step_ms = timed.total() / steps * 1000.0;
      b.forward_ms = timed.forward / steps * 1000.0;
      b.backward_ms = timed.backward / steps * 1000.0;
      b.optimizer_ms = timed.optimizer / steps * 1000.0;
      b.peak_memory_bytes = PeakMemory(memory_device);
    } catch (const std::bad_alloc&) {
      b.error = "out of memory (std::bad_alloc)";
    } catch (const std::exception& e) {
      const std::string what = e.what();
      const std::string first_line = what.substr(0, std::min<size_t>(what.find('\n'), 300));
      if (IsOutOfMemory(what)) {
        b.error = "out of memory: " + first_line;
      } else if (std::any_of(probe.batches.begin(), probe.batches.end(),
                             [](const BatchProbe& p) { return p.fits; })) {
        // A smaller batch trained, so the model and device work: this size hit a limit
        // other than memory (a kernel's 32-bit indexing, say). It does not fit either.
        b.error = "failed: " + first_line;
      } else {
        return Status::Internal("probing " + request.model + " at batch size " +
                                std::to_string(batch_size) + ": " + first_line);
      }
    }
    if (!b.fits) {
      failed_at = batch_size;
      if (device.is_cuda()) torch::cuda::synchronize();
    }
    cache_[key] = b;
    probe.batches.push_back(b);
  }
  return probe;
}

}  // namespace topotune
