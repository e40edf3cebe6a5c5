#include "tuner/dispatcher.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace topotune {
namespace {

// For failures the dispatcher cannot hand back to anyone: the journal's worker records are
// what listings show, while dispatching runs on the in-memory state, which stays correct.
void LogIfError(const Status& status, const std::string& what) {
  if (!status.ok()) {
    std::fprintf(stderr, "topotuned: %s: %s\n", what.c_str(), status.ToString().c_str());
  }
}

// Fails a job and says why on stderr. The engine is failed in memory even when the journal
// cannot store that, so Retire() drops it; that second failure is only logged.
void FailJob(JobEngine& engine, const std::string& why, double now) {
  std::fprintf(stderr, "topotuned: job %lld failed: %s\n", static_cast<long long>(engine.job_id()),
               why.c_str());
  LogIfError(engine.Fail(why, now),
             "job " + std::to_string(engine.job_id()) + ": could not persist its failure");
}

// The largest batch size of a worker's `limits` (optimizer -> the largest that fits with
// it) that fits with every optimizer `spec` searches: a job of both keeps to Adam's.
int LargestBatchFor(const std::map<Optimizer, int>& limits, const JobSpec& spec) {
  const std::vector<Optimizer> sgd = {Optimizer::kSgd};
  int largest = std::numeric_limits<int>::max();
  for (Optimizer o : spec.space.optimizers.empty() ? sgd : spec.space.optimizers) {
    auto limit = limits.find(o);
    largest = std::min(largest, limit == limits.end() ? 0 : limit->second);
  }
  return largest;
}

}  // namespace

std::string ProbeKey(const JobSpec& spec) {
  return spec.model + "|" + spec.dataset.format + "|" + spec.dataset.path;
}

Dispatcher::Dispatcher(Journal* journal, WorkerChannel* channel, std::function<double()> clock,
                       CheckpointStore* checkpoints)
    : journal_(journal), channel_(channel), clock_(std::move(clock)), checkpoints_(checkpoints) {}

Status Dispatcher::AddJob(const JobRecord& job, const JobSpec& spec) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto engine = std::make_unique<JobEngine>(job, spec, journal_, checkpoints_);
  for (const auto& [id, w] : workers_) {
    engine->SetWorkerOnline(id, true, DeviceClassOf(w.record.device));
  }
  jobs_[job.id] = std::move(engine);
  if (!spec.reference_class.empty()) {
    reference_waits_[job.id].until = clock_() + kReferenceProbeGraceS;
  }
  Pump();
  return Status::OK();
}

Status Dispatcher::RestoreJob(const JobRecord& job, const JobSpec& spec) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (jobs_.count(job.id)) {
    return Status::FailedPrecondition("job " + std::to_string(job.id) + " is already running");
  }
  StatusOr<std::unique_ptr<JobEngine>> engine =
      JobEngine::Restore(job, spec, journal_, checkpoints_);
  if (!engine.ok()) return engine.status();
  for (const auto& [id, w] : workers_) {
    (*engine)->SetWorkerOnline(id, true, DeviceClassOf(w.record.device));
  }
  for (const std::string& holder : (*engine)->CheckpointHolders()) {
    if (workers_.count(holder)) continue;
    (*engine)->SetWorkerOnline(holder, true);
    double& deadline = awaited_[holder];
    deadline = std::max(deadline, clock_() + kReconnectGraceS);
  }
  jobs_[job.id] = std::move(engine).value();
  if (!spec.reference_class.empty()) {
    reference_waits_[job.id].until = clock_() + kReferenceProbeGraceS;
  }
  Pump();
  return Status::OK();
}

