#include "workers/dp_probe.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "workers/dataset.h"
#include "workers/models.h"

namespace topotune {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Mean(const std::vector<double>& v) {
  double sum = 0.0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / v.size();
}

// The q-quantile (0..1) of `v` by the nearest rank.
double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  return v[i];
}

Status Validate(const DataParallelRequest& r) {
  if (r.model.empty()) return Status::InvalidArgument("model is empty");
  if (r.data_dir.empty()) return Status::InvalidArgument("data_dir is empty");
  if (r.local_batch < 1) return Status::InvalidArgument("local_batch must be >= 1");
  if (r.world < 1 || r.world > 1024) return Status::InvalidArgument("world must be in [1, 1024]");
  if (r.rank < 0 || r.rank >= r.world) {
    return Status::InvalidArgument("rank must be in [0, world - 1]");
  }
  if (r.world > 1 && (r.store_host.empty() || r.store_port < 1 || r.store_port > 65535)) {
    return Status::InvalidArgument(
        "more than one rank needs the store's host and a port in "
        "[1, 65535]");
  }
  if (r.warmup_steps < 0 || r.timed_steps < 1) {
    return Status::InvalidArgument("warmup_steps must be >= 0 and timed_steps >= 1");
  }
  if (!(r.min_timed_s >= 0 && r.min_timed_s <= 600)) {
    return Status::InvalidArgument("min_timed_s must be in [0, 600]");
  }
  if (!(r.timeout_s > 0)) return Status::InvalidArgument("timeout_s must be > 0");
  return Status::OK();
}

}  // namespace

StatusOr<DataParallelProbe> ProbeDataParallel(const DataParallelRequest& request) {
  if (Status s = Validate(request); !s.ok()) return s;
  StatusOr<ModelInput> shape = InputOfDataset(request.data_format, request.data_dir);
  if (!shape.ok()) return shape.status();
  const ModelInput input = *shape;
  StatusOr<std::shared_ptr<ImageClassifierImpl>> model = MakeModel(request.model, input);
  if (!model.ok()) return model.status();

  DataParallelProbe probe;
  probe.rank = request.rank;
  probe.world = request.world;
  probe.local_batch = request.local_batch;
  std::string stage =
      "rendezvous at " + request.store_host + ":" + std::to_string(request.store_port);
  try {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(request.timeout_s * 1e3));
    c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
    if (request.world > 1) {
      c10d::TCPStoreOptions store_options;
      store_options.port = static_cast<std::uint16_t>(request.store_port);
      store_options.isServer = request.rank == 0;
      store_options.numWorkers = request.world;
      store_options.timeout = timeout;
      auto store = c10::make_intrusive<c10d::TCPStore>(request.store_host, store_options);
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(
          request.bind_address.empty()
              ? c10d::ProcessGroupGloo::createDefaultDevice()
              : c10d::ProcessGroupGloo::createDeviceForHostname(request.bind_address));
      group =
          c10::make_intrusive<c10d::ProcessGroupGloo>(store, request.rank, request.world, options);
    }
    if (group) {
      // Every rank starts from rank 0's weights, as DistributedDataParallel's are broadcast.
      stage = "the weights' broadcast";
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> weights;
      for (const torch::Tensor& p : (*model)->parameters()) weights.push_back(p.reshape({-1}));
      std::vector<torch::Tensor> flat = {torch::cat(weights)};
      group->broadcast(flat)->wait(timeout);
      int64_t offset = 0;
      for (torch::Tensor& p : (*model)->parameters()) {
        p.copy_(flat[0].narrow(0, offset, p.numel()).view_as(p));
        offset += p.numel();
      }
    }
    stage = "training";
    (*model)->train();
    torch::optim::SGD optimizer((*model)->parameters(),
                                torch::optim::SGDOptions(0.01).momentum(0.9));
    torch::manual_seed(1 + request.rank);  // each rank's own batch
    const torch::Tensor images =
        torch::randn({request.local_batch, input.channels, input.height, input.width});
    const torch::Tensor labels = torch::randint(input.num_classes, {request.local_batch},
                                                torch::TensorOptions().dtype(torch::kInt64));
    std::vector<double> compute, sync, step;
    double timed = 0.0;
    bool done = false;
    for (int i = 0; !done; ++i) {
      // The loop ends after this step once this rank has timed enough; with peers, once any
      // of them has (the flag travels with the gradients), so that all run the same steps.
      const bool enough =
          i + 1 >= request.warmup_steps + request.timed_steps && timed >= request.min_timed_s;
      done = enough;
      const auto t0 = Clock::now();
      torch::Tensor loss = torch::nn::functional::cross_entropy((*model)->forward(images), labels);
      loss.backward();
      const auto t1 = Clock::now();
      if (group) {
        stage = "all-reduce of step " + std::to_string(i + 1);
        std::vector<torch::Tensor> grads;
        for (const torch::Tensor& p : (*model)->parameters()) {
          if (p.grad().defined()) grads.push_back(p.grad().reshape({-1}));
        }
        grads.push_back(torch::full({1}, enough ? 1.0f : 0.0f));
        std::vector<torch::Tensor> flat = {torch::cat(grads)};
        probe.gradient_bytes = (flat[0].numel() - 1) * static_cast<int64_t>(flat[0].element_size());
        group->allreduce(flat)->wait(timeout);
        done = flat[0][flat[0].numel() - 1].item<float>() > 0.5f;
        flat[0].div_(request.world);
        int64_t offset = 0;
        for (const torch::Tensor& p : (*model)->parameters()) {
          if (!p.grad().defined()) continue;
          const int64_t n = p.grad().numel();
          p.grad().copy_(flat[0].narrow(0, offset, n).view_as(p.grad()));
          offset += n;
        }
      }
      const auto t2 = Clock::now();
      {
        torch::NoGradGuard no_grad;
        optimizer.step();
      }
      DropGradients(**model);
      const auto t3 = Clock::now();
      if (i >= request.warmup_steps) {
        compute.push_back(Seconds(t0, t1) + Seconds(t2, t3));
        sync.push_back(Seconds(t1, t2));
        step.push_back(Seconds(t0, t3));
        timed += step.back();
      }
    }
    if (probe.gradient_bytes == 0) {
      for (const torch::Tensor& p : (*model)->parameters()) {
        probe.gradient_bytes += p.numel() * static_cast<int64_t>(p.element_size());
      }
    }
    if (group) {
      // No rank leaves while another still needs it for a collective.
      stage = "the final barrier";
      group->barrier()->wait(timeout);
    }
    {
      torch::NoGradGuard no_grad;
      for (const torch::Tensor& p : (*model)->parameters()) {
        probe.weights_checksum += p.to(torch::kFloat64).sum().item<double>();
      }
    }
    probe.steps = static_cast<int>(step.size());
    probe.compute_s = Mean(compute);
    probe.sync_s = Mean(sync);
    probe.step_s = Mean(step);
    probe.step_median_s = Quantile(step, 0.5);
    probe.sync_p90_s = Quantile(sync, 0.9);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return Status::Unavailable("data-parallel probe, rank " + std::to_string(request.rank) +
                               " of " + std::to_string(request.world) + ", " + stage + ": " +
                               what.substr(0, std::min<size_t>(what.find('\n'), 300)));
  }
  return probe;
}

}  // namespace topotune
