#pragma once

// A Journal that keeps everything in memory, for engine tests.

#include <map>
#include <utility>
#include <vector>

#include "tuner/journal.h"

namespace topotune {

class MemoryJournal : public Journal {
 public:
  StatusOr<int64_t> CreateTrial(const TrialRecord& trial) override {
    TrialRecord t = trial;
    t.id = next_id_++;
    trials[t.id] = t;
    return t.id;
  }
  Status UpdateTrial(const TrialRecord& trial) override {
    if (!trials.count(trial.id)) return Status::NotFound("trial");
    trials[trial.id] = trial;
    return Status::OK();
  }
  Status AppendCurvePoint(const CurvePoint& point) override {
    points[{point.trial_id, point.epoch}] = point;
    return Status::OK();
  }
  Status RecordEpoch(const CurvePoint& point, const TrialRecord& trial) override {
    TOPOTUNE_RETURN_IF_ERROR(AppendCurvePoint(point));
    return UpdateTrial(trial);
  }
  Status SetJobState(int64_t, JobState state, const std::string&, double) override {
    job_states.push_back(state);
    return Status::OK();
  }
  Status UpsertWorker(const WorkerRecord& worker) override {
    workers[worker.id] = worker;
    return Status::OK();
  }

  Status UpsertDeviceProbe(const DeviceProbe& probe) override {
    probes.push_back(probe);
    return Status::OK();
  }

  std::map<int64_t, TrialRecord> trials;
  std::vector<DeviceProbe> probes;
  std::map<std::pair<int64_t, int>, CurvePoint> points;
  std::vector<JobState> job_states;
  std::map<std::string, WorkerRecord> workers;

 private:
  int64_t next_id_ = 1;
};

}  // namespace topotune
