#include "workers/trainer.h"

#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "workers/dataset.h"
#include "workers/memory_stats.h"
#include "workers/models.h"

// The GPU's name and memory need the CUDA runtime's header, which only a CUDA build of
// LibTorch brings; a CPU build leaves them out.
#if __has_include(<cuda_runtime_api.h>)
#define TOPOTUNE_HAVE_CUDA_API 1
#include <cuda_runtime_api.h>
#endif

namespace topotune {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kEvalBatch = 1000;
constexpr int64_t kCropPadding = 4;  ///< pixels of padding around an augmentation crop

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// SplitMix64 finaliser: decorrelates generator seeds derived from one trial seed.
uint64_t MixSeed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A training and a validation set as normalised, contiguous float tensors on the CPU.
struct LoadedData {
  torch::Tensor train_images;  ///< [N, C, H, W] float, (x / 255 - mean) / std
  torch::Tensor train_labels;  ///< [N] int64
  torch::Tensor val_images;
  torch::Tensor val_labels;
  torch::Tensor mean;    ///< [C], per channel, of the training images scaled to 0..1
  torch::Tensor stddev;  ///< [C]
  torch::Tensor black;   ///< [C], a 0 pixel after normalisation: the padding of crops
  ModelInput input;      ///< what a model for these images takes
};

torch::Tensor ImagesAsFloat(ImageSet& set) {
  return torch::from_blob(set.pixels.data(), {set.count, set.channels, set.height, set.width},
                          torch::kUInt8)
      .to(torch::kFloat32)
      .div_(255.0);
}

torch::Tensor LabelsAsLong(ImageSet& set) {
  return torch::from_blob(set.labels.data(), {set.count}, torch::kUInt8).to(torch::kInt64);
}

StatusOr<std::shared_ptr<LoadedData>> LoadData(const TrainRequest& request) {
  StatusOr<ImageSet> train =
      ReadImageSet(request.data_format, request.data_dir, "train", request.max_train_samples);
  if (!train.ok()) return train.status();
  StatusOr<ImageSet> val =
      ReadImageSet(request.data_format, request.data_dir, "test", request.max_val_samples);
  if (!val.ok()) return val.status();
  if (val->channels != train->channels || val->height != train->height ||
      val->width != train->width) {
    return Status::InvalidArgument(
        "in " + request.data_dir + " the training images are " + std::to_string(train->channels) +
        "x" + std::to_string(train->height) + "x" + std::to_string(train->width) +
        " but the test images " + std::to_string(val->channels) + "x" +
        std::to_string(val->height) + "x" + std::to_string(val->width));
  }

  auto data = std::make_shared<LoadedData>();
  data->input.channels = train->channels;
  data->input.height = train->height;
  data->input.width = train->width;
  data->input.num_classes = train->num_classes;
  data->train_images = ImagesAsFloat(*train);
  data->mean = data->train_images.mean(/*dim=*/{0, 2, 3});
  data->stddev = data->train_images.std(/*dim=*/{0, 2, 3}).clamp_min(1e-6);
  const torch::Tensor mean = data->mean.view({1, -1, 1, 1});
  const torch::Tensor stddev = data->stddev.view({1, -1, 1, 1});
  data->train_images.sub_(mean).div_(stddev);
  data->train_labels = LabelsAsLong(*train);
  data->val_images = ImagesAsFloat(*val).sub_(mean).div_(stddev);
  data->val_labels = LabelsAsLong(*val);
  data->black = data->mean.neg().div_(data->stddev);
  return data;
}

// Value at quantile q (0..1) of `values`, nearest rank; 0 for none.
double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Each image of `images` [N, C, H, W] cut at a random offset out of itself padded by
// kCropPadding pixels of `black` [C] (a 0 pixel, as torchvision pads before normalising),
// and mirrored left-right with probability 1/2. The draws come from `rng`; the work runs on
// the images' device.
torch::Tensor CropAndFlip(const torch::Tensor& images, const torch::Tensor& black,
                          at::Generator& rng) {
  const int64_t n = images.size(0), channels = images.size(1);
  const int64_t height = images.size(2), width = images.size(3);
  const int64_t padded_width = width + 2 * kCropPadding;
  torch::Tensor padded =
      torch::empty({n, channels, height + 2 * kCropPadding, padded_width}, images.options());
  padded.copy_(black.to(images.device()).view({1, channels, 1, 1}));
  padded.narrow(2, kCropPadding, height).narrow(3, kCropPadding, width).copy_(images);
  // Per image: top and left corner of the crop in `padded`, and whether to mirror it.
  const torch::Tensor corners = torch::randint(0, 2 * kCropPadding + 1, {2, n}, rng);
  const torch::Tensor mirror = torch::randint(0, 2, {n}, rng);

  if (!images.is_cuda()) {
    // One strided copy per image: on a CPU a third of the time of a gather.
    const auto corner = corners.accessor<int64_t, 2>();
    const auto flip = mirror.accessor<int64_t, 1>();
    const torch::Tensor mirrored = padded.flip(/*dims=*/{3});
    torch::Tensor out = torch::empty_like(images);
    for (int64_t i = 0; i < n; ++i) {
      // Column left + x of an image is column padded_width - 1 - left - x of its mirror.
      const torch::Tensor& source = flip[i] != 0 ? mirrored : padded;
      const int64_t left = flip[i] != 0 ? padded_width - width - corner[1][i] : corner[1][i];
      out[i].copy_(source[i].narrow(1, corner[0][i], height).narrow(2, left, width));
    }
    return out;
  }
  // On a GPU two gathers, rows then columns, beat n small copies.
  const torch::Tensor x = torch::arange(width, torch::kLong).view({1, width});
  const torch::Tensor rows =
      corners[0].view({n, 1}) + torch::arange(height, torch::kLong).view({1, height});
  const torch::Tensor cols =
      corners[1].view({n, 1}) + torch::where(mirror.view({n, 1}) != 0, (width - 1) - x, x);
  const torch::Tensor cropped_rows = padded.gather(
      2,
      rows.to(images.device()).view({n, 1, height, 1}).expand({n, channels, height, padded_width}));
  return cropped_rows.gather(
      3, cols.to(images.device()).view({n, 1, 1, width}).expand({n, channels, height, width}));
}

bool IsOutOfMemory(const std::string& message) {
  return message.find("out of memory") != std::string::npos ||
         message.find("can't allocate memory") != std::string::npos ||
         message.find("Cannot allocate memory") != std::string::npos;
}

TrainResult Ended(SegmentStatus status, std::string message, int epochs_done,
                  bool reached_target = false) {
  TrainResult result;
  result.status = status;
  result.message = std::move(message);
  result.epochs_done = epochs_done;
  result.reached_target = reached_target;
  return result;
}

}  // namespace

