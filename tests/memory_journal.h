#pragma once

// A Journal that keeps everything in memory, for engine tests. Copyable: a copy is a
// snapshot of the store that an engine can be restored from.

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
    TOPOTUNE_RETURN_IF_ERROR(UpdateTrial(trial));
    ErasePointsAfter(point.trial_id, point.epoch);
    return AppendCurvePoint(point);
  }
  StatusOr<int64_t> CreateProposedTrial(const TrialRecord& trial, int max_batch_size) override {
    StatusOr<int64_t> id = CreateTrial(trial);
    if (!id.ok()) return id;
    SamplerEvent proposal;
    proposal.kind = SamplerEvent::Kind::kPropose;
    proposal.trial_id = *id;
    proposal.max_batch_size = max_batch_size;
    sampler_events[trial.job_id].push_back(proposal);
    return id;
  }
  Status ResetTrial(const TrialRecord& trial, int keep_epochs) override {
    TOPOTUNE_RETURN_IF_ERROR(UpdateTrial(trial));
    ErasePointsAfter(trial.id, keep_epochs);
    return Status::OK();
  }
  Status MarkPromoted(const TrialRecord& trial, int rung) override {
    for (RungResultRecord& r : rung_results) {
      if (r.result.trial_id == trial.id && r.rung == rung) {
        TOPOTUNE_RETURN_IF_ERROR(UpdateTrial(trial));
        r.promoted = true;
        return Status::OK();
      }
    }
    return Status::NotFound("no result of trial " + std::to_string(trial.id) + " at rung " +
                            std::to_string(rung));
  }
  Status RecordRungResult(const TrialRecord& trial, const RungResultRecord& rung_result,
                          const Observation& observation) override {
    TOPOTUNE_RETURN_IF_ERROR(UpdateTrial(trial));
    bool replaced = false;
    for (RungResultRecord& r : rung_results) {
      if (r.result.trial_id == trial.id && r.rung == rung_result.rung) {
        r.result = rung_result.result;
        r.promoted = r.promoted || rung_result.promoted;
        replaced = true;
      }
    }
    if (!replaced) rung_results.push_back(rung_result);
    SamplerEvent event;
    event.kind = SamplerEvent::Kind::kObserve;
    event.trial_id = trial.id;
    event.observation = observation;
    sampler_events[trial.job_id].push_back(event);
    return Status::OK();
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
  Status FixCountedLinks(int64_t job_id, const CountedLinks& links) override {
    auto it = jobs.find(job_id);
    if (it == jobs.end()) return Status::NotFound("job " + std::to_string(job_id) + " not found");
    it->second.counted_links = links;
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
  StatusOr<std::vector<RungResultRecord>> ListRungResults(int64_t job_id) override {
    std::vector<RungResultRecord> out;
    for (const RungResultRecord& r : rung_results) {
      auto t = trials.find(r.result.trial_id);
      if (t != trials.end() && t->second.job_id == job_id) out.push_back(r);
    }
    return out;
  }
  StatusOr<std::vector<SamplerEvent>> ListSamplerEvents(int64_t job_id) override {
    auto it = sampler_events.find(job_id);
    if (it == sampler_events.end()) return std::vector<SamplerEvent>();
    return it->second;
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
  std::vector<RungResultRecord> rung_results;                   // in arrival order
  std::map<int64_t, std::vector<SamplerEvent>> sampler_events;  // by job, in order

 private:
  void ErasePointsAfter(int64_t trial_id, int keep_epochs) {
    points.erase(points.upper_bound({trial_id, keep_epochs}),
                 points.lower_bound({trial_id + 1, 0}));
  }

  int64_t next_id_ = 1;
  int64_t next_job_id_ = 1;
};

}  // namespace topotune
