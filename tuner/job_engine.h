#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tuner/asha.h"
#include "tuner/checkpoint_store.h"
#include "tuner/curve_model.h"
#include "tuner/journal.h"
#include "tuner/sampler.h"
#include "tuner/seed_groups.h"
#include "tuner/segment.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// A trial segment on a placement: train `trial` from start_epoch to trial.target_epochs.
struct Assignment {
  int64_t job_id = 0;
  Placement placement;
  TrialRecord trial;       ///< state kRunning on the placement; trial.attempt is this segment
  int start_epoch = 0;     ///< > 0: resume from the checkpoint of `checkpoint` at start_epoch
  std::string checkpoint;  ///< the trial's checkpoint stem, "job3-trial7" (checkpoint_store.h)
  // Set when the placement's lead did not write the checkpoint it resumes from: that file
  // in the controller's CheckpointStore, to be sent to it before the segment.
  std::string checkpoint_source;
  // > 0: end the segment after the epoch at which the trial's training seconds (its
  // trial.train_s before the segment plus the segment's) reach this: the rung's budget in
  // seconds, or the incumbent's time-to-accuracy (bound pruning), whichever is less. The
  // worker applies it itself, so no epoch runs past it while a stop is on the wire.
  double max_train_s = 0.0;
  // The placement's seconds count x this on the job's reference class (Placement::
  // time_scale at the trial's batch size). The trial's seconds and max_train_s above are
  // the reference's; MakeSegmentSpec sends the placement its own.
  double time_scale = 1.0;
};

// The engine's answer to an epoch report.
struct EpochVerdict {
  bool stop = false;
  std::string reason;
};

// The wire form of an assignment: what the placement's workers train.
SegmentSpec MakeSegmentSpec(const Assignment& assignment, const JobSpec& spec);

// The state machine of one tuning job: the job's sampler proposes, its brackets of
// successive halving (tuner/algorithms.h) allocate epochs, trials stop at the target,
// bound pruning stops trials that can no longer beat the incumbent's time-to-accuracy,
// and a promoted or rerun segment resumes from its trial's checkpoint: on the worker that
// wrote it, or on any worker when the controller's CheckpointStore has a copy. Every
// second it counts (rungs, the bound, time-to-accuracy) is a second on the job's reference
// class (JobSpec::reference_class), by each placement's time scale. Every state change
// goes through the journal before it is acted on, and everything the engine decides from
// is stored there: Restore rebuilds an engine that makes the same decisions. Not
// thread-safe: the Dispatcher serialises calls.
class JobEngine {
 public:
  // A new job. `journal` and `checkpoints` (null: checkpoints stay on their workers) must
  // outlive the engine.
  JobEngine(JobRecord job, JobSpec spec, Journal* journal,
            const CheckpointStore* checkpoints = nullptr);

  // Rebuilds the engine of a stored, unfinished job from `journal` (after a controller
  // restart): its trials with their curves, its brackets' rungs (entered counts, results,
  // promoted marks) and its sampler, by replaying the sampler's stored history on a fresh
  // sampler of `spec`. Its running trials are then treated as if their workers were lost
  // (OnWorkerLost), except that the job does not finish while no worker is online: each
  // goes back to pending, to be rerun from the start of its segment, and the points of
  // the cut segment are removed from the journal; one that reached the target completes.
  // Internal if the stored state is inconsistent or the sampler does not replay to the
  // stored proposals. `journal` must outlive the engine.
  static StatusOr<std::unique_ptr<JobEngine>> Restore(JobRecord job, JobSpec spec, Journal* journal,
                                                      const CheckpointStore* checkpoints = nullptr);
  JobEngine(const JobEngine&) = delete;
  JobEngine& operator=(const JobEngine&) = delete;

  int64_t job_id() const { return job_.id; }
  JobState state() const { return job_.state; }
  const JobSpec& spec() const { return spec_; }

  // The target the job's seconds count on: ReferenceTarget(spec) with the links fixed at
  // its first placement. The first call fixes `now_known` (that target with the links
  // known now, e.g. ApplyLinkTests) and stores its links (JobRecord::counted_links);
  // later calls, and a restored engine, return the fixed one, so every trial counts alike.
  StatusOr<Target> CountedReference(const Target& now_known);

