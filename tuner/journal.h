#pragma once

#include <cstdint>
#include <vector>

#include "tuner/asha.h"
#include "tuner/sampler.h"
#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// A trial's result at the end of a rung, as its job's brackets recorded it.
struct RungResultRecord {
  int rung = 0;
  RungResult result;      ///< result.trial_id names the trial (its bracket is the trial's)
  bool promoted = false;  ///< promoted out of the rung, or finished there: never a candidate
};

// One call the engine made on its job's sampler. A job's events, in order, are the
// sampler's whole history: a fresh sampler of the same spec that replays them is in the
// same state.
struct SamplerEvent {
  enum class Kind { kPropose, kObserve } kind = Kind::kPropose;
  int64_t trial_id = 0;     ///< the trial the proposal became, or the one observed
  int max_batch_size = 0;   ///< kPropose: the limit Propose was asked with
  Observation observation;  ///< kObserve; its config is the trial's
};

// Where the controller persists what it decides and what workers report, and reads it back:
// the controller service serves jobs and reports from it, and rebuilds its engines from it
// after a restart. Every write is one durable transaction: when it returns OK the write
// survives a crash. Implementations are thread-safe. storage/sqlite_store.h is the real one; tests
// may use an in-memory one.
class Journal {
 public:
  virtual ~Journal() = default;

  // Inserts a trial and returns its id (the record's id field is ignored).
  virtual StatusOr<int64_t> CreateTrial(const TrialRecord& trial) = 0;
  // Overwrites the stored trial with the same id.
  virtual Status UpdateTrial(const TrialRecord& trial) = 0;
  // Stores one epoch. A point for an epoch the trial already has replaces it, so a
  // report that arrives twice is stored once.
  virtual Status AppendCurvePoint(const CurvePoint& point) = 0;
  // A trial's epoch and its new trial state in one transaction. The trial's points after
  // that epoch (a rewound segment's) are removed with it.
  virtual Status RecordEpoch(const CurvePoint& point, const TrialRecord& trial) = 0;

  // Inserts a trial that the job's sampler proposed when asked for a batch size of at most
  // `max_batch_size`, and appends that proposal to the job's sampler events, in one
  // transaction. Returns the trial's id.
  virtual StatusOr<int64_t> CreateProposedTrial(const TrialRecord& trial, int max_batch_size) = 0;
  // Overwrites the trial and removes its curve points after epoch `keep_epochs` (a segment
  // that was cut and will be rerun from its start), in one transaction.
  virtual Status ResetTrial(const TrialRecord& trial, int keep_epochs) = 0;
  // Overwrites the trial and marks it promoted out of `rung`, where it has a result, in
  // one transaction. NotFound if it has no result there.
  virtual Status MarkPromoted(const TrialRecord& trial, int rung) = 0;
  // Overwrites the trial, stores its result at `rung_result.rung` (replacing one it has
  // there, which keeps its place in arrival order; a promoted mark is kept) and appends
  // the observation its sampler was told to the job's sampler events, in one transaction.
  virtual Status RecordRungResult(const TrialRecord& trial, const RungResultRecord& rung_result,
                                  const Observation& observation) = 0;
  virtual Status SetJobState(int64_t job_id, JobState state, const std::string& message,
                             double at) = 0;
  // Fixes the links the job's seconds count over (JobRecord::counted_links).
  virtual Status FixCountedLinks(int64_t job_id, const CountedLinks& links) = 0;
  virtual Status UpsertWorker(const WorkerRecord& worker) = 0;
  // Replaces the stored rows of the probe's (worker, model, input) batch sizes.
  virtual Status UpsertDeviceProbe(const DeviceProbe& probe) = 0;

  virtual StatusOr<int64_t> CreateJob(const JobRecord& job) = 0;              // returns the new id
  virtual StatusOr<JobRecord> GetJob(int64_t job_id) = 0;                     // NotFound if absent
  virtual StatusOr<std::vector<JobRecord>> ListJobs() = 0;                    // by id ascending
  virtual StatusOr<std::vector<TrialRecord>> ListTrials(int64_t job_id) = 0;  // by number
  // Every curve point of every trial of the job, by (trial id, epoch).
  virtual StatusOr<std::vector<CurvePoint>> ListCurvePoints(int64_t job_id) = 0;
  // The rung results of the job's trials, in the order they were first recorded.
  virtual StatusOr<std::vector<RungResultRecord>> ListRungResults(int64_t job_id) = 0;
  // The job's sampler events, in the order they happened; observations carry their
  // trial's config.
  virtual StatusOr<std::vector<SamplerEvent>> ListSamplerEvents(int64_t job_id) = 0;
  virtual StatusOr<std::vector<WorkerRecord>> ListWorkers() = 0;  // by id
  // Every stored probe, by (worker, model, input), batches ascending.
  virtual StatusOr<std::vector<DeviceProbe>> ListDeviceProbes() = 0;
};

}  // namespace topotune
