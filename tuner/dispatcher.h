#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tuner/device_classes.h"
#include "tuner/job_engine.h"
#include "tuner/topology_view.h"

namespace topotune {

// How the dispatcher talks to workers. Implementations must not block and must not call
// back into the Dispatcher from these methods (api/worker_gateway.cc queues the frames).
class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  // Sends a segment to a worker of its placement; when `checkpoint_file` is set, that file
  // first, as the checkpoint the segment resumes from.
  virtual void SendSegment(const std::string& worker_id, const SegmentSpec& segment,
                           const std::string& checkpoint_file) = 0;
  virtual void SendStop(const std::string& worker_id, int64_t trial_id,
                        const std::string& reason) = 0;
  // Asks a worker to probe `model` on the dataset's input at these batch sizes; it answers
  // through Dispatcher::OnProbeResult with the same key.
  virtual void SendProbe(const std::string& worker_id, const std::string& key,
                         const std::string& model, const DatasetSpec& dataset,
                         const std::vector<int>& batch_sizes) = 0;
};

// The key under which a worker's probe of a job's model and data is kept.
std::string ProbeKey(const JobSpec& spec);

// Matches free workers with the trials of active jobs (oldest job first) and routes what
// workers report to the job that owns the trial. Thread-safe: every public method takes
// mutex_, so the REST threads and the gateway thread may call it at once.
class Dispatcher {
 public:
  // `journal`, `channel` and `checkpoints` must outlive the dispatcher; `clock` returns
  // seconds since the epoch. Without a checkpoint store (null), a paused trial resumes only
  // on the worker that wrote its checkpoint.
  Dispatcher(Journal* journal, WorkerChannel* channel, std::function<double()> clock,
             CheckpointStore* checkpoints = nullptr);
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts running a job that is already stored.
  Status AddJob(const JobRecord& job, const JobSpec& spec);
  // Rebuilds the engine of a stored, unfinished job from the journal (after a restart,
  // JobEngine::Restore) and runs it; its running trials go back to pending. The workers
  // that hold its checkpoints count as connected for kReconnectGraceS, so the job waits
  // for them to reconnect before it gives up on their trials. The restore's error if it
  // cannot be rebuilt; FailedPrecondition if the job is active here already.
  Status RestoreJob(const JobRecord& job, const JobSpec& spec);
  // NotFound if the job is not active here.
  Status CancelJob(int64_t job_id);
  // The link tests between sites so far (the latest per pair of sites). A job whose
  // reference target spans sites counts its seconds over those known at its first
  // placement (JobEngine::CountedReference).
  void SetLinkTests(std::vector<DirectLink> tests);
  bool IsActive(int64_t job_id) const;

  // A worker registered. FailedPrecondition if a worker of that id is connected already.
  Status WorkerConnected(const WorkerRecord& worker);
  Status WorkerHeartbeat(const std::string& worker_id);
  void WorkerDisconnected(const std::string& worker_id);

  // A worker's epoch report of (trial_id, attempt); the verdict says whether it should stop
  // the trial. A report for a segment that is not the worker's current one is not stored
  // and is answered with stop.
  StatusOr<EpochVerdict> OnEpoch(const std::string& worker_id, int64_t trial_id, int attempt,
                                 const CurvePoint& point);
  // A worker ended its segment. A result for a segment that is not its current one is
  // ignored.
  Status OnSegmentEnded(const std::string& worker_id, const SegmentResult& result);
  // A chunk of the checkpoint that a worker's current segment wrote, uploaded before the
  // segment's result. InvalidArgument if it is not of that segment (trial, attempt, stem,
  // an epoch past the segment's start), is out of order, too large or corrupt; the upload is
  // then dropped. FailedPrecondition when there is no checkpoint store.
  Status OnCheckpointChunk(const std::string& worker_id, const CheckpointChunk& chunk);
  // A worker's probe answer: the probe is stored and the worker is given batch sizes up to
  // the largest that fits; an error means it gets none of that job's trials.
  Status OnProbeResult(const std::string& worker_id, const std::string& key,
                       const StatusOr<DeviceProbe>& probe);

