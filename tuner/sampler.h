#pragma once

#include <cstdint>
#include <memory>
#include <random>

#include "tuner/types.h"

namespace topotune {

// A result a sampler learns from. `score` is higher-better and comparable within a rung:
// the engine maps time-to-accuracy (reached the target) and accuracy (did not) onto it.
// Failed (diverged) and infeasible (out of memory) trials are observations too, so a
// model learns where the space breaks instead of proposing there again.
struct Observation {
  TrialConfig config;
  int rung = 0;  ///< the fidelity: higher rungs trained longer
  double score = 0.0;
  enum class Kind { kOk, kFailed, kInfeasible } kind = Kind::kOk;
};

// Proposes configurations from a search space. Not thread-safe.
class Sampler {
 public:
  virtual ~Sampler() = default;
  // The next configuration to try, with a batch size of at most max_batch_size (the
  // device's limit; the caller ensures the space has one that small).
  virtual TrialConfig Propose(int max_batch_size) = 0;
  // What a configuration achieved at the end of a rung. Samplers that learn use it.
  virtual void Observe(const Observation& observation) { (void)observation; }
};

// Independent draws: batch size uniform over the space's powers of two, learning rate
// log-uniform in [lr_min, lr_max], optimizer uniform.
class RandomSampler final : public Sampler {
 public:
  RandomSampler(SearchSpace space, uint64_t seed);
  TrialConfig Propose(int max_batch_size) override;

 private:
  SearchSpace space_;
  std::mt19937_64 rng_;
};

// The seed of trial `number` of a job whose sampler seed is `job_seed`: distinct per
// trial, reproducible.
uint64_t TrialSeed(uint64_t job_seed, int number);

}  // namespace topotune
