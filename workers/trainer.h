#pragma once

// Trains one trial segment with LibTorch. This header keeps torch out: the implementation
// is in trainer.cc and models.cc, the only translation units that include torch/torch.h.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tuner/checkpoint_store.h"
#include "tuner/segment.h"
#include "tuner/types.h"

namespace topotune {

struct TrainRequest {
  std::string model;                        ///< a name from KnownModels()
  std::string data_format = "cifar10-bin";  ///< "cifar10-bin" or "mnist-idx"
  std::string data_dir;                     ///< resolved folder of the dataset's files
  int64_t max_train_samples = 0;
  int64_t max_val_samples = 0;
  bool augment = false;  ///< random crop (4-pixel zero padding) and horizontal flip per batch
  TrialConfig config;
  double momentum = 0.9;
  uint64_t seed = 0;
  int start_epoch = 0;           ///< epochs already trained; > 0 loads the checkpoint
  int end_epoch = 1;             ///< train until this many epochs in all
  double target_accuracy = 1.0;  ///< stop early once validation accuracy reaches it
  double train_s_before = 0.0;   ///< training seconds of the trial's earlier segments
  double max_train_s = 0.0;      ///< > 0: end after the epoch at which the total reaches it
  // The trial's checkpoints are "<checkpoint_dir>/<stem>-e<epoch>.pt"
  // (tuner/checkpoint_store.h): the one at start_epoch is loaded when start_epoch > 0, and
  // the segment writes the one at its last epoch. Empty stem: no checkpoints.
  std::string checkpoint_dir;
  std::string checkpoint_stem;
};

// The checkpoint file of `request`'s trial after `epoch` epochs ("" without a stem).
inline std::string CheckpointPath(const TrainRequest& request, int epoch) {
  if (request.checkpoint_stem.empty()) return "";
  const std::string name = CheckpointFileName(request.checkpoint_stem, epoch);
  return request.checkpoint_dir.empty() ? name : request.checkpoint_dir + "/" + name;
}

// Whether a segment whose epochs trained `segment_s` seconds so far has used up the
// request's max_train_s (the trial's total, earlier segments included).
inline bool TrainTimeUp(const TrainRequest& request, double segment_s) {
  return ReachedSeconds(request.train_s_before + segment_s, request.max_train_s);
}

struct TrainResult {
  SegmentStatus status = SegmentStatus::kCompleted;
  std::string message;  ///< why, in words, when not completed
  int epochs_done = 0;
  bool reached_target = false;
  std::string checkpoint_path;  ///< the checkpoint the segment wrote, if it wrote one
};

// Runs training segments. Keeps loaded datasets between trials. Not thread-safe: one
// trial at a time.
class Trainer {
 public:
  // threads: intra-op threads for LibTorch; 0 keeps LibTorch's default.
  explicit Trainer(int threads);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains `request`, calling on_epoch after every epoch (its trial_id is left 0). Returns
  // between batches soon after `stop` becomes true ("stopped"). Never throws: a bad model
  // name, unreadable data, out-of-memory ("infeasible") or a loss that is not finite
  // ("failed") come back in the result.
  TrainResult Run(const TrainRequest& request,
                  const std::function<void(const CurvePoint&)>& on_epoch,
                  const std::atomic<bool>& stop);

  // "cpu" or "cuda", and the device's name, as LibTorch sees it.
  static DeviceProfile ProbeDevice();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace topotune