  // The next segment for a free placement (today one worker) whose workers hold batches of
  // up to placement.max_batch_size (their probed limit for this job's model), or nullopt
  // when this job has nothing that placement may run now. Persists the trial before
  // returning it.
  StatusOr<std::optional<Assignment>> NextAssignment(const Placement& placement, double now);
  // The same for one worker with that limit.
  StatusOr<std::optional<Assignment>> NextAssignment(const std::string& worker_id, double now,
                                                     int max_batch_size = kAnyBatchSize);
  static constexpr int kAnyBatchSize = 1 << 30;

  // Records an epoch of a running trial and says whether the worker should stop. A repeated
  // epoch replaces the stored one. An epoch of a trial that is not running is ignored and
  // answered with stop.
  StatusOr<EpochVerdict> OnEpoch(int64_t trial_id, const CurvePoint& point);

  // A placement ended a segment. Repeats, and results of an attempt that is not the
  // trial's current one, are ignored.
  Status OnSegmentEnded(const SegmentResult& result, double now);

  // A worker disconnected or lost its lease: its running trials go back to pending, to be
  // rerun from the checkpoint at the start of their segment (on the worker that wrote it,
  // or on any worker when the store has it), and the points of their cut segments are
  // removed from the journal.
  Status OnWorkerLost(const std::string& worker_id, double now);

  // Which workers are connected: a paused trial whose checkpoint is only on an offline
  // worker cannot be promoted, and the job does not wait for it. `device_class`, when
  // given, is the worker's class: a job waits for its confirmations (below) only while a
  // worker of its reference class is online.
  void SetWorkerOnline(const std::string& worker_id, bool online,
                       const std::string& device_class = "");

  // Confirmations: once the sampler's trials are spent, the kConfirmTop best trials that
  // reached the target with seconds counted from another class (scaled) are trained again,
  // same configuration and seed, on a worker of the reference class, as new trials
  // (TrialRecord::confirms), to at most kConfirmLimit x their counted time-to-accuracy.
  // After them, so is every other scaled trial whose count is below the best TTA measured
  // so far (a confirmation's, or a trial's that ran on the class itself), best first, so
  // that the answer is a measured one. The sampler never sees them.
  static constexpr int kConfirmTop = 2;
  static constexpr double kConfirmLimit = 2.0;

  // Cancels the job: every unfinished trial is stopped. Returns the (worker, trial id)
  // pairs that were running, to be told to stop.
  StatusOr<std::vector<std::pair<std::string, int64_t>>> Cancel(double now);

  // Marks the job failed (for example when the controller cannot persist it).
  Status Fail(const std::string& message, double now);

  bool HasTrial(int64_t trial_id) const { return trials_.count(trial_id) > 0; }
  // The workers that hold checkpoints of unfinished trials that the store does not have,
  // which only they can resume.
  std::set<std::string> CheckpointHolders() const;
  // The checkpoints this job may still resume from: each unfinished trial's stem, with the
  // start of its current rung (older checkpoints of it are never used again).
  std::map<std::string, int> CheckpointsToKeep() const;
  // The incumbent's time-to-accuracy, if any trial reached the target: the least mean over
  // the settled configurations (tuner/seed_groups.h; with incumbent_seeds 1, every trial
  // that reached the target is one), or while none is, the least single TTA of those whose
  // runs so far all reached it; confirmations on the reference class count too.
  std::optional<double> IncumbentTta() const;
  // What a sampler's trial (not a rerun, not a confirmation) must beat: the time that stops
  // it (its bound), the forecast's reference, and, once it reaches the target, the time it
  // must have reached it in to earn reruns. IncumbentTta, except that with incumbent_seeds
  // > 1 and a named configuration it is the slowest of that configuration's runs. A first
  // run is one seed, and measured against a mean it is lost whenever its seed is slower than
  // the mean, though its own mean may be the better (mnist-hard with 3 seeds: the winner's
  // slowest seed, 4.46 s, against a runner-up's mean of 4.33 s over 2.5, 4.0 and 5.5 s).
  // Slower than every run of the incumbent, it is still stopped. Where the named
  // configuration has one distinct run (its seed changed nothing) this is that run.
  struct Bar {
    double seconds = 0.0;
    int slowest_of = 0;  ///< > 0: the slowest of the named configuration's this many runs
  };
  std::optional<Bar> ChallengerBar() const;
  // What a configuration with `group`'s runs must stay below to earn its next rerun: its
  // first run, ChallengerBar's slowest run of `named`; after a rerun, `named`'s mean.
  static double RerunBar(const SeedGroup& group, const SeedGroup& named);
  // The least TTA among trials that reached the target with no epoch counted from another
  // class's seconds (confirmations, and trials that ran on the reference class).
  std::optional<double> BestMeasuredTta() const;
  // The training seconds the job's trials have spent together (counted, as the bound counts
  // them), the seconds of cut epochs included (TrialRecord::cut_s), and whether they reached
  // its time budget (JobSpec::time_budget_s; never without one).
  double SpentSeconds() const;
  bool BudgetSpent() const;

