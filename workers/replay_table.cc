#include "workers/replay_table.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

namespace topotune {
namespace {

// A replay checkpoint: the trial's state is the table, so the file holds the epoch alone.
// It travels and is checked like a real one, so a replay worker resumes exactly where a
// LibTorch worker could.
constexpr char kReplayCheckpointHeader[] = "topotune replay checkpoint";

// The epoch a replay checkpoint holds, or an error naming the file.
StatusOr<int> ReadReplayCheckpoint(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("checkpoint '" + path + "' does not exist");
  std::string header;
  int epoch = -1;
  if (!std::getline(in, header) || header != kReplayCheckpointHeader || !(in >> epoch)) {
    return Status::InvalidArgument("checkpoint '" + path + "' is not a replay checkpoint");
  }
  return epoch;
}

Status WriteReplayCheckpoint(const std::string& path, int epoch) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial);
    out << kReplayCheckpointHeader << "\n" << epoch << "\n";
    if (!out) return Status::IOError("cannot write checkpoint " + partial);
  }
  std::filesystem::rename(partial, path, ec);
  if (ec) return Status::IOError("cannot write checkpoint " + path + ": " + ec.message());
  return Status::OK();
}

// The epochs of a segment, from the table.
TrainResult ReplayEpochs(const ReplayTable& table, const TrainRequest& request, double speedup,
                         const std::function<void(const CurvePoint&)>& on_epoch,
                         const std::atomic<bool>& stop) {
  TrainResult result;
  result.epochs_done = request.start_epoch;
  const ReplayTable::Run& run = table.Nearest(request.config);
  const std::vector<ReplayTable::Epoch>& curve = table.CurveFor(run, request.seed);
  double segment_train_s = 0.0;
  for (int epoch = request.start_epoch + 1; epoch <= request.end_epoch; ++epoch) {
    if (stop) {
      result.status = SegmentStatus::kStopped;
      result.message = "stopped by the controller";
      return result;
    }
    if (epoch > static_cast<int>(curve.size())) {
      result.status = SegmentStatus::kFailed;
      result.message =
          "diverged (replay: the recorded run ends at epoch " + std::to_string(curve.size()) + ")";
      return result;
    }
    const ReplayTable::Epoch& e = curve[static_cast<size_t>(epoch - 1)];
    if (speedup > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(e.seconds / speedup));
    }
    CurvePoint p;
    p.epoch = epoch;
    p.val_accuracy = e.val_accuracy;
    p.compute_s = e.seconds;
    p.wall_s = e.seconds;
    p.train_loss = 0.0;
    on_epoch(p);
    result.epochs_done = epoch;
    if (e.val_accuracy >= request.target_accuracy) {
      result.reached_target = true;
      return result;
    }
    segment_train_s += p.compute_s + p.comm_s;
    if (TrainTimeUp(request, segment_train_s)) return result;
  }
  return result;
}

}  // namespace

StatusOr<CurveTable> LoadReplayTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read replay table " + path);
  std::stringstream text;
  text << in.rdbuf();
  return CurveTable::Parse(text.str(), path);
}

TrainResult ReplaySegment(const ReplayTable& table, const TrainRequest& request, double speedup,
                          const std::function<void(const CurvePoint&)>& on_epoch,
                          const std::atomic<bool>& stop) {
  TrainResult result;
  result.epochs_done = request.start_epoch;
  if (request.start_epoch > 0 && !request.checkpoint_stem.empty()) {
    StatusOr<int> held = ReadReplayCheckpoint(CheckpointPath(request, request.start_epoch));
    if (!held.ok() || *held != request.start_epoch) {
      result.status = SegmentStatus::kFailed;
      result.message = "cannot resume from epoch " + std::to_string(request.start_epoch) + ": " +
                       (held.ok() ? "the checkpoint holds epoch " + std::to_string(*held)
                                  : held.status().message());
      return result;
    }
  }
  result = ReplayEpochs(table, request, speedup, on_epoch, stop);
  if (result.status == SegmentStatus::kCompleted && !request.checkpoint_stem.empty() &&
      result.epochs_done > request.start_epoch) {
    result.checkpoint_path = CheckpointPath(request, result.epochs_done);
    Status written = WriteReplayCheckpoint(result.checkpoint_path, result.epochs_done);
    if (!written.ok()) {
      result.status = SegmentStatus::kFailed;
      result.message = written.message();
      result.checkpoint_path.clear();
    }
  }
  return result;
}

}  // namespace topotune