struct Trainer::Impl {
  torch::Device device = torch::kCPU;
  // Datasets by "format|dir|max_train|max_val", converted once and kept for later trials.
  std::map<std::string, std::shared_ptr<LoadedData>> datasets;

  StatusOr<std::shared_ptr<LoadedData>> Data(const TrainRequest& request);
  void Synchronize() const {
    if (device.is_cuda()) torch::cuda::synchronize();
  }
  // The time once the device has finished the work queued so far.
  Clock::time_point Now() const {
    Synchronize();
    return Clock::now();
  }
  // The device's index for memory_stats.h: the GPU's, or -1 for the CPU.
  int MemoryDevice() const { return device.is_cuda() ? device.index() : -1; }
  // The body of Run; may throw (LibTorch errors), which Run turns into a result.
  // *epochs_done follows the epochs completed so far, for that case.
  TrainResult Train(const TrainRequest& request,
                    const std::function<void(const CurvePoint&)>& on_epoch,
                    const std::atomic<bool>& stop, int* epochs_done);
};

Trainer::Trainer(int threads) : impl_(std::make_unique<Impl>()) {
  // Keep freed tensor buffers in the heap. glibc's defaults map large buffers with mmap and
  // hand the top of the heap back to the kernel whenever a step's tensors are freed, so the
  // next step page-faults them back in: ResNet-18 on a CPU spent 6-8% of its step time
  // there (bench/RESULTS.md). The worker is a training process; it keeps what it used.
  static std::once_flag malloc_once;
  std::call_once(malloc_once, [] {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  });
  if (threads > 0) {
    torch::set_num_threads(threads);
    // Allowed once per process, before any inter-op work; a second Trainer keeps the first
    // setting.
    static std::once_flag interop_once;
    std::call_once(interop_once, [threads] {
      try {
        torch::set_num_interop_threads(threads);
      } catch (const std::exception&) {
      }
    });
  }
  if (torch::cuda::is_available()) impl_->device = torch::Device(torch::kCUDA, 0);
}

