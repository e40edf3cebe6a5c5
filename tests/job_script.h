#pragma once

// A scripted tuning job for engine tests: simulated workers that train segments on
// deterministic learning curves, driven one engine call at a time, so a test can stop the
// job between any two calls, restore an engine from its journal, and compare what the
// original and the restored engine decide next.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tuner/job_engine.h"

namespace topotune {

// The spec of a scripted job for `algorithm`: 24 trials over batch sizes 16..256, three
// rungs of 1, 3 and 9 epochs (eta 3), a target some configurations reach. "asha-seconds"
// is ASHA with rungs in seconds; "forecast" has no rungs and a limit of 12 epochs
// ("forecast-gp": with the GP sampler). "forecast-seeds" and "asha-seeds" rerun a
// configuration that beats the incumbent on 2 more seeds (JobSpec::incumbent_seeds).
inline JobSpec ScriptSpec(const std::string& algorithm, int max_trials = 24) {
  JobSpec spec;
  spec.model = "lenet";
  spec.space.batch_sizes = {16, 32, 64, 128, 256};
  spec.space.lr_min = 1e-4;
  spec.space.lr_max = 1.0;
  spec.space.optimizers = {Optimizer::kSgd, Optimizer::kAdam};
  spec.target_accuracy = 0.8;
  spec.max_trials = max_trials;
  spec.algorithm = algorithm;
  spec.asha = AshaSettings::InEpochs(/*min_epochs=*/1, /*reduction_factor=*/3, /*num_rungs=*/3);
  if (algorithm == "forecast" || algorithm == "forecast-budget" || algorithm == "forecast-gp" ||
      algorithm == "forecast-seeds") {
    spec.algorithm = "forecast";
    spec.asha.rungless = true;  // no rungs: 12 epochs in segments of 1
    spec.asha.num_rungs = 1;
    spec.asha.max_epochs = 12;
  }
  if (algorithm == "forecast-gp") spec.forecast_sampler = "gp";
  // Reruns on other seeds (tuner/seed_groups.h), the trial seed changing the curve.
  if (algorithm == "forecast-seeds" || algorithm == "asha-seeds") spec.incumbent_seeds = 3;
  if (algorithm == "asha-seeds") {
    spec.algorithm = "asha";
    spec.target_accuracy = 0.7;  // under ASHA's 9 epochs, no configuration reaches 0.8
  }
  // A time budget that ends the job before its trials are done.
  if (algorithm == "forecast-budget") spec.time_budget_s = 40;
  if (algorithm == "asha-budget") {
    spec.algorithm = "asha";
    spec.time_budget_s = 40;
  }
  if (algorithm == "asha-seconds") {
    spec.algorithm = "asha";
    spec.asha = AshaSettings::InSeconds(/*min_seconds=*/1.5, /*reduction_factor=*/3,
                                        /*num_rungs=*/3, /*max_epochs=*/12);
  }
  spec.grid_lr_points = 3;
  spec.seed = 11;
  return spec;
}

// A deterministic number in [0, 1) from a trial seed and an epoch.
inline double ScriptNoise(uint64_t seed, int epoch) {
  uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(epoch + 1));
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return static_cast<double>(x >> 11) / 9007199254740992.0;
}

// Epoch `epoch` of a trial: accuracy rises toward a ceiling that is highest at lr 0.01
// and batch 64 with adam; larger batches train faster per epoch.
inline CurvePoint ScriptEpoch(const TrialRecord& trial, int epoch) {
  const TrialConfig& c = trial.config;
  const double distance =
      std::abs(std::log10(c.learning_rate) + 2) + std::abs(std::log2(c.batch_size) - 6) / 3;
  const double ceiling = (c.optimizer == Optimizer::kAdam ? 0.95 : 0.9) - 0.12 * distance;
  const double rate = 0.45 / (1.0 + distance);
  CurvePoint p;
  p.epoch = epoch;
  p.val_accuracy = std::clamp(
      ceiling * (1 - std::exp(-rate * epoch)) + 0.03 * (ScriptNoise(trial.seed, epoch) - 0.5), 0.05,
      1.0);
  p.compute_s = 8.0 / std::sqrt(c.batch_size) * (0.8 + 0.4 * ScriptNoise(trial.seed + 1, epoch));
  p.wall_s = p.compute_s;
  p.samples_seen = int64_t{1000} * epoch;
  return p;
}

// A simulated worker: `max_batch` is its probed limit; batches above `fits_batch` run out
// of memory (the probe was optimistic). SGD with a learning rate above 0.3 diverges at its
// second epoch of a segment.
struct ScriptWorker {
  std::string id;
  int max_batch = JobEngine::kAnyBatchSize;
  int fits_batch = 1 << 30;
  std::optional<Assignment> segment;
  int epoch = 0;           // the last epoch it trained
  double segment_s = 0.0;  // training seconds of its segment so far
  bool ended = false;      // the segment is over; its result is the next call
  SegmentResult result;
};

// Drives an engine one call at a time with round-robin workers. Copyable: a copy drives
// another engine from the same point.
class JobScript {
 public:
  JobScript(JobEngine* engine, std::vector<ScriptWorker> workers)
      : engine_(engine), workers_(std::move(workers)) {
    Reconnect();
  }

  // Drives `engine` from now on; its workers are online there.
  void set_engine(JobEngine* engine) {
    engine_ = engine;
    Reconnect();
  }
  // Every worker is online (again) for the engine.
  void Reconnect() {
    for (const ScriptWorker& w : workers_) engine_->SetWorkerOnline(w.id, true);
  }
  JobEngine* engine() const { return engine_; }
  int steps() const { return steps_; }

