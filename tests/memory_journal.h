#pragma once

// A Journal that keeps everything in memory, for engine tests.

#include <algorithm>
#include <map>
#include <string>
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
  Status SetJobState(int64_t job_id, JobState state, const std::string& message,
                     double at) override {
    job_states.push_back(state);
    if (auto it = jobs.find(job_id); it != jobs.end()) {
      it->second.state = state;
      it->second.message = message;
      it->second.finished_at = IsTerminal(state) ? at : 0.0;
    }
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

  StatusOr<int64_t> CreateJob(const JobRecord& job) override {
    JobRecord j = job;
    j.id = next_job_id_++;
    jobs[j.id] = j;
    return j.id;
  }
  StatusOr<JobRecord> GetJob(int64_t job_id) override {
    auto it = jobs.find(job_id);
    if (it == jobs.end()) return Status::NotFound("job " + std::to_string(job_id) + " not found");
    return it->second;
  }
  StatusOr<std::vector<JobRecord>> ListJobs() override {
    std::vector<JobRecord> out;
    for (const auto& [id, j] : jobs) out.push_back(j);
    return out;
  }
  StatusOr<std::vector<TrialRecord>> ListTrials(int64_t job_id) override {
    std::vector<TrialRecord> out;
    for (const auto& [id, t] : trials) {
      if (t.job_id == job_id) out.push_back(t);
    }
    std::sort(out.begin(), out.end(),
              [](const TrialRecord& a, const TrialRecord& b) { return a.number < b.number; });
    return out;
  }
  StatusOr<std::vector<CurvePoint>> ListCurvePoints(int64_t job_id) override {
    std::vector<CurvePoint> out;
    for (const auto& [key, p] : points) {
      auto t = trials.find(p.trial_id);
      if (t != trials.end() && t->second.job_id == job_id) out.push_back(p);
    }
    return out;
  }
  StatusOr<std::vector<WorkerRecord>> ListWorkers() override {
    std::vector<WorkerRecord> out;
    for (const auto& [id, w] : workers) out.push_back(w);
    return out;
  }
  StatusOr<std::vector<DeviceProbe>> ListDeviceProbes() override { return probes; }

  std::map<int64_t, JobRecord> jobs;
  std::map<int64_t, TrialRecord> trials;
  std::vector<DeviceProbe> probes;
  std::map<std::pair<int64_t, int>, CurvePoint> points;
  std::vector<JobState> job_states;
  std::map<std::string, WorkerRecord> workers;

 private:
  int64_t next_id_ = 1;
  int64_t next_job_id_ = 1;
};

}  // namespace topotune