Trainer::~Trainer() = default;

StatusOr<std::shared_ptr<LoadedData>> Trainer::Impl::Data(const TrainRequest& request) {
  const std::string key = request.data_format + "|" + request.data_dir + "|" +
                          std::to_string(request.max_train_samples) + "|" +
                          std::to_string(request.max_val_samples);
  auto it = datasets.find(key);
  if (it != datasets.end()) return it->second;
  StatusOr<std::shared_ptr<LoadedData>> data = LoadData(request);
  if (data.ok()) datasets.emplace(key, *data);
  return data;
}

TrainResult Trainer::Run(const TrainRequest& request,
                         const std::function<void(const CurvePoint&)>& on_epoch,
                         const std::atomic<bool>& stop) {
  int epochs_done = request.start_epoch;
  try {
    return impl_->Train(request, on_epoch, stop, &epochs_done);
  } catch (const std::bad_alloc&) {
    return Ended(SegmentStatus::kInfeasible, "out of memory (std::bad_alloc)", epochs_done);
  } catch (const std::exception& e) {
    // c10::Error derives from std::exception; its what() carries a backtrace after the
    // first line, which the message keeps out.
    const std::string message = e.what();
    const std::string first_line = message.substr(0, message.find('\n'));
    return Ended(IsOutOfMemory(message) ? SegmentStatus::kInfeasible : SegmentStatus::kFailed,
                 first_line, epochs_done);
  } catch (...) {
    return Ended(SegmentStatus::kFailed, "unknown exception", epochs_done);
  }
}

