#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tuner/cost_model.h"
#include "tuner/device_classes.h"
#include "tuner/dispatcher.h"
#include "tuner/journal.h"
#include "tuner/planner.h"
#include "tuner/report.h"
#include "tuner/segment.h"
#include "tuner/status.h"
#include "tuner/topology_view.h"
#include "tuner/types.h"

namespace topotune {

// A stored job with its spec, its trials and (when asked for) their learning curves.
struct JobDetail {
  JobRecord job;
  JobSpec spec;
  std::vector<TrialRecord> trials;  ///< by number
  std::vector<CurvePoint> points;   ///< by (trial id, epoch); empty unless asked for
};

// A worker the controller knows, with what it measured.
struct WorkerDetail {
  WorkerRecord record;
  std::vector<DeviceProbe> probes;
  std::optional<WorkerLink> link;  ///< measured over its current connection
};

// The controller's application logic: every use case the REST API and the worker gateway
// offer, over the journal and the dispatcher. The adapters parse, authenticate and render;
// they decide nothing. Thread-safe: the dispatcher serialises what changes state, and
// reads go to the journal.
class ControllerService {
 public:
  // Turns a stored spec_json back into a spec (api/job_spec_json.h's ParseJobSpec).
  using SpecDecoder = std::function<StatusOr<JobSpec>(const std::string& spec_json)>;

  // `journal`, `channel` and `checkpoints` (null: checkpoints stay on their workers) must
  // outlive the service; `clock` returns seconds since epoch.
  ControllerService(Journal* journal, WorkerChannel* channel, SpecDecoder decode_spec,
                    std::function<double()> clock, CheckpointStore* checkpoints = nullptr);
  ControllerService(const ControllerService&) = delete;
  ControllerService& operator=(const ControllerService&) = delete;

  // Call once at start, before workers connect: rebuilds the engine of every queued and
  // running job from the journal and resumes it. A job that cannot be rebuilt is marked
  // failed with the reason. Then the checkpoints no job may resume from are deleted.
  // Returns how many jobs resumed.
  StatusOr<int> ResumeJobs();

  // Stores a validated job (spec_json is its normalised JSON form) and starts it.
  StatusOr<JobRecord> Submit(const JobSpec& spec, const std::string& spec_json);
  // Stops a queued or running job; FailedPrecondition if it already ended.
  StatusOr<JobRecord> Cancel(int64_t job_id);
  StatusOr<std::vector<JobRecord>> ListJobs();
  // NotFound if there is no such job.
  StatusOr<JobDetail> GetJob(int64_t job_id, bool with_points);
  StatusOr<Report> ReportOf(int64_t job_id);
  // What-if: the job's configurations ranked by predicted time-to-accuracy on each target
  // of `topology` (tuner/planner.h), from the job's measured curves and the device
  // classes' probes of its model. NotFound if there is no such job.
  StatusOr<std::vector<TargetPlan>> Predict(int64_t job_id, const Topology& topology);
  StatusOr<std::vector<WorkerDetail>> Workers();
  // The device classes of every worker known, with their pooled probes.
  StatusOr<std::vector<DeviceClassProfile>> Devices();
  // The sites of the connected workers with their measured links to the controller, beside
  // `declared` (a job's topology) when given (tuner/topology_view.h).
  StatusOr<TopologyView> TopologyOf(const Topology* declared);

  // Worker events, from the gateway (see Dispatcher for their contracts).
  Status WorkerConnected(const WorkerRecord& worker);
  Status WorkerHeartbeat(const std::string& worker_id);
  void WorkerDisconnected(const std::string& worker_id);
  // The gateway measured the link to a connected worker (kept until it disconnects).
  void WorkerLinkMeasured(const std::string& worker_id, const WorkerLink& link);
  // The gateway's link test between two sites (the latest per pair is kept, for the latest
  // kMaxDirectLinks pairs).
  void DirectLinkMeasured(const DirectLink& link);
  static constexpr size_t kMaxDirectLinks = 256;
  StatusOr<EpochVerdict> OnEpoch(const std::string& worker_id, int64_t trial_id, int attempt,
                                 const CurvePoint& point);
  Status OnSegmentEnded(const std::string& worker_id, const SegmentResult& result);
  Status OnProbeResult(const std::string& worker_id, const std::string& key,
                       const StatusOr<DeviceProbe>& probe);
  Status OnCheckpointChunk(const std::string& worker_id, const CheckpointChunk& chunk);

 private:
  Journal* journal_;
  SpecDecoder decode_spec_;
  std::function<double()> clock_;
  Dispatcher dispatcher_;
  std::mutex links_mutex_;
  std::map<std::string, WorkerLink> links_;  ///< by worker id; guarded by links_mutex_
  std::vector<DirectLink> direct_links_;     ///< one per pair of sites; guarded too
};

}  // namespace topotune
