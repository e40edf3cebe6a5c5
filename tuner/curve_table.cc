#include "tuner/curve_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

namespace topotune {

std::vector<std::string> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields;
  std::stringstream in(line);
  std::string field;
  while (std::getline(in, field, ',')) fields.push_back(field);
  if (!line.empty() && line.back() == ',') fields.emplace_back();  // an empty last field
  return fields;
}

StatusOr<CurveTable> CurveTable::Parse(const std::string& text, const std::string& name) {
  CurveTable table;
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
    const std::vector<std::string> f = SplitCsvLine(line);
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
    auto out_of_range = [&](const char* field, const std::string& range, double value) {
      char got[32];
      std::snprintf(got, sizeof(got), "%.10g", value);
      return Status::InvalidArgument(where + ": " + field + " must be " + range + ", got " + got);
    };
    if (config.batch_size < 1 || config.batch_size > kMaxBatchSize) {
      return out_of_range("batch_size", "in [1, " + std::to_string(kMaxBatchSize) + "]",
                          config.batch_size);
    }
    if (!(config.learning_rate > 0) || !std::isfinite(config.learning_rate)) {
      return out_of_range("lr", "a finite number > 0", config.learning_rate);
    }
    if (!(e.val_accuracy >= 0 && e.val_accuracy <= 1)) {
      return out_of_range("val_accuracy", "in [0, 1]", e.val_accuracy);
    }
    if (!(e.seconds >= 0) || !std::isfinite(e.seconds)) {
      return out_of_range("epoch_seconds", "a finite number >= 0", e.seconds);
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

void CurveTable::AddEpoch(const TrialConfig& config, uint64_t seed, const Epoch& epoch) {
  for (Run& r : runs_) {
    if (r.config.batch_size == config.batch_size &&
        r.config.learning_rate == config.learning_rate && r.config.optimizer == config.optimizer) {
      r.curves[seed].push_back(epoch);
      return;
    }
  }
  runs_.push_back(Run{config, {{seed, {epoch}}}});
}

const CurveTable::Run& CurveTable::Nearest(const TrialConfig& config) const {
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

const std::vector<CurveTable::Epoch>& CurveTable::CurveFor(const Run& run,
                                                           uint64_t trial_seed) const {
  auto it = run.curves.begin();
  std::advance(it, static_cast<long>(trial_seed % run.curves.size()));
  return it->second;
}

std::vector<int> CurveTable::BatchSizes() const {
  std::vector<int> sizes;
  for (const Run& r : runs_) sizes.push_back(r.config.batch_size);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

}  // namespace topotune