TrainResult Trainer::Impl::Train(const TrainRequest& request,
                                 const std::function<void(const CurvePoint&)>& on_epoch,
                                 const std::atomic<bool>& stop, int* epochs_done) {
  const int start = request.start_epoch;
  if (request.config.batch_size < 1) {
    return Ended(SegmentStatus::kFailed,
                 "batch_size is " + std::to_string(request.config.batch_size) + ", expected >= 1",
                 start);
  }
  if (!(request.config.learning_rate > 0.0) || !std::isfinite(request.config.learning_rate)) {
    return Ended(SegmentStatus::kFailed, "learning_rate must be a positive number", start);
  }
  if (start < 0 || request.end_epoch <= start) {
    return Ended(SegmentStatus::kFailed,
                 "epochs " + std::to_string(start) + " -> " + std::to_string(request.end_epoch) +
                     ": end_epoch must exceed start_epoch >= 0",
                 start);
  }

  const std::vector<std::string>& models = ModelNames();
  if (std::find(models.begin(), models.end(), request.model) == models.end()) {
    return Ended(SegmentStatus::kFailed, MakeModel(request.model, ModelInput{}).status().message(),
                 start);
  }
  StatusOr<std::shared_ptr<LoadedData>> loaded = Data(request);
  if (!loaded.ok()) return Ended(SegmentStatus::kFailed, loaded.status().message(), start);
  const LoadedData& data = **loaded;

  // The seed alone decides the initial weights (and, with the epoch, the shuffles).
  torch::manual_seed(request.seed);
  StatusOr<std::shared_ptr<ImageClassifierImpl>> made = MakeModel(request.model, data.input);
  if (!made.ok()) return Ended(SegmentStatus::kFailed, made.status().message(), start);
  std::shared_ptr<ImageClassifierImpl> model = *made;
  model->to(device);

  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (request.config.optimizer == Optimizer::kAdam) {
    optimizer = std::make_unique<torch::optim::Adam>(
        model->parameters(), torch::optim::AdamOptions(request.config.learning_rate));
  } else {
    optimizer = std::make_unique<torch::optim::SGD>(
        model->parameters(),
        torch::optim::SGDOptions(request.config.learning_rate).momentum(request.momentum));
  }

  if (start > 0) {
    const std::string resume_from = CheckpointPath(request, start);
    if (resume_from.empty() || !fs::exists(resume_from)) {
      return Ended(SegmentStatus::kFailed,
                   "cannot resume from epoch " + std::to_string(start) + ": checkpoint '" +
                       resume_from + "' does not exist",
                   start);
    }
    torch::serialize::InputArchive archive;
    archive.load_from(resume_from, device);
    torch::Tensor saved_epoch;
    archive.read("epoch", saved_epoch);
    if (saved_epoch.item<int64_t>() != start) {
      return Ended(SegmentStatus::kFailed,
                   "checkpoint " + resume_from + " holds epoch " +
                       std::to_string(saved_epoch.item<int64_t>()) + ", not start_epoch " +
                       std::to_string(start),
                   start);
    }
    torch::serialize::InputArchive model_archive, optimizer_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    model->load(model_archive);
    optimizer->load(optimizer_archive);
  }

  const int64_t train_count = data.train_images.size(0);
  const int64_t val_count = data.val_images.size(0);
  const int64_t batch = request.config.batch_size;
  ResetPeakMemory(MemoryDevice());

  bool reached_target = false;
  double segment_train_s = 0.0;  // summed as the controller sums the trial's epochs
  for (int epoch = start + 1; epoch <= request.end_epoch; ++epoch) {
    const Clock::time_point epoch_begin = Now();
    model->train();
    // Shuffle and augmentation depend on (seed, epoch) only: a resumed trial draws what a
    // straight run would.
    at::Generator shuffle_rng =
        at::detail::createCPUGenerator(request.seed + static_cast<uint64_t>(epoch));
    at::Generator augment_rng = at::detail::createCPUGenerator(
        MixSeed(request.seed ^ MixSeed(static_cast<uint64_t>(epoch))));
    const torch::Tensor order = torch::randperm(train_count, shuffle_rng);

    std::vector<double> step_ms;
    step_ms.reserve(static_cast<size_t>((train_count + batch - 1) / batch));
    double data_s = 0.0, forward_s = 0.0, backward_s = 0.0, optimizer_s = 0.0;
    double loss_sum = 0.0;
    int step = 0;
    for (int64_t begin = 0; begin < train_count; begin += batch, ++step) {
      if (stop.load()) {
        return Ended(SegmentStatus::kStopped, "stopped at epoch " + std::to_string(epoch),
                     *epochs_done);
      }
      const Clock::time_point t0 = Now();
      const int64_t end = std::min(begin + batch, train_count);
      const torch::Tensor index = order.slice(/*dim=*/0, begin, end);
      torch::Tensor images = data.train_images.index_select(0, index).to(device);
      const torch::Tensor labels = data.train_labels.index_select(0, index).to(device);
      if (request.augment) images = CropAndFlip(images, data.black, augment_rng);
      const Clock::time_point t1 = Now();
      const torch::Tensor loss =
          torch::nn::functional::cross_entropy(model->forward(images), labels);
      const Clock::time_point t2 = Now();
      loss.backward();
      const Clock::time_point t3 = Now();
      optimizer->step();
      DropGradients(*model);
      const Clock::time_point t4 = Now();
      data_s += Seconds(t0, t1);
      forward_s += Seconds(t1, t2);
      backward_s += Seconds(t2, t3);
      optimizer_s += Seconds(t3, t4);
      step_ms.push_back(1000.0 * Seconds(t0, t4));
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        std::ostringstream message;
        message << "diverged: train loss is " << (std::isnan(loss_value) ? "nan" : "inf")
                << " at epoch " << epoch << ", step " << step + 1;
        return Ended(SegmentStatus::kFailed, message.str(), *epochs_done);
      }
      loss_sum += loss_value * static_cast<double>(end - begin);
    }

    const Clock::time_point eval_begin = Now();
    int64_t correct = 0;
    {
      torch::NoGradGuard no_grad;
      model->eval();
      for (int64_t begin = 0; begin < val_count; begin += kEvalBatch) {
        const int64_t end = std::min(begin + kEvalBatch, val_count);
        const torch::Tensor images = data.val_images.slice(0, begin, end).to(device);
        const torch::Tensor labels = data.val_labels.slice(0, begin, end).to(device);
        const torch::Tensor predicted = model->forward(images).argmax(/*dim=*/1);
        correct += predicted.eq(labels).sum().item<int64_t>();
      }
    }
    const Clock::time_point eval_end = Now();

    CurvePoint point;
    point.epoch = epoch;
    point.samples_seen = static_cast<int64_t>(epoch) * train_count;
    point.train_loss = loss_sum / static_cast<double>(train_count);
    point.val_accuracy = static_cast<double>(correct) / static_cast<double>(val_count);
    point.data_s = data_s;
    point.forward_s = forward_s;
    point.backward_s = backward_s;
    point.optimizer_s = optimizer_s;
    point.compute_s = data_s + forward_s + backward_s + optimizer_s;
    point.comm_s = 0.0;
    point.eval_s = Seconds(eval_begin, eval_end);
    point.wall_s = Seconds(epoch_begin, eval_end);
    point.step_ms_p50 = Percentile(step_ms, 0.50);
    point.step_ms_p95 = Percentile(step_ms, 0.95);
    point.peak_memory_bytes = PeakMemory(MemoryDevice());
    *epochs_done = epoch;
    if (on_epoch) on_epoch(point);
    if (point.val_accuracy >= request.target_accuracy) {
      reached_target = true;
      break;
    }
    segment_train_s += point.compute_s + point.comm_s;
    if (TrainTimeUp(request, segment_train_s)) break;  // the rung's seconds, or the bound
  }

  std::string written;
  if (!request.checkpoint_stem.empty() && *epochs_done > start) {
    written = CheckpointPath(request, *epochs_done);
    const fs::path path(written);
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    torch::serialize::OutputArchive archive, model_archive, optimizer_archive;
    model->save(model_archive);
    optimizer->save(optimizer_archive);
    archive.write("epoch", torch::tensor(static_cast<int64_t>(*epochs_done)));
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    // Write aside and rename, so a crash never leaves half a checkpoint behind.
    const std::string partial = written + ".partial";
    archive.save_to(partial);
    fs::rename(partial, path);
  }
  TrainResult result =
      Ended(SegmentStatus::kCompleted, reached_target ? "reached the target accuracy" : "",
            *epochs_done, reached_target);
  result.checkpoint_path = written;
  return result;
}

