#include "tuner/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "tuner/sampler_util.h"

namespace topotune {
double Uniform01(std::mt19937_64& rng) { return (rng() >> 11) * (1.0 / 9007199254740992.0); }

double StandardNormal(std::mt19937_64& rng) {
  const double u1 = 1.0 - Uniform01(rng);  // (0, 1]
  const double u2 = Uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

int ModelledRung(const std::vector<Observation>& observations, int fit_rung, int min_points) {
  std::map<int, int> counts;
  for (const Observation& o : observations) ++counts[o.rung];
  if (fit_rung >= 0) return counts[fit_rung] >= min_points ? fit_rung : -1;
  for (auto it = counts.rbegin(); it != counts.rend(); ++it) {
    if (it->second >= min_points) return it->first;
  }
  return -1;
}

bool SameConfig(const TrialConfig& a, const TrialConfig& b) {
  return a.batch_size == b.batch_size && a.learning_rate == b.learning_rate &&
         a.optimizer == b.optimizer;
}

std::vector<StoppedBelow> StoppedBelowRung(const std::vector<Observation>& observations, int rung,
                                           double promote_fraction) {
  std::vector<StoppedBelow> stopped;
  if (rung <= 0) return stopped;
  using Key = std::tuple<int, double, Optimizer>;
  auto key = [](const TrialConfig& c) { return Key(c.batch_size, c.learning_rate, c.optimizer); };
  std::map<Key, int> reached;                  // the highest rung each configuration reached
  std::map<int, std::vector<double>> by_rung;  // scores of each lower rung, ascending
  for (const Observation& o : observations) {
    if (o.kind != Observation::Kind::kOk) continue;
    auto [it, inserted] = reached.emplace(key(o.config), o.rung);
    if (!inserted) it->second = std::max(it->second, o.rung);
    if (o.rung < rung && std::isfinite(o.score)) by_rung[o.rung].push_back(o.score);
  }
  for (auto& [r, scores] : by_rung) std::sort(scores.begin(), scores.end());
  const double cut = 1.0 - std::clamp(promote_fraction, 0.0, 1.0);
  for (int i = 0; i < static_cast<int>(observations.size()); ++i) {
    const Observation& o = observations[i];
    if (o.kind != Observation::Kind::kOk || o.rung >= rung || !std::isfinite(o.score)) continue;
    if (reached.at(key(o.config)) != o.rung) continue;  // it went further
    const std::vector<double>& scores = by_rung.at(o.rung);
    // The share of its rung it beats; the top promote_fraction may still be promoted.
    const double beaten =
        static_cast<double>(std::lower_bound(scores.begin(), scores.end(), o.score) -
                            scores.begin()) /
        static_cast<double>(scores.size());
    if (beaten >= cut) continue;
    stopped.push_back({i, (o.rung + beaten / cut) / rung, 0.0});
  }
  std::map<int, double> best_stopped;
  for (const StoppedBelow& s : stopped) {
    const Observation& o = observations[s.observation];
    auto [it, inserted] = best_stopped.emplace(o.rung, o.score);
    if (!inserted) it->second = std::max(it->second, o.score);
  }
  for (StoppedBelow& s : stopped) {
    const Observation& o = observations[s.observation];
    s.gap = best_stopped.at(o.rung) - o.score;
  }
  return stopped;
}

void RememberPending(std::deque<TrialConfig>* pending, const TrialConfig& config, int max_pending) {
  if (max_pending <= 0) return;
  pending->push_back(config);
  while (static_cast<int>(pending->size()) > max_pending) pending->pop_front();
}

void ForgetPending(std::deque<TrialConfig>* pending, const TrialConfig& config) {
  for (auto it = pending->begin(); it != pending->end(); ++it) {
    if (SameConfig(*it, config)) {
      pending->erase(it);
      return;
    }
  }
}

RandomSampler::RandomSampler(SearchSpace space, uint64_t seed)
    : space_(std::move(space)), rng_(seed) {}

TrialConfig RandomSampler::Propose(int max_batch_size) {
  TrialConfig config;
  size_t allowed = 0;  // batch_sizes ascend
  while (allowed < space_.batch_sizes.size() && space_.batch_sizes[allowed] <= max_batch_size) {
    ++allowed;
  }
  allowed = std::max<size_t>(allowed, 1);
  config.batch_size = space_.batch_sizes[static_cast<size_t>(Uniform01(rng_) * allowed)];
  const double log_lr = std::log(space_.lr_min) +
                        Uniform01(rng_) * (std::log(space_.lr_max) - std::log(space_.lr_min));
  config.learning_rate = std::exp(log_lr);
  config.optimizer =
      space_.optimizers[static_cast<size_t>(Uniform01(rng_) * space_.optimizers.size())];
  return config;
}

uint64_t TrialSeed(uint64_t job_seed, int number) {
  // splitmix64 of the pair.
  uint64_t z = job_seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(number) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;  // fits a signed 64-bit column
}

}  // namespace topotune
