#include "workers/device_probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <memory>
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

// The time once the device has finished the work queued so far.
Clock::time_point DeviceNow(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
  return Clock::now();
}

// One training step of `model` on a batch. On a GPU each part is synchronised before it is
// timed, so the parts add up to the step.
StepSeconds Step(ImageClassifierImpl& model, torch::optim::Optimizer& optimizer,
                 const torch::Tensor& images, const torch::Tensor& labels,
                 const torch::Device& device) {
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t0 = DeviceNow(device);
  torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(images), labels);
  const auto t1 = DeviceNow(device);
  loss.backward();
  const auto t2 = DeviceNow(device);
  optimizer.step();
  DropGradients(model);
  const auto t3 = DeviceNow(device);
  return {seconds(t0, t1), seconds(t1, t2), seconds(t2, t3)};
}

// The round whose step time is the median; with an even count, the mean of the middle two
// (each part averaged, so the parts still add up to the step).
StepSeconds MedianRound(std::vector<StepSeconds> rounds) {
  std::sort(rounds.begin(), rounds.end(),
            [](const StepSeconds& a, const StepSeconds& b) { return a.total() < b.total(); });
  const size_t n = rounds.size();
  if (n % 2 == 1) return rounds[n / 2];
  const StepSeconds& a = rounds[n / 2 - 1];
  const StepSeconds& b = rounds[n / 2];
  return {(a.forward + b.forward) / 2, (a.backward + b.backward) / 2,
          (a.optimizer + b.optimizer) / 2};
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

  const int rounds = ProbeRounds(request);
  const double round_s = request.min_timed_s / rounds;
  const int round_steps = (std::max(1, request.timed_steps) + rounds - 1) / rounds;
  // One model and optimizer for every batch size (their size does not depend on it), made
  // at the first batch size probed. Momentum SGD, as training's default. The update times
  // and Adam's fit below have their own optimizers with a learning rate of 0: the same work
  // per update, and thousands of updates with one gradient leave the weights as they were.
  std::shared_ptr<ImageClassifierImpl> model;
  std::unique_ptr<torch::optim::SGD> optimizer;
  auto make_sgd = [&](double learning_rate) {
    return std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(learning_rate).momentum(0.9));
  };
  // One round of one batch size: random data made outside the timing, `warmup` untimed
  // steps, then steps until round_s seconds and round_steps steps are timed; adds those
  // seconds to `*timed_s`. Throws what LibTorch throws.
  auto time_round = [&](int batch_size, int warmup, double* timed_s) {
    const torch::Tensor images =
        torch::randn({batch_size, input.channels, input.height, input.width}, device);
    const torch::Tensor labels =
        torch::randint(input.num_classes, {batch_size},
                       torch::TensorOptions().dtype(torch::kInt64).device(device));
    for (int i = 0; i < warmup; ++i) Step(*model, *optimizer, images, labels, device);
    StepSeconds timed;
    int steps = 0;
    while (steps < round_steps || timed.total() < round_s) {
      const StepSeconds s = Step(*model, *optimizer, images, labels, device);
      timed.forward += s.forward;
      timed.backward += s.backward;
      timed.optimizer += s.optimizer;
      ++steps;
    }
    *timed_s += timed.total();
    return StepSeconds{timed.forward / steps, timed.backward / steps, timed.optimizer / steps};
  };
  // What Adam's update costs beyond momentum SGD's, once per round: neither depends on the
  // batch size, only on the weights. The gradients of one backward pass at `batch_size`
  // stay while each optimizer updates the weights over and over for half a round, the
  // block's wall time over its updates (a block spans CFS periods, so a CPU quota counts as
  // it does in training). Throws what LibTorch throws.
  std::vector<double> adam_extra_s;  // per round: Adam's update - SGD's
  auto time_updates = [&](int batch_size) {
    const torch::Tensor images =
        torch::randn({batch_size, input.channels, input.height, input.width}, device);
    const torch::Tensor labels =
        torch::randint(input.num_classes, {batch_size},
                       torch::TensorOptions().dtype(torch::kInt64).device(device));
    DropGradients(*model);
    torch::nn::functional::cross_entropy(model->forward(images), labels).backward();
    // Their state lives only as long as this block, so the rounds train in SGD's memory.
    std::unique_ptr<torch::optim::SGD> sgd_update = make_sgd(0.0);
    torch::optim::Adam adam_update(model->parameters(), torch::optim::AdamOptions(0.0));
    auto block = [&](torch::optim::Optimizer& o) {
      o.step();  // untimed: a first update after the other optimizer's
      const double block_s = round_s / 2;
      const Clock::time_point begin = DeviceNow(device);
      int updates = 0;
      double elapsed = 0.0;
      while (updates < 2 || elapsed < block_s) {
        o.step();
        ++updates;
        elapsed = std::chrono::duration<double>(DeviceNow(device) - begin).count();
      }
      return elapsed / updates;
    };
    const double sgd_s = block(*sgd_update);
    const double adam_s = block(adam_update);
    DropGradients(*model);
    adam_extra_s.push_back(adam_s - sgd_s);
  };

  std::vector<int> sizes = request.batch_sizes;
  std::sort(sizes.begin(), sizes.end());
  // The first round, in ascending batch size: which sizes fit, and their peak memory.
  std::vector<BatchProbe> results;
  std::vector<std::vector<StepSeconds>> timed(sizes.size());  // per size, one per round
  std::vector<bool> cached(sizes.size(), false);
  int failed_at = 0;  // the smallest batch size that ran out of memory
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int batch_size = sizes[i];
    const auto key = std::make_tuple(request.model, probe.input, batch_size);
    if (auto hit = cache_.find(key); hit != cache_.end()) {
      results.push_back(hit->second);
      cached[i] = true;
      if (!hit->second.fits && failed_at == 0) failed_at = batch_size;
      continue;
    }
    BatchProbe b;
    b.batch_size = batch_size;
    if (failed_at > 0) {
      b.error = "larger than batch size " + std::to_string(failed_at) + ", which did not fit";
      results.push_back(b);
      continue;
    }
    ResetPeakMemory(memory_device);
    try {
      if (!model) {
        StatusOr<std::shared_ptr<ImageClassifierImpl>> made = MakeModel(request.model, input);
        if (!made.ok()) return made.status();
        model = *made;
        model->to(device);
        model->train();
        optimizer = make_sgd(0.01);
      }
      // Two warm-up steps: allocations, caches, the optimizer's state.
      timed[i].push_back(time_round(batch_size, /*warmup=*/2, &b.timed_s));
      b.fits = true;
      b.peak_memory_bytes = PeakMemory(memory_device);
    } catch (const std::bad_alloc&) {
      b.error = "out of memory (std::bad_alloc)";
    } catch (const std::exception& e) {
      const std::string what = e.what();
      const std::string first_line = what.substr(0, std::min<size_t>(what.find('\n'), 300));
      if (IsOutOfMemory(what)) {
        b.error = "out of memory: " + first_line;
      } else if (std::any_of(results.begin(), results.end(),
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
    results.push_back(b);
  }
  // Adam keeps two buffers per weight where momentum SGD keeps one: whether the sizes that
  // fit with SGD fit with Adam, by one step with Adam's state in place of SGD's, from the
  // largest down. Memory grows with the batch, so the first that fits vouches for the
  // smaller ones.
  if (model) {
    optimizer.reset();  // frees SGD's momentum buffers
    for (size_t i = sizes.size(); i-- > 0;) {
      if (cached[i] || !results[i].fits) continue;
      try {
        torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(0.0));
        const torch::Tensor images =
            torch::randn({sizes[i], input.channels, input.height, input.width}, device);
        const torch::Tensor labels =
            torch::randint(input.num_classes, {sizes[i]},
                           torch::TensorOptions().dtype(torch::kInt64).device(device));
        Step(*model, adam, images, labels, device);
        break;
      } catch (const std::exception&) {
        // Out of memory, or a limit SGD's step did not reach: Adam does not fit this size.
        results[i].adam_does_not_fit = true;
        DropGradients(*model);
        if (device.is_cuda()) torch::cuda::synchronize();
      }
    }
    optimizer = make_sgd(0.01);
  }
  // The smallest size timed now: where the update times are taken (any size would do).
  int update_batch = 0;
  for (size_t i = 0; i < sizes.size() && update_batch == 0; ++i) {
    if (!cached[i] && results[i].fits) update_batch = sizes[i];
  }
  auto time_updates_once = [&] {
    if (update_batch == 0) return;
    try {
      time_updates(update_batch);
    } catch (const std::exception&) {
      // The sizes' steps are measured; Adam's extra is then the rounds that have it.
    }
  };
  time_updates_once();
  // The other rounds cycle through the sizes that fit, one untimed step after each switch,
  // so that a spell of slowness on a shared machine falls on every size alike, not on the
  // one probed then; the median round discards a spell that slows fewer than half of them.
  for (int r = 1; r < rounds; ++r) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (cached[i] || !results[i].fits) continue;
      try {
        timed[i].push_back(time_round(sizes[i], /*warmup=*/1, &results[i].timed_s));
      } catch (const std::exception&) {
        // It fitted in the first round: keep the rounds it has.
      }
    }
    time_updates_once();
  }
  // Adam does more per weight than momentum SGD (two moments, a square root, a division):
  // a negative median is noise, so 0.
  double adam_extra_ms = 0.0;
  if (!adam_extra_s.empty()) {
    std::sort(adam_extra_s.begin(), adam_extra_s.end());
    const size_t n = adam_extra_s.size();
    const double median =
        n % 2 == 1 ? adam_extra_s[n / 2] : (adam_extra_s[n / 2 - 1] + adam_extra_s[n / 2]) / 2;
    adam_extra_ms = std::max(0.0, median) * 1000.0;
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    BatchProbe& b = results[i];
    if (!cached[i] && b.fits) {
      const StepSeconds median = MedianRound(timed[i]);
      b.step_ms = median.total() * 1000.0;
      b.forward_ms = median.forward * 1000.0;
      b.backward_ms = median.backward * 1000.0;
      b.optimizer_ms = median.optimizer * 1000.0;
      // 0 (not measured) where no update block completed.
      if (!adam_extra_s.empty()) b.adam_optimizer_ms = b.optimizer_ms + adam_extra_ms;
    }
    // A size larger than one that did not fit is not cached: a later probe may retry it.
    const bool retry_later = !b.fits && b.error.rfind("larger than", 0) == 0;
    if (!cached[i] && !retry_later) {
      cache_[std::make_tuple(request.model, probe.input, sizes[i])] = b;
    }
    probe.batches.push_back(b);
  }
  return probe;
}

int ProbeRounds(const ProbeRequest& request) {
  const int by_time = static_cast<int>(request.min_timed_s / kMinProbeRoundSeconds);
  return std::clamp(by_time, 1, std::max(1, request.rounds));
}

}  // namespace topotune