void Dispatcher::ExpireAwaitedWorkers() {
  const double now = clock_();
  for (auto it = awaited_.begin(); it != awaited_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    std::fprintf(stderr, "topotuned: worker %s did not reconnect within %.0f s of the restart\n",
                 it->first.c_str(), kReconnectGraceS);
    for (auto& [id, engine] : jobs_) {
      Status lost = engine->OnWorkerLost(it->first, now);
      if (!lost.ok()) {
        FailJob(*engine,
                "could not persist the loss of worker " + it->first + ": " + lost.message(), now);
      }
    }
    it = awaited_.erase(it);
  }
  Retire();
}

Status Dispatcher::CancelJob(int64_t job_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return Status::NotFound("job " + std::to_string(job_id) + " is not running");
  }
  StatusOr<std::vector<std::pair<std::string, int64_t>>> running = it->second->Cancel(clock_());
  if (!running.ok()) return running.status();
  for (const auto& [worker_id, trial_id] : *running) {
    channel_->SendStop(worker_id, trial_id, "job cancelled");
  }
  Retire();
  return Status::OK();
}

bool Dispatcher::IsActive(int64_t job_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.count(job_id) > 0;
}

Status Dispatcher::SetWorkerState(Connected& w, const std::string& state) {
  w.record.state = state;
  w.record.last_heartbeat = clock_();
  return journal_->UpsertWorker(w.record);
}

Status Dispatcher::WorkerConnected(const WorkerRecord& worker) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (workers_.count(worker.id)) {
    return Status::FailedPrecondition("a worker named '" + worker.id + "' is already connected");
  }
  ExpireAwaitedWorkers();
  awaited_.erase(worker.id);
  Connected& w = workers_[worker.id];
  w.record = worker;
  w.record.connected_at = clock_();
  Status s = SetWorkerState(w, "idle");
  if (!s.ok()) {
    workers_.erase(worker.id);
    return s;
  }
  for (auto& [id, engine] : jobs_) {
    engine->SetWorkerOnline(worker.id, true, DeviceClassOf(worker.device));
  }
  Pump();
  return Status::OK();
}

Status Dispatcher::WorkerHeartbeat(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return Status::NotFound("worker " + worker_id);
  it->second.record.last_heartbeat = clock_();
  const bool waiting = !awaited_.empty() || !reference_waits_.empty();
  if (!awaited_.empty()) ExpireAwaitedWorkers();
  if (waiting) Pump();  // a wait may have ended
  return Status::OK();
}

void Dispatcher::WorkerDisconnected(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  // Best effort: the worker is gone either way, and the caller has no one to tell.
  LogIfError(SetWorkerState(it->second, "offline"),
             "could not store worker " + worker_id + " as offline");
  workers_.erase(it);
  if (checkpoints_ != nullptr) checkpoints_->AbortUpload(worker_id);
  for (auto& [id, engine] : jobs_) {
    Status lost = engine->OnWorkerLost(worker_id, clock_());
    if (!lost.ok()) {
      FailJob(*engine, "could not persist the loss of worker " + worker_id + ": " + lost.message(),
              clock_());
    }
  }
  Retire();
  Pump();
}

JobEngine* Dispatcher::EngineOfTrial(int64_t trial_id) {
  for (auto& [id, engine] : jobs_) {
    if (engine->HasTrial(trial_id)) return engine.get();
  }
  return nullptr;
}

StatusOr<EpochVerdict> Dispatcher::OnEpoch(const std::string& worker_id, int64_t trial_id,
                                           int attempt, const CurvePoint& point) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end() || w->second.trial_id != trial_id || w->second.attempt != attempt) {
    return EpochVerdict{true, "trial " + std::to_string(trial_id) + " attempt " +
                                  std::to_string(attempt) + " is not assigned to worker " +
                                  worker_id};
  }
  JobEngine* engine = EngineOfTrial(trial_id);
  if (engine == nullptr) return EpochVerdict{true, "its job is no longer running"};
  w->second.record.last_heartbeat = clock_();
  return engine->OnEpoch(trial_id, point);
}