DeviceProfile Trainer::ProbeDevice() {
  DeviceProfile profile;
  profile.cores = static_cast<int>(std::thread::hardware_concurrency());
  if (torch::cuda::is_available()) {
    profile.kind = "cuda";
    profile.name = "cuda:0";
#ifdef TOPOTUNE_HAVE_CUDA_API
    cudaDeviceProp properties;
    if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess) {
      profile.name = properties.name;
      profile.memory_bytes = static_cast<int64_t>(properties.totalGlobalMem);
    }
#endif
    if (profile.memory_bytes == 0) {
      profile.memory_bytes = ReadProcNumber("/proc/meminfo", "MemTotal:", 1024);
    }
    return profile;
  }
  profile.kind = "cpu";
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.compare(0, 10, "model name") != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos)
      profile.name = line.substr(line.find_first_not_of(" \t", colon + 1));
    break;
  }
  if (profile.name.empty()) profile.name = "cpu";
  profile.memory_bytes = ReadProcNumber("/proc/meminfo", "MemTotal:", 1024);
  // Inside a container or the testbed, the cgroup's limits are what the worker has.
  const int64_t limit = CgroupMemoryLimit();
  if (limit > 0) profile.memory_bytes = std::min(profile.memory_bytes, limit);
  const double cpus = CgroupCpuLimit();
  if (cpus > 0) profile.cores = std::min(profile.cores, static_cast<int>(std::ceil(cpus)));
  return profile;
}

}  // namespace topotune