 private:
  struct LiveTrial {
    TrialRecord record;                  // record.bracket indexes brackets_
    std::vector<double> epoch_train_s;   // training seconds of each epoch done (reference_s)
    std::vector<double> epoch_accuracy;  // validation accuracy of each epoch done
    std::string stop_reason;             // set when the engine asked the worker to stop
    double bound_s = 0.0;                // the incumbent's TTA when its segment began; 0: none
    int bound_slowest_of = 0;            // bound_s is ChallengerBar's slowest of this many
    double budget_cap_s = 0.0;           // where the job's time budget ends its segment; 0: none
    double time_scale = 1.0;             // its current segment's (Assignment::time_scale)
    std::string device_class;            // its current segment's (Placement::device_class)
    // Algorithm "forecast": the curve model's last prediction, made when the job's curves
    // were at version forecast_version (it depends on the other curves too).
    std::optional<EpochsToTarget> forecast;
    uint64_t forecast_version = 0;
    // The score of its last observation (what the sampler learnt), once it has one.
    std::optional<double> observed_score;
    bool scaled = false;  // some of its seconds were counted from another class's
    bool rerun = false;   // it reruns a sampler's trial on another seed (seed_groups.h)
  };

  StatusOr<std::optional<Assignment>> TryPending(const Placement& placement);
  StatusOr<std::optional<Assignment>> TryPromotion(const Placement& placement);
  // Algorithm "forecast", in place of promotions: goes on with the paused trial whose
  // predicted time-to-accuracy is best, and stops those unlikely to beat the incumbent.
  StatusOr<std::optional<Assignment>> TryContinue(const Placement& placement);
  // Starts `t`'s next segment (SegmentEpochs, up to the limit) on `placement`.
  StatusOr<std::optional<Assignment>> Resume(LiveTrial& t, const Placement& placement);
  bool Forecasting() const { return spec_.asha.rungless; }
  // The curve model's prediction for `t`'s curve so far (cached until any curve grows).
  // The stop and continue rules use it.
  const EpochsToTarget& Forecast(LiveTrial& t);
  // `model`'s prediction for `t`'s curve from the job's current curves.
  EpochsToTarget Predict(CurveModel& model, const LiveTrial& t);
  // Mean training seconds of `t`'s epochs.
  double EpochSeconds(const LiveTrial& t) const;
  // The probability that `t` reaches the target in less time than the incumbent's TTA, or
  // with no incumbent, than the best predicted median TTA of the other unfinished trials
  // (reprieved ones left out). Those include blind ones (see Blind), whose uninformed
  // median can be that bar; TryContinue then asks WinBound before it stops `t` for good.
  double WinProbability(LiveTrial& t);
  // With no incumbent: the least, over the job's other unfinished trials that are not
  // reprieved, of the probability that `t`'s TTA is below theirs, from the two forecasts'
  // samples (independent; "never" is infinite, and never against never is no win). To beat
  // every other trial, `t` must beat each, so this bounds that chance from above. Unlike
  // WinProbability's median, a competitor whose forecast is wide (uninformed: blind, or
  // flat on the take-off prior) is no bar: half of its samples may never reach the target.
  double WinBound(LiveTrial& t);
  // A paused trial that WinProbability would have stopped but WinBound kept (TryContinue):
  // it has a recorded forecast, which only a stopped trial has otherwise.
  static bool Reprieved(const LiveTrial& t) {
    return t.record.state == TrialState::kPaused && t.record.forecast.has_value();
  }
  // The expected sampler score over `f`'s samples, a forecast of `t`: a stopped trial
  // counts by the time-to-accuracy it was heading for, with its uncertainty, not as a
  // failure.
  double ForecastScore(const LiveTrial& t, const EpochsToTarget& f) const;
  // Whether `t`'s ForecastScore (of its Forecast) is among the top 1/reduction_factor of
  // the job's trials with a curve (none while fewer than reduction_factor have one); a
  // finished trial counts with the score it was observed with, or, if the forecast stopped
  // it, with the ForecastScore it had then (TrialForecast::score).
  bool InTopShare(LiveTrial& t);
  // Whether `t`'s curve is shorter than the curve model can fit (and than the job's limit):
  // its forecast is then the take-off prior, the same for a trial at chance as for one
  // that has learned. With segments of 1 epoch (jobs of up to 20 epochs) every trial is
  // blind for its first two segments.
  bool Blind(const LiveTrial& t) const;
  // Whether `t`'s latest accuracy ranks in the top 1/reduction_factor among the job's
  // trials that have trained as many epochs or more, each by its accuracy at that epoch
  // (ties go to the earlier trial): ASHA's promotion rule, which TryContinue uses while the
  // forecast is blind.
  bool RanksAtItsEpoch(const LiveTrial& t) const;
  // Whether the sampler has observed (the trial ended) fewer than half of the trials it
  // proposed, past TPE's random start. TryContinue then resumes the best paused trial
  // rather than let a new proposal come from a model of too few trials.
  bool SamplerLags() const;
  StatusOr<std::optional<Assignment>> TryNewTrial(const Placement& placement);
  // A confirmation (see kConfirmTop) for a placement of the reference class.
  StatusOr<std::optional<Assignment>> TryConfirm(const Placement& placement);
  // Creates a trial that measures `of`'s configuration again (TrialRecord::confirms) with
  // `seed`: a confirmation on the same seed, a rerun (seed_groups.h) on another; and starts
  // it on `placement`.
  StatusOr<std::optional<Assignment>> StartRemeasurement(const TrialRecord& of, uint64_t seed,
                                                         const Placement& placement);
  static bool IsConfirmation(const LiveTrial& t) { return t.record.confirms >= 0 && !t.rerun; }
  // JobSpec::incumbent_seeds > 1: the next rerun of the most promising unsettled
  // configuration (tuner/seed_groups.h), before any other new work of the job.
  StatusOr<std::optional<Assignment>> TryRerun(const Placement& placement);
  // The sampler's trial whose configuration is due its next seed, if any: of the
  // configurations that reached the target on every run so far, have fewer than
  // incumbent_seeds runs, a mean so far below the named incumbent's, and a next rerun whose
  // cap (RerunCap) is positive and fits the time budget left, the one of least mean, unless
  // a rerun of it is running or its batch exceeds max_batch. One configuration at a time.
  std::vector<const LiveTrial*> DueReruns(int max_batch) const;
  // The seconds the next run of `group` may train: kConfirmLimit x its first run's TTA,
  // and no more than would leave its mean over incumbent_seeds runs below the `named`
  // group's (the trials' sums compared, SMAC's adaptive capping); `named` may be null.
  double RerunCap(const SeedGroup& group, const SeedGroup* named) const;
  // Whether the job's time budget left covers a rerun's cap (always, without a budget).
  bool RerunFitsBudget(double cap) const;
  // A rerun that a cut sent back restarts only while its configuration can still win and
  // the budget covers its cap; otherwise it is stopped here (its group then cannot settle).
  // Returns whether it was.
  StatusOr<bool> EndCutRerunIfBeaten(LiveTrial& t);
  // Where `t`'s first epochs equal, exactly, those of an earlier run of its configuration
  // (kSameCurveEpochs of them, more while that run's curve has not moved from its first
  // value), that run's number; else -1.
  int RepeatedRun(const LiveTrial& t) const;
  static constexpr int kSameCurveEpochs = 3;
  Status EndRerun(LiveTrial& t, const SegmentResult& outcome);
  // The job's trial records, and its sampler's trials grouped by seed.
  std::vector<const TrialRecord*> Records() const;
  // The sampler's trials still to confirm, best first: among the kConfirmTop best that
  // reached the target, and the next ones whose count is below BestMeasuredTta, those
  // scaled, not confirmed yet, and whose batch is <= max_batch.
  std::vector<const LiveTrial*> DueConfirmations(int max_batch) const;
  // The largest batch an online worker of the reference class holds, as its last
  // placement said (kAnyBatchSize before it asked for work); 0 when none is online.
  int ReferenceMaxBatch() const;
  // The training seconds a confirmation of `t` may take: kConfirmLimit x its counted TTA.
  double ConfirmLimit(const LiveTrial& t) const;
  Status EndConfirmation(LiveTrial& t, const SegmentResult& outcome);
  // A segment the worker ended infeasible or failed: sets `r`'s state and reason (after
  // `what`) and returns true; otherwise changes nothing.
  static bool EndedByTheWorker(TrialRecord& r, const SegmentResult& outcome,
                               const std::string& what);
  Assignment Start(LiveTrial& t, const Placement& placement, int start_epoch);
  // A paused trial that cannot beat the incumbent is stopped; returns true if it was.
  StatusOr<bool> PruneIfBeaten(LiveTrial& t);
  // The trial's checkpoint stem, "job3-trial7".
  std::string CheckpointStem(const LiveTrial& t) const;
  // The epoch the trial resumes from next: its rung's start while pending, its epochs done
  // while paused.
  int ResumeEpoch(const LiveTrial& t) const;
  bool StoreHas(const LiveTrial& t, int epoch) const;
  // Whether the trial can resume on a placement led by `lead` (empty: on some worker).
  bool CanResumeOn(const LiveTrial& t, const std::string& lead) const;
  Status MarkRunning(double now);
  Status MaybeFinish(double now);
  int SegmentStart(const LiveTrial& t) const { return t.record.rung_start_epoch; }
  bool InSeconds() const { return spec_.asha.unit == RungUnit::kSeconds; }
  // The trial's current rung is trained to its end: its epochs, or its seconds.
  bool RungDone(const LiveTrial& t) const;
  std::string BoundReason(const LiveTrial& t, double incumbent) const;
  std::string BoundReason(const LiveTrial& t, const Bar& bar) const;
  std::string BudgetReason() const;
  // Whether the job's time budget left covers a confirmation of `due` to its limit (always,
  // without a budget): one that does not is not started, so none is cut short.
  bool ConfirmationFits(const LiveTrial& due) const;
  // Whether it covers `confirmation`'s limit less the seconds it keeps, where a cut sent it
  // back to wait (a confirmation is one segment from epoch 0, so it keeps none): always,
  // without a budget. One that does not fit is not rerun.
  bool RerunFits(const LiveTrial& confirmation) const;
  void Recount(LiveTrial& t) const;
  // Records a trial's result at its rung, tells the sampler, and stores both with the
  // trial.
  // `score_override`: the sampler's score when it is not the measured outcome's (a trial
  // the forecast stopped).
  Status RecordRungResult(LiveTrial& t, Observation::Kind kind,
                          std::optional<double> score_override = std::nullopt);
  // A paused trial that waits: the sampler observes its forecast (the sampler's model),
  // as if it had been stopped, unless it has already observed the trial.
  Status ObserveWaiting(LiveTrial& t);
  // The trial's segment ended as `outcome` says: its new state and its rung result.
  Status EndSegment(LiveTrial& t, const SegmentResult& outcome);
  // The trial's running segment is lost: back to pending at the start of the segment, its
  // epochs after it forgotten here and in the journal.
  Status CutSegment(LiveTrial& t, const std::string& why);
  // Rebuilds trials_, brackets_, sampled_ and the sampler from the journal (Restore).
  Status Rebuild();