Status Dispatcher::OnSegmentEnded(const std::string& worker_id, const SegmentResult& outcome) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return Status::NotFound("worker " + worker_id);
  const int64_t trial_id = outcome.trial_id;
  Status status = Status::OK();
  if (w->second.trial_id == trial_id && w->second.attempt == outcome.attempt) {
    w->second.trial_id.reset();
    status = SetWorkerState(w->second, "idle");
    if (JobEngine* engine = EngineOfTrial(trial_id)) {
      if (outcome.status == SegmentStatus::kInfeasible) {
        // The probe was optimistic: never send this worker a batch this large again with
        // this optimizer, nor with Adam, which needs more than SGD.
        for (auto& [optimizer, limit] : w->second.max_batch[ProbeKey(engine->spec())]) {
          if (optimizer == w->second.optimizer || optimizer == Optimizer::kAdam) {
            limit = std::min(limit, w->second.batch_size - 1);
          }
        }
      }
      Status ended = engine->OnSegmentEnded(outcome, clock_());
      if (status.ok()) status = ended;
    }
  }
  Retire();
  CollectCheckpointsLocked();
  Pump();
  return status;
}

Status Dispatcher::OnCheckpointChunk(const std::string& worker_id, const CheckpointChunk& chunk) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (checkpoints_ == nullptr) {
    return Status::FailedPrecondition("this controller keeps no checkpoints");
  }
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return Status::NotFound("worker " + worker_id);
  const Connected& c = w->second;
  if (c.trial_id != chunk.trial_id || c.attempt != chunk.attempt) {
    checkpoints_->AbortUpload(worker_id);
    return Status::InvalidArgument("checkpoint of trial " + std::to_string(chunk.trial_id) +
                                   " attempt " + std::to_string(chunk.attempt) +
                                   ", which is not the segment assigned to worker " + worker_id);
  }
  if (chunk.stem != c.checkpoint || chunk.epoch <= c.start_epoch || chunk.epoch > c.end_epoch) {
    checkpoints_->AbortUpload(worker_id);
    return Status::InvalidArgument("checkpoint " + CheckpointFileName(chunk.stem, chunk.epoch) +
                                   " is not one that segment (" + c.checkpoint + ", epochs " +
                                   std::to_string(c.start_epoch + 1) + ".." +
                                   std::to_string(c.end_epoch) + ") writes");
  }
  Status s = checkpoints_->Receive(worker_id, chunk);
  if (s.ok() && chunk.last()) {
    std::fprintf(stderr, "topotuned: stored checkpoint %s from worker %s (%lld bytes)\n",
                 CheckpointFileName(chunk.stem, chunk.epoch).c_str(), worker_id.c_str(),
                 static_cast<long long>(chunk.total_bytes));
  }
  return s;
}

Status Dispatcher::OnProbeResult(const std::string& worker_id, const std::string& key,
                                 const StatusOr<DeviceProbe>& probe) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return Status::NotFound("worker " + worker_id);
  if (w->second.probing != key) {
    return Status::InvalidArgument("probe_result for '" + key + "', which was not asked for");
  }
  w->second.probing.clear();
  Status status = Status::OK();
  if (probe.ok()) {
    DeviceProbe stored = *probe;
    stored.worker_id = worker_id;
    stored.measured_at = clock_();
    for (Optimizer o : {Optimizer::kSgd, Optimizer::kAdam}) {
      w->second.max_batch[key][o] = stored.MaxBatchSize({o});
    }
    w->second.probe_input[key] = stored.input;
    status = journal_->UpsertDeviceProbe(stored);
  } else {
    w->second.max_batch[key] = {{Optimizer::kSgd, 0}, {Optimizer::kAdam, 0}};
    std::fprintf(stderr, "topotuned: worker %s could not probe %s: %s\n", worker_id.c_str(),
                 key.c_str(), probe.status().message().c_str());
  }
  Status idle = SetWorkerState(w->second, "idle");
  if (status.ok()) status = idle;
  FailJobsNoWorkerCanHold();
  Pump();
  return status;
}

