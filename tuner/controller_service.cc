#include "tuner/controller_service.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>
#include <vector>

namespace topotune {

ControllerService::ControllerService(Journal* journal, WorkerChannel* channel,
                                     SpecDecoder decode_spec, std::function<double()> clock,
                                     CheckpointStore* checkpoints)
    : journal_(journal),
      decode_spec_(std::move(decode_spec)),
      clock_(clock),
      dispatcher_(journal, channel, clock, checkpoints) {}

StatusOr<int> ControllerService::ResumeJobs() {
  StatusOr<std::vector<JobRecord>> jobs = journal_->ListJobs();
  if (!jobs.ok()) return jobs.status();
  int resumed = 0;
  for (const JobRecord& job : *jobs) {
    if (IsTerminal(job.state)) continue;
    StatusOr<JobSpec> spec = decode_spec_(job.spec_json);
    Status s = spec.ok() ? dispatcher_.RestoreJob(job, *spec) : spec.status();
    if (s.ok()) {
      ++resumed;
      continue;
    }
    std::fprintf(stderr, "topotuned: job %lld cannot resume: %s\n", static_cast<long long>(job.id),
                 s.ToString().c_str());
    TOPOTUNE_RETURN_IF_ERROR(journal_->SetJobState(
        job.id, JobState::kFailed, "could not resume after a restart: " + s.message(), clock_()));
  }
  dispatcher_.CollectCheckpoints();
  return resumed;
}

StatusOr<JobRecord> ControllerService::Submit(const JobSpec& spec, const std::string& spec_json) {
  JobRecord job;
  job.name = spec.name.empty() ? spec.model : spec.name;
  job.spec_json = spec_json;
  job.state = JobState::kQueued;
  job.created_at = clock_();
  StatusOr<int64_t> id = journal_->CreateJob(job);
  if (!id.ok()) return id.status();
  job.id = *id;
  TOPOTUNE_RETURN_IF_ERROR(dispatcher_.AddJob(job, spec));
  return journal_->GetJob(job.id);
}

StatusOr<JobRecord> ControllerService::Cancel(int64_t job_id) {
  StatusOr<JobRecord> job = journal_->GetJob(job_id);
  if (!job.ok()) return job.status();
  if (IsTerminal(job->state) || !dispatcher_.IsActive(job_id)) {
    return Status::FailedPrecondition("job " + std::to_string(job_id) + " is " +
                                      JobStateName(job->state) +
                                      "; only queued or running jobs can be cancelled");
  }
  TOPOTUNE_RETURN_IF_ERROR(dispatcher_.CancelJob(job_id));
  return journal_->GetJob(job_id);
}

StatusOr<std::vector<JobRecord>> ControllerService::ListJobs() { return journal_->ListJobs(); }

StatusOr<JobDetail> ControllerService::GetJob(int64_t job_id, bool with_points) {
  JobDetail detail;
  StatusOr<JobRecord> job = journal_->GetJob(job_id);
  if (!job.ok()) return job.status();
  detail.job = *job;
  StatusOr<JobSpec> spec = decode_spec_(job->spec_json);
  if (!spec.ok()) {
    return Status::Internal("the stored spec of job " + std::to_string(job_id) +
                            " does not parse: " + spec.status().message());
  }
  detail.spec = *spec;
  StatusOr<std::vector<TrialRecord>> trials = journal_->ListTrials(job_id);
  if (!trials.ok()) return trials.status();
  detail.trials = std::move(*trials);
  if (with_points) {
    StatusOr<std::vector<CurvePoint>> points = journal_->ListCurvePoints(job_id);
    if (!points.ok()) return points.status();
    detail.points = std::move(*points);
  }
  return detail;
}

StatusOr<Report> ControllerService::ReportOf(int64_t job_id) {
  StatusOr<JobDetail> d = GetJob(job_id, /*with_points=*/true);
  if (!d.ok()) return d.status();
  return BuildReport(d->job, d->spec, d->trials, d->points);
}

StatusOr<std::vector<WorkerDetail>> ControllerService::Workers() {
  StatusOr<std::vector<WorkerRecord>> workers = journal_->ListWorkers();
  if (!workers.ok()) return workers.status();
  StatusOr<std::vector<DeviceProbe>> probes = journal_->ListDeviceProbes();
  if (!probes.ok()) return probes.status();
  std::vector<WorkerDetail> out;
  for (const WorkerRecord& w : *workers) {
    WorkerDetail d;
    d.record = w;
    for (const DeviceProbe& p : *probes) {
      if (p.worker_id == w.id) d.probes.push_back(p);
    }
    std::lock_guard<std::mutex> lock(links_mutex_);
    auto link = links_.find(w.id);
    if (link != links_.end()) d.link = link->second;
    out.push_back(std::move(d));
  }
  return out;
}

StatusOr<TopologyView> ControllerService::TopologyOf(const Topology* declared) {
  StatusOr<std::vector<WorkerRecord>> workers = journal_->ListWorkers();
  if (!workers.ok()) return workers.status();
  std::map<std::string, WorkerLink> links;
  std::vector<DirectLink> direct;
  {
    std::lock_guard<std::mutex> lock(links_mutex_);
    links = links_;
    direct = direct_links_;
  }
  return BuildTopologyView(*workers, links, direct, declared);
}

void ControllerService::WorkerLinkMeasured(const std::string& worker_id, const WorkerLink& link) {
  std::lock_guard<std::mutex> lock(links_mutex_);
  links_[worker_id] = link;
}

void ControllerService::DirectLinkMeasured(const DirectLink& link) {
  // Lock order: links_mutex_, then the dispatcher's (which never takes links_mutex_).
  std::lock_guard<std::mutex> lock(links_mutex_);
  const auto pair = std::minmax(link.from_site, link.to_site);
  auto same = std::find_if(direct_links_.begin(), direct_links_.end(), [&](const DirectLink& d) {
    return std::minmax(d.from_site, d.to_site) == pair;
  });
  if (same != direct_links_.end()) {
    *same = link;
  } else {
    // Site names come from workers: keep the latest kMaxDirectLinks pairs, not every one.
    if (direct_links_.size() >= kMaxDirectLinks) {
      direct_links_.erase(std::min_element(
          direct_links_.begin(), direct_links_.end(),
          [](const DirectLink& a, const DirectLink& b) { return a.measured_at < b.measured_at; }));
    }
    direct_links_.push_back(link);
  }
  dispatcher_.SetLinkTests(direct_links_);
}

StatusOr<std::vector<TargetPlan>> ControllerService::Predict(int64_t job_id,
                                                             const Topology& topology) {
  StatusOr<JobDetail> d = GetJob(job_id, /*with_points=*/true);
  if (!d.ok()) return d.status();
  StatusOr<std::vector<WorkerRecord>> workers = journal_->ListWorkers();
  if (!workers.ok()) return workers.status();
  StatusOr<std::vector<DeviceProbe>> probes = journal_->ListDeviceProbes();
  if (!probes.ok()) return probes.status();

  // Each trial's curve is a seed of its configuration; an epoch costs its training
  // seconds (compute and synchronisation) on the device that ran it.
  std::map<int64_t, const TrialRecord*> by_id;
  for (const TrialRecord& t : d->trials) by_id[t.id] = &t;
  CurveTable table;
  long long train_samples = 0;
  std::map<std::string, int> epochs_by_class;
  std::map<std::string, std::string> class_of;
  for (const WorkerRecord& w : *workers) class_of[w.id] = DeviceClassOf(w.device);
  for (const CurvePoint& p : d->points) {
    auto t = by_id.find(p.trial_id);
    if (t == by_id.end()) continue;
    table.AddEpoch(t->second->config, static_cast<uint64_t>(t->second->number),
                   {p.val_accuracy, p.compute_s + p.comm_s});
    if (p.epoch == 1 && p.samples_seen > 0) train_samples = p.samples_seen;
    ++epochs_by_class[class_of.count(t->second->worker) ? class_of[t->second->worker] : ""];
  }
  if (table.runs().empty()) {
    return Status::FailedPrecondition("job " + std::to_string(job_id) +
                                      " has no measured epochs to predict from yet");
  }
  PlanInput input;
  input.curves = &table;
  input.target_accuracy = d->spec.target_accuracy;
  input.workload = topology.workload;
  if (input.workload.train_samples == 0) input.workload.train_samples = train_samples;
  // The class that trained most of the epochs: its measured epochs give its step times.
  int most = 0;
  for (const auto& [name, epochs] : epochs_by_class) {
    if (epochs > most) {
      most = epochs;
      input.curves_class = name;
    }
  }
  for (const DeviceClassProfile& c : GroupByClass(*workers, *probes)) {
    for (const ClassProbe& p : c.probes) {
      if (p.model != d->spec.model) continue;
      for (const ClassProbe::Batch& b : p.batches) {
        if (b.fits && b.step_ms > 0) {
          input.profile.push_back({c.name, 1, 1, b.batch_size, b.step_ms / 1000.0, 0.0});
          // The same step with Adam's update, where the class measured it.
          const double adam_ms = b.step_ms - b.optimizer_ms + b.adam_optimizer_ms;
          if (b.adam_optimizer_ms > 0 && adam_ms > 0) {
            input.profile.push_back(
                {c.name, 1, 1, b.batch_size, adam_ms / 1000.0, 0.0, Optimizer::kAdam});
          }
        }
        // Batches ascend: the first that does not fit bounds the class's memory, and the
        // first that does not fit with Adam's state bounds Adam's.
        if (!b.fits && input.no_fit_batch.count(c.name) == 0) {
          input.no_fit_batch[c.name] = b.batch_size;
        }
        if (b.adam_does_not_fit && input.adam_no_fit_batch.count(c.name) == 0) {
          input.adam_no_fit_batch[c.name] = b.batch_size;
        }
      }
    }
  }
  input.measured_tta = MeasuredTtaByClass(d->trials, d->points, class_of, d->spec.target_accuracy);
  input.targets = topology.targets;
  // Where the data's site and a target's site were joined by a link test, the data moves
  // over that link; else, where both have workers whose links to the controller were
  // measured, over the path through the controller; else over the declared link.
  std::map<std::string, WorkerLink> links;
  std::vector<DirectLink> direct;
  {
    std::lock_guard<std::mutex> lock(links_mutex_);
    links = links_;
    direct = direct_links_;
  }
  const TopologyView view = BuildTopologyView(*workers, links, direct, &topology);
  for (Target& target : input.targets) {
    // A data-parallel target's link between nodes, and a federated one's edge -> cloud
    // link, named by their sites: the link test's where one ran between those sites.
    ApplyLinkTests(direct, &target);
    if (!(target.data_bytes > 0)) continue;
    for (const LinkView& l : view.links) {
      const bool joins = (l.a == topology.data_site && l.b == target.site) ||
                         (l.b == topology.data_site && l.a == target.site);
      if (!joins || (!l.measured && !l.direct)) continue;
      target.data_link = l.direct ? l.direct->link : *l.measured;
      // As in ApplyLinkTests: a measured latency under the declared one is the kernel
      // emulating none, not a faster link.
      if (l.declared) {
        target.data_link.latency_s = std::max(target.data_link.latency_s, l.declared->latency_s);
      }
      char how[160];
      std::snprintf(how, sizeof(how), "%s (%.3g Mbit/s",
                    l.direct ? "measured by a direct transfer between the sites"
                             : "measured through the controller",
                    target.data_link.bandwidth_bytes_s * 8e-6);
      std::string declared = "; none declared)";
      if (l.declared) {
        char d[64];
        std::snprintf(d, sizeof(d), "; %.3g declared)", l.declared->bandwidth_bytes_s * 8e-6);
        declared = d;
      }
      target.data_link_measured = how + declared;
    }
  }
  return Plan(input);
}

StatusOr<std::vector<DeviceClassProfile>> ControllerService::Devices() {
  StatusOr<std::vector<WorkerRecord>> workers = journal_->ListWorkers();
  if (!workers.ok()) return workers.status();
  StatusOr<std::vector<DeviceProbe>> probes = journal_->ListDeviceProbes();
  if (!probes.ok()) return probes.status();
  return GroupByClass(*workers, *probes);
}

Status ControllerService::WorkerConnected(const WorkerRecord& worker) {
  return dispatcher_.WorkerConnected(worker);
}

Status ControllerService::WorkerHeartbeat(const std::string& worker_id) {
  return dispatcher_.WorkerHeartbeat(worker_id);
}

void ControllerService::WorkerDisconnected(const std::string& worker_id) {
  dispatcher_.WorkerDisconnected(worker_id);
  std::lock_guard<std::mutex> lock(links_mutex_);
  links_.erase(worker_id);
}

StatusOr<EpochVerdict> ControllerService::OnEpoch(const std::string& worker_id, int64_t trial_id,
                                                  int attempt, const CurvePoint& point) {
  return dispatcher_.OnEpoch(worker_id, trial_id, attempt, point);
}

Status ControllerService::OnSegmentEnded(const std::string& worker_id,
                                         const SegmentResult& result) {
  return dispatcher_.OnSegmentEnded(worker_id, result);
}

Status ControllerService::OnProbeResult(const std::string& worker_id, const std::string& key,
                                        const StatusOr<DeviceProbe>& probe) {
  return dispatcher_.OnProbeResult(worker_id, key, probe);
}

Status ControllerService::OnCheckpointChunk(const std::string& worker_id,
                                            const CheckpointChunk& chunk) {
  return dispatcher_.OnCheckpointChunk(worker_id, chunk);
}

}  // namespace topotune
