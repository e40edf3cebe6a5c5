#pragma once

#include <cstdint>
#include <vector>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// Where the controller persists what it decides and what workers report, and reads it back:
// the controller service serves jobs and reports from it, and rebuilds its engines from it
// after a restart. Every write is one durable transaction: when it returns OK the write
// survives a crash. Implementations are thread-safe. storage/sqlite_store.h is the real one; tests may use an in-memory one.
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
  // A trial's epoch and its new trial state in one transaction.
  virtual Status RecordEpoch(const CurvePoint& point, const TrialRecord& trial) = 0;
  virtual Status SetJobState(int64_t job_id, JobState state, const std::string& message,
                             double at) = 0;
  virtual Status UpsertWorker(const WorkerRecord& worker) = 0;
  // Replaces the stored rows of the probe's (worker, model, input) batch sizes.
  virtual Status UpsertDeviceProbe(const DeviceProbe& probe) = 0;

  virtual StatusOr<int64_t> CreateJob(const JobRecord& job) = 0;              // returns the new id
  virtual StatusOr<JobRecord> GetJob(int64_t job_id) = 0;                     // NotFound if absent
  virtual StatusOr<std::vector<JobRecord>> ListJobs() = 0;                    // by id ascending
  virtual StatusOr<std::vector<TrialRecord>> ListTrials(int64_t job_id) = 0;  // by number
  // Every curve point of every trial of the job, by (trial id, epoch).
  virtual StatusOr<std::vector<CurvePoint>> ListCurvePoints(int64_t job_id) = 0;
  virtual StatusOr<std::vector<WorkerRecord>> ListWorkers() = 0;  // by id
  // Every stored probe, by (worker, model, input), batches ascending.
  virtual StatusOr<std::vector<DeviceProbe>> ListDeviceProbes() = 0;
};

}  // namespace topotune