void Dispatcher::FailJobsNoWorkerCanHold() {
  for (auto& [job_id, engine] : jobs_) {
    const JobSpec& spec = engine->spec();
    const std::string key = ProbeKey(spec);
    const int smallest = spec.space.batch_sizes.empty() ? 1 : spec.space.batch_sizes.front();
    bool any_can = workers_.empty();
    std::string limits;
    for (const auto& [id, w] : workers_) {
      auto limit = w.max_batch.find(key);
      const int largest = limit == w.max_batch.end() ? 0 : LargestBatchFor(limit->second, spec);
      if (limit == w.max_batch.end() || largest >= smallest) {
        any_can = true;
        break;
      }
      limits += (limits.empty() ? "" : ", ") + id + " fits " + std::to_string(largest);
    }
    if (!any_can) {
      FailJob(*engine,
              "no connected worker can hold batch size " + std::to_string(smallest) + " of " +
                  spec.model + " (" + limits + ")",
              clock_());
    }
  }
  Retire();
}

std::vector<WorkerRecord> Dispatcher::Workers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w.record);
  return out;
}

void Dispatcher::Retire() {
  bool retired = false;
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (IsTerminal(it->second->state())) {
      reference_waits_.erase(it->first);
      it = jobs_.erase(it);
      retired = true;
    } else {
      ++it;
    }
  }
  if (retired) CollectCheckpointsLocked();
}

void Dispatcher::CollectCheckpoints() {
  std::lock_guard<std::mutex> lock(mutex_);
  collecting_ = true;
  CollectCheckpointsLocked();
}

void Dispatcher::CollectCheckpointsLocked() {
  if (checkpoints_ == nullptr || !collecting_) return;
  std::map<std::string, int> keep;
  for (const auto& [id, engine] : jobs_) keep.merge(engine->CheckpointsToKeep());
  checkpoints_->Collect(keep);
}

void Dispatcher::SetLinkTests(std::vector<DirectLink> tests) {
  std::lock_guard<std::mutex> lock(mutex_);
  link_tests_ = std::move(tests);
}

std::optional<Placement> Dispatcher::PlacementOf(
    const std::string& worker_id, const Connected& w, JobEngine& engine, int max_batch,
    std::optional<std::vector<DeviceClassProfile>>* classes) {
  Placement placement;
  placement.workers = {worker_id};
  placement.max_batch_size = max_batch;
  placement.device_class = DeviceClassOf(w.record.device);
  const JobSpec& spec = engine.spec();
  const std::string& device_class = placement.device_class;
  Target reference = ReferenceTarget(spec);
  if (spec.reference_class.empty() ||
      (spec.reference_class == device_class && !OnSeveralDevices(reference))) {
    return placement;
  }
  if (OnSeveralDevices(reference)) {
    ApplyLinkTests(link_tests_, &reference);
    StatusOr<Target> counted = engine.CountedReference(reference);
    if (!counted.ok()) {
      std::fprintf(stderr,
                   "topotuned: job %lld: could not store the links its seconds count over "
                   "(%s); counting over %s this time\n",
                   static_cast<long long>(engine.job_id()), counted.status().ToString().c_str(),
                   reference.links_measured.empty() ? "the declared links" : "the measured links");
    } else {
      reference = *counted;
    }
  }
  if (!classes->has_value()) {
    StatusOr<std::vector<WorkerRecord>> workers = journal_->ListWorkers();
    StatusOr<std::vector<DeviceProbe>> probes = journal_->ListDeviceProbes();
    if (!workers.ok() || !probes.ok()) {
      std::fprintf(stderr,
                   "topotuned: could not read the device probes; seconds count as "
                   "measured this time\n");
      classes->emplace();
    } else {
      *classes = GroupByClass(*workers, *probes);
    }
  }
  const std::string key = ProbeKey(spec);
  auto input = w.probe_input.find(key);
  if (input == w.probe_input.end()) return placement;
  for (Optimizer optimizer : spec.space.optimizers) {
    std::map<int, double> scales =
        TargetTimeScales(**classes, reference, spec.workload, device_class, spec.model,
                         input->second, spec.space.batch_sizes, optimizer);
    if (!scales.empty()) placement.time_scale[optimizer] = std::move(scales);
  }
  auto wait = reference_waits_.find(engine.job_id());
  if (!placement.time_scale.empty()) {
    if (wait != reference_waits_.end()) reference_waits_.erase(wait);
    return placement;
  }
  for (const auto& [id, other] : workers_) {
    if (DeviceClassOf(other.record.device) == spec.reference_class &&
        other.max_batch.count(key) == 0) {
      return std::nullopt;
    }
  }
  if (wait == reference_waits_.end()) return placement;
  const long long job_id = static_cast<long long>(engine.job_id());
  if (clock_() < wait->second.until) {
    if (!wait->second.logged) {
      std::fprintf(stderr,
                   "topotuned: job %lld waits up to %.0f s for a worker of class %s to probe "
                   "%s before workers of other classes take its trials\n",
                   job_id, kReferenceProbeGraceS, spec.reference_class.c_str(), spec.model.c_str());
      wait->second.logged = true;
    }
    return std::nullopt;
  }
  std::fprintf(stderr,
               "topotuned: job %lld: no worker of class %s probed %s within %.0f s of the job's "
               "start; seconds on other classes count as measured until one does\n",
               job_id, spec.reference_class.c_str(), spec.model.c_str(), kReferenceProbeGraceS);
  reference_waits_.erase(wait);
  return placement;
}

