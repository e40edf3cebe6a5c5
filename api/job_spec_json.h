#pragma once

// The JSON form of a tuning job, as POST /v1/jobs takes it:
//
//   {"name": "quickstart", "model": "lenet",
//    "dataset": {"format": "cifar10-bin", "path": "data/shapes", "max_train_samples": 0},
//    "target_accuracy": 0.8,
//    "search_space": {"batch_size": {"min": 16, "max": 512},
//                     "learning_rate": {"min": 1e-4, "max": 1.0, "scale": "log"},
//                     "optimizer": ["sgd", "adam"]},
//    "scheduler": {"algorithm": "asha", "min_epochs": 1, "reduction_factor": 3, "rungs": 3},
//    "max_trials": 16, "seed": 1, "momentum": 0.9, "grid_lr_points": 8}
//
// Rungs in training seconds instead of epochs (rung k: min_seconds * reduction_factor^k,
// each trial at most max_epochs epochs, default 100):
//
//    "scheduler": {"algorithm": "tpe", "rung_unit": "seconds", "min_seconds": 5,
//                  "max_epochs": 50, "reduction_factor": 3, "rungs": 3}
//
// With "topology" (api/topology_json.h), the job answers for its targets, and counts
// seconds on the class of its first target: a trial's seconds x that class's step time /
// the step time of the class it ran on, from their probes, so rungs in seconds and the
// bound compare a slow board and a fast server fairly. "reference_class": "edge" names
// another class; without either, seconds count as measured.
//
// "incumbent_seeds": 3 (1-5; on submission, default 3 for algorithm "forecast", given or
// chosen by "auto", else 1: SubmittedJobSpec) trains a configuration that beats the incumbent on its next seeds too,
// and names the best by its mean time-to-accuracy over them (tuner/seed_groups.h).
//
// Unknown fields are errors (a typo must not silently fall back to a default).

#include <nlohmann/json.hpp>
#include <string>

#include "tuner/status.h"
#include "tuner/types.h"

namespace topotune {

// Parses and validates a job spec. Errors are InvalidArgument naming the field and what it
// must be: "search_space.learning_rate: min (1) must be less than max (0.001)".
StatusOr<JobSpec> ParseJobSpec(const std::string& text);
StatusOr<JobSpec> JobSpecFromJson(const nlohmann::json& j);
// A job spec as a user submits it (POST /v1/jobs): JobSpecFromJson, then the defaults that
// only new jobs get: the forecast's incumbent_seeds (kForecastIncumbentSeeds) where `j`
// does not give it. A stored spec is normalised (JobSpecToJson writes every field) and is
// read with JobSpecFromJson alone, so one stored before such a default keeps its meaning.
StatusOr<JobSpec> SubmittedJobSpec(const nlohmann::json& j);
// The normalised spec, every default filled in; JobSpecFromJson(JobSpecToJson(s)) == s.
nlohmann::json JobSpecToJson(const JobSpec& spec);

}  // namespace topotune
