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

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, ',')) fields.push_back(field);
  return fields;
}

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

StatusOr<ReplayTable> ReplayTable::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read replay table " + path);
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

StatusOr<ReplayTable> ReplayTable::Parse(const std::string& text, const std::string& name) {
  ReplayTable table;
  std::stringstream in(text);
  std::string line;
  int number = 0;
  bool header = false;
  std::map<std::tuple<int, double, int>, size_t> index;  // (batch, lr, optimizer) -> run
  static const char* kHeader = "batch_size,lr,optimizer,seed,epoch,val_accuracy,epoch_seconds";
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = name + ":" + std::to_string(number);
    if (line[0] == '#') {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) {
        std::string key = line.substr(1, eq - 1);
        key.erase(0, key.find_first_not_of(' '));
        table.meta_[key] = line.substr(eq + 1);
      }
      continue;
    }
    if (!header) {
      if (line.rfind(kHeader, 0) != 0) {
        return Status::InvalidArgument(where + ": expected the header '" + kHeader + "'");
      }
      header = true;
      continue;
    }
    const std::vector<std::string> f = SplitCsv(line);
    if (f.size() < 7) return Status::InvalidArgument(where + ": expected 7 fields");
    TrialConfig config;
    uint64_t seed = 0;
    int epoch = 0;
    Epoch e;
    try {
      config.batch_size = std::stoi(f[0]);
      config.learning_rate = std::stod(f[1]);
      seed = std::stoull(f[3]);
      epoch = std::stoi(f[4]);
      e.val_accuracy = std::stod(f[5]);
      e.seconds = std::stod(f[6]);
    } catch (const std::exception&) {
      return Status::InvalidArgument(where + ": a field is not a number");
    }
    std::optional<Optimizer> optimizer = ParseOptimizer(f[2]);
    if (!optimizer) return Status::InvalidArgument(where + ": unknown optimizer '" + f[2] + "'");
    config.optimizer = *optimizer;
    if (config.batch_size < 1 || !(config.learning_rate > 0) || !(e.seconds >= 0) ||
        !(e.val_accuracy >= 0 && e.val_accuracy <= 1)) {
      return Status::InvalidArgument(where + ": a value is out of range");
    }
    const auto key = std::make_tuple(config.batch_size, config.learning_rate,
                                     static_cast<int>(config.optimizer));
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, table.runs_.size()).first;
      table.runs_.push_back(Run{config, {}});
    }
    std::vector<Epoch>& curve = table.runs_[it->second].curves[seed];
    if (epoch != static_cast<int>(curve.size()) + 1) {
      return Status::InvalidArgument(where + ": epoch " + std::to_string(epoch) +
                                     " does not follow epoch " + std::to_string(curve.size()));
    }
    curve.push_back(e);
  }
  if (!header || table.runs_.empty()) {
    return Status::InvalidArgument(name + ": no header or no rows: not a replay table");
  }
  return table;
}

const ReplayTable::Run& ReplayTable::Nearest(const TrialConfig& config) const {
  bool optimizer_recorded = false;
  for (const Run& r : runs_) optimizer_recorded |= r.config.optimizer == config.optimizer;
  const Run* best = &runs_.front();
  double best_distance = std::numeric_limits<double>::infinity();
  for (const Run& r : runs_) {
    if (optimizer_recorded && r.config.optimizer != config.optimizer) continue;
    const double db = std::log2(static_cast<double>(r.config.batch_size)) -
                      std::log2(static_cast<double>(config.batch_size));
    const double dl = std::log10(r.config.learning_rate) - std::log10(config.learning_rate);
    const double distance = db * db + dl * dl;
    if (distance < best_distance) {
      best_distance = distance;
      best = &r;
    }
  }
  return *best;
}

const std::vector<ReplayTable::Epoch>& ReplayTable::CurveFor(const Run& run,
                                                             uint64_t trial_seed) const {
  auto it = run.curves.begin();
  std::advance(it, static_cast<long>(trial_seed % run.curves.size()));
  return it->second;
}

std::vector<int> ReplayTable::BatchSizes() const {
  std::vector<int> sizes;
  for (const Run& r : runs_) sizes.push_back(r.config.batch_size);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
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