void Dispatcher::Pump() {
  std::optional<std::vector<DeviceClassProfile>> classes;  // read when first needed
  for (auto& [worker_id, w] : workers_) {
    if (w.trial_id || !w.probing.empty()) continue;
    for (auto& [job_id, engine] : jobs_) {
      const std::string key = ProbeKey(engine->spec());
      auto limit = w.max_batch.find(key);
      if (limit == w.max_batch.end()) {
        // First the device's limits for this model and input, then trials.
        w.probing = key;
        LogIfError(SetWorkerState(w, "probing"),
                   "could not store worker " + worker_id + " as probing");
        channel_->SendProbe(worker_id, key, engine->spec().model, engine->spec().dataset,
                            engine->spec().space.batch_sizes);
        break;
      }
      const std::optional<Placement> placement = PlacementOf(
          worker_id, w, *engine, LargestBatchFor(limit->second, engine->spec()), &classes);
      if (!placement) continue;
      StatusOr<std::optional<Assignment>> next = engine->NextAssignment(*placement, clock_());
      if (!next.ok()) {
        FailJob(*engine, "could not persist: " + next.status().message(), clock_());
        continue;
      }
      if (!next->has_value()) continue;
      const Assignment& a = **next;
      w.trial_id = a.trial.id;
      w.attempt = a.trial.attempt;
      w.job_id = job_id;
      w.batch_size = a.trial.config.batch_size;
      w.optimizer = a.trial.config.optimizer;
      w.checkpoint = a.checkpoint;
      w.start_epoch = a.start_epoch;
      w.end_epoch = a.trial.target_epochs;
      LogIfError(SetWorkerState(w, "busy"), "could not store worker " + worker_id + " as busy");
      if (!a.checkpoint_source.empty()) {
        std::fprintf(stderr, "topotuned: sending checkpoint %s to worker %s for trial %lld\n",
                     CheckpointFileName(a.checkpoint, a.start_epoch).c_str(), worker_id.c_str(),
                     static_cast<long long>(a.trial.id));
      }
      channel_->SendSegment(worker_id, MakeSegmentSpec(a, engine->spec()), a.checkpoint_source);
      break;
    }
  }
  Retire();
}

}  // namespace topotune
