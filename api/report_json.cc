#include "api/report_json.h"

#include <cmath>

#include "api/plan_json.h"
#include "api/protocol.h"

namespace topotune {

using nlohmann::json;

json ToJson(const TrialRecord& t) {
  json j = {{"id", t.id},
            {"number", t.number},
            {"config",
             {{"batch_size", t.config.batch_size},
              {"learning_rate", t.config.learning_rate},
              {"optimizer", OptimizerName(t.config.optimizer)}}},
            {"seed", t.seed},
            {"state", TrialStateName(t.state)},
            {"rung", t.rung},
            {"epochs_done", t.epochs_done},
            {"target_epochs", t.target_epochs},
            {"worker", t.worker},
            {"reason", t.reason},
            {"reached_target", t.reached_target},
            {"train_s", t.train_s},
            {"cut_s", t.cut_s},
            {"best_accuracy", t.best_accuracy}};
  j["tta_s"] = t.reached_target ? json(t.tta_s) : json(nullptr);
  // A confirmation (same seed, on the job's reference class) or a rerun on another seed
  // (tuner/seed_groups.h): the number of the trial whose configuration it measures (null
  // for the sampler's trials). A rerun that repeated an earlier run's curve names that run.
  j["confirms"] = t.confirms >= 0 ? json(t.confirms) : json(nullptr);
  j["repeats"] = t.repeats >= 0 ? json(t.repeats) : json(nullptr);
  if (t.forecast) {
    // Seconds the forecast never reaches within the epoch limit are null.
    const auto seconds = [](double s) { return std::isfinite(s) ? json(s) : json(nullptr); };
    j["forecast"] = {{"predicted_tta_s", seconds(t.forecast->tta_s)},
                     {"interval80_s", {seconds(t.forecast->lo_s), seconds(t.forecast->hi_s)}},
                     {"p_win", t.forecast->p_win},
                     {"p_reach", t.forecast->p_reach}};
  } else {
    j["forecast"] = nullptr;
  }
  return j;
}

json ToJson(const JobRecord& job) {
  return {{"id", job.id},
          {"name", job.name},
          {"state", JobStateName(job.state)},
          {"message", job.message},
          {"created_at", job.created_at},
          {"finished_at", job.finished_at > 0 ? json(job.finished_at) : json(nullptr)}};
}

json ToJson(const WorkerRecord& w) {
  return {{"id", w.id},
          {"device", ToJson(w.device)},
          {"state", w.state},
          {"connected_at", w.connected_at},
          {"last_heartbeat", w.last_heartbeat}};
}

json ToJson(const TokenRecord& token) {
  return {{"id", token.id},
          {"name", token.name},
          {"role", RoleName(token.role)},
          {"external", token.external},
          {"created_at", token.created_at},
          {"revoked_at", token.revoked_at > 0 ? json(token.revoked_at) : json(nullptr)},
          {"last_used_at", token.last_used_at > 0 ? json(token.last_used_at) : json(nullptr)}};
}

json ToJson(const JobProgress& p) {
  return {{"fraction", p.fraction},
          {"trials_total", p.trials_total},
          {"trials_sampled", p.trials_sampled},
          {"trials_by_state", p.trials_by_state},
          {"best", p.best ? ToJson(*p.best) : json(nullptr)}};
}

json TrialWithCurve(const TrialRecord& t, const std::vector<CurvePoint>& points) {
  json j = ToJson(t);
  json curve = json::array();
  for (const auto& p : points) {
    if (p.trial_id != t.id) continue;
    json point = ToJson(p);
    point["device_class"] = p.device_class;
    curve.push_back(std::move(point));
  }
  j["curve"] = std::move(curve);
  return j;
}

json ToJson(const Report& r) {
  json ranking = json::array();
  // A trial with the classes its epochs ran on and those that count as measured.
  const auto with_classes = [&r](const TrialRecord& t) {
    json trial = ToJson(t);
    auto classes = r.classes_of.find(t.id);
    trial["device_classes"] = classes != r.classes_of.end() ? json(classes->second) : json::array();
    auto unscaled = r.unscaled_epochs.find(t.id);
    trial["unscaled_epochs"] = unscaled != r.unscaled_epochs.end() ? unscaled->second : 0;
    return trial;
  };
  for (const auto& t : r.ranking) ranking.push_back(with_classes(t));
  json curve = json::array();
  for (const auto& p : r.best_curve) {
    json point = ToJson(p);
    point["reference_s"] = p.reference_s;
    point["device_class"] = p.device_class;
    curve.push_back(std::move(point));
  }
  return {{"job", ToJson(r.job)},
          {"algorithm", r.algorithm},
          {"sampler", r.sampler.empty() ? json(nullptr) : json(r.sampler)},
          {"auto_reason", r.auto_reason},
          {"reference_class", r.reference_class},
          {"reference_target", r.reference_class.empty()
                                   ? json(nullptr)
                                   : json{{"name", r.reference_target.name},
                                          {"kind", TargetKindName(r.reference_target.kind)},
                                          {"description", DescribeTarget(r.reference_target)},
                                          {"links_measured", r.reference_target.links_measured}}},
          {"target_accuracy", r.target_accuracy},
          {"target_reached", r.target_reached},
          {"best", r.best ? with_classes(*r.best) : json(nullptr)},
          {"best_seed_tta_s", r.best_seed_tta_s},
          {"best_curve", curve},
          {"trials_total", r.trials_total},
          {"trials_by_state", r.trials_by_state},
          {"epochs_trained", r.epochs_trained},
          {"compute_s", r.compute_s},
          {"train_s", r.train_s},
          {"cut_s", r.cut_s},
          {"grid",
           {{"points", r.grid.points},
            {"epochs_per_point", r.grid.epochs_per_point},
            {"seconds_per_point", r.grid.seconds_per_point},
            {"cost_s", r.grid.cost_s},
            {"batch_sizes_measured", r.grid.batch_sizes_measured},
            {"basis",
             r.grid.seconds_per_point > 0
                 ? "every batch size x optimizer x grid_lr_points learning rates, each trained "
                   "for the top rung's seconds, with this job's ratio of wall to training time"
                 : "every batch size x optimizer x grid_lr_points learning rates, each trained "
                   "for the top rung's epochs at the epoch times measured in this job"}}},
          {"compute_vs_grid", r.grid_ratio},
          {"unscaled_epochs", r.unscaled_epochs_total},
          {"ranking", ranking}};
}

}  // namespace topotune
