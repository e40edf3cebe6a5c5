#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuner/types.h"

namespace topotune {

// What a full grid over the job's space would have cost: every batch size x optimizer x
// grid_lr_points learning rates, each trained for the top rung's epochs, at the epoch
// times measured in this job (log-log interpolated for batch sizes no trial used). With
// rungs in seconds, each is trained for the top rung's seconds instead, plus evaluation
// and overhead in this job's proportion of wall to training seconds.
struct GridEstimate {
  int points = 0;
  int epochs_per_point = 0;        ///< rungs in epochs; else 0
  double seconds_per_point = 0.0;  ///< rungs in seconds: the top rung's training seconds
  double cost_s = 0.0;
  int batch_sizes_measured = 0;  ///< of the space's batch sizes, how many had a trial
};

// The best-config report of a job, computed from stored records alone.
struct Report {
  JobRecord job;
  std::string algorithm;
  std::string sampler;      ///< the forecast's sampler ("tpe", "gp"); "" for other algorithms
  std::string auto_reason;  ///< why "auto" chose it, if it did
  // The class whose seconds trials' train_s and tta_s count (JobSpec::reference_class);
  // "" = as measured. A point's measured seconds are its compute_s + comm_s.
  std::string reference_class;
  // The target they count on (ReferenceTarget): one device of reference_class, or the
  // topology's first target as a whole (a data-parallel one's step with its
  // synchronisation, over the links the job fixed: JobRecord::counted_links).
  Target reference_target;
  double target_accuracy = 0.0;
  bool target_reached = false;
  // Least TTA, else highest accuracy; a trial confirmed on the reference class counts by
  // its confirmation (the measured one), not by its own counted seconds. With
  // JobSpec::incumbent_seeds > 1, the settled configuration with the least mean TTA over
  // its seeds (tuner/seed_groups.h): its first trial, tta_s that mean; while none is
  // settled, as above among the configurations whose runs so far all reached the target.
  std::optional<TrialRecord> best;
  std::vector<double> best_seed_tta_s;  ///< that configuration's TTA on each of its seeds
  std::vector<CurvePoint> best_curve;
  int trials_total = 0;
  std::map<std::string, int> trials_by_state;  ///< state name -> count
  int epochs_trained = 0;
  double compute_s = 0.0;  ///< wall seconds of every epoch of every trial, evaluation included
  double train_s = 0.0;    ///< training seconds (compute + communication) of every epoch
  // Training seconds of epochs cut by a lost worker or a restart and trained again, counted
  // as the bound counts them (on the reference class where the job has one, unlike the two
  // above): TrialRecord::cut_s, summed. Spent, but not in the epochs above.
  double cut_s = 0.0;
  GridEstimate grid;
  double grid_ratio = 0.0;           ///< compute_s / grid.cost_s; 0 when the grid cost is unknown
  std::vector<TrialRecord> ranking;  ///< every trial, best first
  // Per trial id, the classes its epochs ran on, in order of first use (points stored before
  // migration 15 name none).
  std::map<int64_t, std::vector<std::string>> classes_of;
  // Per trial id, its epochs that count as measured although the job counts seconds on
  // another class (CountedAsMeasured), and their total over the job.
  std::map<int64_t, int> unscaled_epochs;
  int unscaled_epochs_total = 0;
};

// Whether `p`'s seconds count as measured where the job counts seconds on `reference`
// (class `reference_class`): it ran on another class, or the target needs its
// synchronisation added, and no probe gave it a scale then (Dispatcher::PlacementOf: the
// reference class's grace period had ended, or a class had not probed the job's input).
bool CountedAsMeasured(const CurvePoint& p, const std::string& reference_class,
                       const Target& reference);

// Trials that reached the target rank first, by TTA, then the rest by best accuracy.
bool TrialRanksAbove(const TrialRecord& a, const TrialRecord& b);

Report BuildReport(const JobRecord& job, const JobSpec& spec,
                   const std::vector<TrialRecord>& trials, const std::vector<CurvePoint>& points);

// Progress of a job for status displays.
struct JobProgress {
  double fraction = 0.0;  ///< 0..1; 1 only once the job is finished
  int trials_total = 0;
  int trials_sampled = 0;
  std::map<std::string, int> trials_by_state;
  std::optional<TrialRecord> best;
};
JobProgress SummariseProgress(const JobRecord& job, const JobSpec& spec,
                              const std::vector<TrialRecord>& trials);

}  // namespace topotune