  struct Bracket {
    AshaRungs rungs;
    int quota = 0;
    int created = 0;
  };

  JobRecord job_;
  JobSpec spec_;
  Journal* journal_;
  const CheckpointStore* checkpoints_;  // may be null
  std::unique_ptr<Sampler> sampler_;
  std::vector<Bracket> brackets_;
  std::map<int64_t, LiveTrial> trials_;  // by trial id
  std::set<std::string> online_workers_;
  std::map<std::string, std::string> worker_class_;  // as SetWorkerOnline was told
  std::map<std::string, int> worker_max_batch_;      // as its last placement said
  int confirmations_ = 0;                            // trials created to confirm
  int sampled_ = 0;
  CurveModel curve_model_;
  // What the sampler observes a trial the forecast stopped by: curve_model_, except that
  // a curve still at chance gets a calibrated chance of taking off
  // (CurveModelOptions::censored_take_off) rather than the generous one that keeps slow
  // starters going.
  CurveModel observed_model_;
  // Counts the changes to any trial's curve, so that a cached forecast is used only while
  // no curve changed: a forecast is then a function of the job's current state alone, and
  // a restored engine, which starts with none cached, predicts as the original did.
  uint64_t curves_version_ = 1;
  // Each model's noise pooled over the job's curves (CurveModel::EstimateNoise), as of a
  // curves_version_ (0: none yet).
  struct PooledNoise {
    uint64_t version = 0;
    double noise = 0.0;
  };
  PooledNoise forecast_noise_;  // curve_model_'s
  PooledNoise observed_noise_;  // observed_model_'s
};

}  // namespace topotune