  // Makes one call on the engine and returns the decision it got, in words; "" once the
  // job is over.
  std::string Step() {
    if (IsTerminal(engine_->state())) return "";
    ++steps_;
    ScriptWorker& w = workers_[next_];
    next_ = (next_ + 1) % workers_.size();
    const double now = steps_;
    if (!w.segment) {
      StatusOr<std::optional<Assignment>> got = engine_->NextAssignment(w.id, now, w.max_batch);
      EXPECT_TRUE(got.ok()) << got.status().ToString();
      if (!got.ok() || !got->has_value()) {
        return "none for " + w.id + ", job " + JobStateName(engine_->state());
      }
      const Assignment& a = **got;
      w.segment = a;
      w.epoch = a.start_epoch;
      w.segment_s = 0.0;
      w.ended = false;
      if (a.trial.config.batch_size > w.fits_batch) {
        w.ended = true;
        w.result = {a.trial.id, a.trial.attempt, SegmentStatus::kInfeasible, "out of memory"};
      }
      return Describe(w.id, a);
    }
    const Assignment& a = *w.segment;
    if (w.ended) {
      Status s = engine_->OnSegmentEnded(w.result, now);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (w.result.status == SegmentStatus::kInfeasible) {
        w.max_batch = std::min(w.max_batch, a.trial.config.batch_size - 1);  // as the dispatcher
      }
      const std::string line = "end of trial " + std::to_string(a.trial.id) + " on " + w.id + ": " +
                               SegmentStatusName(w.result.status) + ", job " +
                               JobStateName(engine_->state());
      w.segment.reset();
      return line;
    }
    ++w.epoch;
    if (a.trial.config.optimizer == Optimizer::kSgd && a.trial.config.learning_rate > 0.3 &&
        w.epoch == a.start_epoch + 2) {
      w.ended = true;
      w.result = {a.trial.id, a.trial.attempt, SegmentStatus::kFailed, "diverged"};
      return "trial " + std::to_string(a.trial.id) + " diverges";
    }
    CurvePoint p = ScriptEpoch(a.trial, w.epoch);
    StatusOr<EpochVerdict> verdict = engine_->OnEpoch(a.trial.id, p);
    EXPECT_TRUE(verdict.ok()) << verdict.status().ToString();
    w.segment_s += p.compute_s + p.comm_s;
    w.result = {a.trial.id, a.trial.attempt, SegmentStatus::kCompleted, ""};
    if (verdict.ok() && verdict->stop) {
      w.ended = true;
      w.result.status = SegmentStatus::kStopped;
      w.result.message = verdict->reason;
    } else if (p.val_accuracy >= engine_->spec().target_accuracy ||
               ReachedSeconds(a.trial.train_s + w.segment_s, a.max_train_s) ||
               w.epoch >= a.trial.target_epochs) {
      w.ended = true;  // as the worker ends a segment: the target, its seconds, its epochs
    }
    return "epoch " + std::to_string(w.epoch) + " of trial " + std::to_string(a.trial.id) +
           ": stop " + (verdict.ok() && verdict->stop ? "yes (" + verdict->reason + ")" : "no");
  }

  // Runs until the job is over or `max_steps` calls were made; false if it did not end.
  bool RunToEnd(int max_steps = 5000) {
    for (int i = 0; i < max_steps; ++i) {
      if (Step().empty()) return true;
    }
    return false;
  }

  bool Busy() const {
    for (const ScriptWorker& w : workers_) {
      if (w.segment) return true;
    }
    return false;
  }

  // The workers with a segment, in the order of their trials' ids.
  std::vector<std::string> BusyWorkersByTrial() const {
    std::vector<std::pair<int64_t, std::string>> busy;
    for (const ScriptWorker& w : workers_) {
      if (w.segment) busy.emplace_back(w.segment->trial.id, w.id);
    }
    std::sort(busy.begin(), busy.end());
    std::vector<std::string> ids;
    for (const auto& b : busy) ids.push_back(b.second);
    return ids;
  }

  // The controller went away: every worker's segment is gone.
  void DropSegments() {
    for (ScriptWorker& w : workers_) w.segment.reset();
  }

 private:
  static std::string Describe(const std::string& worker, const Assignment& a) {
    char buf[320];
    std::snprintf(buf, sizeof(buf),
                  "assign to %s: trial %lld (#%d, attempt %d) %s batch %d lr %.17g, epochs %d..%d, "
                  "max_train_s %.17g, train_s %.17g, rung %d",
                  worker.c_str(), static_cast<long long>(a.trial.id), a.trial.number,
                  a.trial.attempt, OptimizerName(a.trial.config.optimizer),
                  a.trial.config.batch_size, a.trial.config.learning_rate, a.start_epoch,
                  a.trial.target_epochs, a.max_train_s, a.trial.train_s, a.trial.rung);
    return buf;
  }

  JobEngine* engine_;
  std::vector<ScriptWorker> workers_;
  size_t next_ = 0;
  int steps_ = 0;
};

// Two workers: w1 holds any batch but runs out of memory above 128; w2's probe allows 64.
inline std::vector<ScriptWorker> ScriptWorkers() {
  ScriptWorker w1;
  w1.id = "w1";
  w1.fits_batch = 128;
  ScriptWorker w2;
  w2.id = "w2";
  w2.max_batch = 64;
  return {w1, w2};
}

}  // namespace topotune