  // Deletes every checkpoint in the store that no active job may resume from. Call it once
  // every stored job is restored (ControllerService::ResumeJobs does); from then on the
  // dispatcher collects after each segment and each job that ends. Before that first call
  // it deletes nothing, so restoring one job cannot delete another's checkpoints.
  void CollectCheckpoints();

  // The connected workers, as last seen.
  std::vector<WorkerRecord> Workers() const;

  // How long a restored job waits for a worker that holds its checkpoints (a worker agent
  // retries for 60 s by default).
  static constexpr double kReconnectGraceS = 60.0;
  // How long a job that counts seconds on a reference class waits, from its start, for a
  // worker of that class to probe its input while none is connected. Until then workers of
  // other classes get none of its trials; after it, their seconds count as measured until a
  // probe of the reference class arrives. A worker agent retries its connection for 60 s.
  static constexpr double kReferenceProbeGraceS = 60.0;

 private:
  struct Connected {
    WorkerRecord record;
    std::optional<int64_t> trial_id;  // the trial it runs, if busy
    int attempt = 0;                  // of that trial
    int64_t job_id = 0;
    int batch_size = 0;  // of that trial
    Optimizer optimizer = Optimizer::kSgd;
    std::string checkpoint;  // that segment's checkpoint stem
    int start_epoch = 0;     // and its epochs
    int end_epoch = 0;
    std::string probing;  // the probe key it is measuring, if any
    // probe key -> optimizer -> the largest batch size that fits with it
    std::map<std::string, std::map<Optimizer, int>> max_batch;
    std::map<std::string, std::string> probe_input;  // probe key -> the input it measured
  };
  // The placement of worker `w` for a trial of `engine` with batches up to `max_batch`;
  // with the job's time scales when it counts seconds on a reference class (from the
  // stored probes, read into `classes` once per Pump). nullopt while the reference class
  // has no probe of the job's input and a connected worker of it is yet to probe, or none
  // is connected and the job started less than kReferenceProbeGraceS ago: the other
  // classes wait for it rather than count seconds unscaled.
  std::optional<Placement> PlacementOf(
      const std::string& worker_id, const Connected& w, JobEngine& engine, int max_batch,
      std::optional<std::vector<DeviceClassProfile>>* classes);   // requires mutex_
  void FailJobsNoWorkerCanHold();                                 // requires mutex_
  void ExpireAwaitedWorkers();                                    // requires mutex_
  JobEngine* EngineOfTrial(int64_t trial_id);                     // requires mutex_
  void Pump();                                                    // requires mutex_
  void Retire();                                                  // requires mutex_
  void CollectCheckpointsLocked();                                // requires mutex_
  Status SetWorkerState(Connected& w, const std::string& state);  // requires mutex_

  Journal* journal_;
  WorkerChannel* channel_;
  std::function<double()> clock_;
  CheckpointStore* checkpoints_;  // may be null
  bool collecting_ = false;       // GUARDED_BY(mutex_): CollectCheckpoints was called
  mutable std::mutex mutex_;
  std::map<int64_t, std::unique_ptr<JobEngine>> jobs_;  // GUARDED_BY(mutex_), active jobs
  std::map<std::string, Connected> workers_;            // GUARDED_BY(mutex_)
  std::vector<DirectLink> link_tests_;                  // GUARDED_BY(mutex_)
  // Checkpoint holders of restored jobs that have not reconnected yet, and until when
  // (clock_ seconds) they are waited for. GUARDED_BY(mutex_)
  std::map<std::string, double> awaited_;
  // Jobs with a reference class that may still wait for its probe (kReferenceProbeGraceS):
  // until when (clock_ seconds), and whether the wait was logged. GUARDED_BY(mutex_)
  struct ReferenceWait {
    double until = 0;
    bool logged = false;
  };
  std::map<int64_t, ReferenceWait> reference_waits_;
};

}  // namespace topotune
