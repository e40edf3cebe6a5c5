#include <gtest/gtest.h>

#include "api/job_spec_json.h"
#include "tuner/algorithms.h"

namespace topotune {
namespace {

using nlohmann::json;

json ValidSpec() {
  return json::parse(R"({
    "name": "t", "model": "lenet",
    "dataset": {"format": "cifar10-bin", "path": "data/shapes"},
    "target_accuracy": 0.8,
    "search_space": {"batch_size": {"min": 16, "max": 512},
                     "learning_rate": {"min": 1e-4, "max": 1.0, "scale": "log"},
                     "optimizer": ["sgd", "adam"]},
    "scheduler": {"algorithm": "asha", "min_epochs": 1, "reduction_factor": 3, "rungs": 3},
    "max_trials": 12, "seed": 3})");
}

// The error message for `spec`, which must be rejected.
std::string ErrorOf(const std::string& text) {
  StatusOr<JobSpec> spec = ParseJobSpec(text);
  EXPECT_FALSE(spec.ok()) << text;
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), Status::Code::kInvalidArgument);
  return spec.status().message();
}

TEST(JobSpec, ParsesAValidSpecWithPowersOfTwo) {
  StatusOr<JobSpec> spec = ParseJobSpec(ValidSpec().dump());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->space.batch_sizes, (std::vector<int>{16, 32, 64, 128, 256, 512}));
  EXPECT_DOUBLE_EQ(spec->space.lr_min, 1e-4);
  EXPECT_EQ(spec->space.optimizers.size(), 2u);
  EXPECT_EQ(spec->asha.MaxEpochs(), 9);
  EXPECT_EQ(spec->max_trials, 12);
  EXPECT_EQ(spec->seed, 3u);
}

TEST(JobSpec, AutoRecordsTheAlgorithmItChoseAndWhy) {
  json j = ValidSpec();
  j["scheduler"]["algorithm"] = "auto";
  StatusOr<JobSpec> spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->algorithm, "tpe");  // 12 trials
  EXPECT_FALSE(spec->auto_reason.empty());
  j["max_trials"] = 6;
  spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->algorithm, "asha");
  j["scheduler"]["algorithm"] = "annealing";
  EXPECT_NE(ErrorOf(j.dump()).find("unknown algorithm \"annealing\""), std::string::npos);
}

TEST(JobSpec, RungsInSecondsNeedTheirBudgetAndRoundTrip) {
  json j = ValidSpec();
  j["scheduler"]["rung_unit"] = "seconds";
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.min_seconds"), std::string::npos);
  j["scheduler"]["min_seconds"] = 2.5;
  j["scheduler"]["max_epochs"] = 40;
  StatusOr<JobSpec> spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->asha.unit, RungUnit::kSeconds);
  EXPECT_DOUBLE_EQ(spec->asha.RungSeconds(2), 2.5 * 9);
  EXPECT_EQ(spec->asha.MaxEpochs(), 40);
  StatusOr<JobSpec> again = JobSpecFromJson(JobSpecToJson(*spec));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_DOUBLE_EQ(again->asha.min_seconds, 2.5);
  EXPECT_EQ(again->asha.max_epochs, 40);
  j["scheduler"]["rung_unit"] = "minutes";
  EXPECT_NE(ErrorOf(j.dump()).find("rung_unit"), std::string::npos);
  j["scheduler"]["rung_unit"] = "epochs";
  EXPECT_NE(ErrorOf(j.dump()).find("min_seconds applies only"), std::string::npos);
  j["scheduler"]["rung_unit"] = "seconds";
  j["scheduler"]["min_seconds"] = "fast";
  EXPECT_NE(ErrorOf(j.dump()).find("must be a number"), std::string::npos);
}

TEST(JobSpec, ForecastNeedsAnEpochLimitAndNoRungsAndAutoPicksItForSuchAJob) {
  json j = ValidSpec();
  j["scheduler"] = {{"algorithm", "forecast"}, {"max_epochs", 80}};
  StatusOr<JobSpec> spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_TRUE(spec->asha.rungless);
  EXPECT_EQ(spec->asha.MaxEpochs(), 80);
  EXPECT_EQ(spec->asha.SegmentEpochs(), 4);
  StatusOr<JobSpec> again = ParseJobSpec(JobSpecToJson(*spec).dump());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->asha.rungless);
  EXPECT_EQ(again->asha.MaxEpochs(), 80);

  j["scheduler"] = {{"algorithm", "auto"}, {"max_epochs", 80}};
  StatusOr<JobSpec> chosen = ParseJobSpec(j.dump());
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(chosen->algorithm, "forecast");
  EXPECT_NE(chosen->auto_reason.find("epoch limit"), std::string::npos) << chosen->auto_reason;

  // A short limit too: the forecast, in segments of 1 epoch; the resolved spec round-trips.
  j["scheduler"] = {{"algorithm", "auto"}, {"max_epochs", 12}};
  StatusOr<JobSpec> short_limit = ParseJobSpec(j.dump());
  ASSERT_TRUE(short_limit.ok()) << short_limit.status().ToString();
  EXPECT_TRUE(short_limit->asha.rungless);
  EXPECT_EQ(short_limit->algorithm, "forecast");
  EXPECT_EQ(short_limit->asha.MaxEpochs(), 12);
  EXPECT_EQ(short_limit->asha.SegmentEpochs(), 1);
  StatusOr<JobSpec> short_again = ParseJobSpec(JobSpecToJson(*short_limit).dump());
  ASSERT_TRUE(short_again.ok()) << short_again.status().ToString();
  EXPECT_EQ(short_again->algorithm, "forecast");
  EXPECT_EQ(short_again->asha.MaxEpochs(), 12);
  j["scheduler"] = {{"algorithm", "auto"}, {"max_epochs", 12}, {"rungs", 2}};
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.rungs does not apply"), std::string::npos);

  j["scheduler"] = {{"algorithm", "forecast"}};
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.max_epochs"), std::string::npos);
  j["scheduler"] = {{"algorithm", "forecast"}, {"max_epochs", 80}, {"rungs", 3}};
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.rungs does not apply"), std::string::npos);
}

TEST(JobSpec, TheForecastSamplesWithTpeOrGpAndOnlyItTakesASampler) {
  json j = ValidSpec();
  j["scheduler"] = {{"algorithm", "forecast"}, {"max_epochs", 20}};
  StatusOr<JobSpec> tpe = ParseJobSpec(j.dump());
  ASSERT_TRUE(tpe.ok()) << tpe.status().ToString();
  EXPECT_EQ(tpe->forecast_sampler, "tpe");  // the default
  j["scheduler"]["sampler"] = "gp";
  StatusOr<JobSpec> gp = ParseJobSpec(j.dump());
  ASSERT_TRUE(gp.ok()) << gp.status().ToString();
  EXPECT_EQ(gp->forecast_sampler, "gp");
  StatusOr<JobSpec> gp_again = ParseJobSpec(JobSpecToJson(*gp).dump());
  ASSERT_TRUE(gp_again.ok()) << gp_again.status().ToString();
  EXPECT_EQ(gp_again->forecast_sampler, "gp");
  // "auto" that picks the forecast keeps the sampler.
  j["scheduler"]["algorithm"] = "auto";
  StatusOr<JobSpec> chosen = ParseJobSpec(j.dump());
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(chosen->algorithm, "forecast");
  EXPECT_EQ(chosen->forecast_sampler, "gp");

  j["scheduler"]["sampler"] = "random";
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.sampler must be \"tpe\" or \"gp\", got \"random\""),
            std::string::npos);
  // The other algorithms name their sampler.
  j["scheduler"] = {{"algorithm", "asha"}, {"sampler", "gp"}};
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.sampler applies only to algorithm \"forecast\""),
            std::string::npos);
}

TEST(JobSpec, ATimeBudgetIsALimitForEveryAlgorithmAndTheForecastsOnlyOne) {
  json j = ValidSpec();
  j["time_budget_s"] = 3600;
  StatusOr<JobSpec> asha = ParseJobSpec(j.dump());
  ASSERT_TRUE(asha.ok()) << asha.status().ToString();
  EXPECT_EQ(asha->algorithm, "asha");
  EXPECT_DOUBLE_EQ(asha->time_budget_s, 3600);
  StatusOr<JobSpec> asha_again = ParseJobSpec(JobSpecToJson(*asha).dump());
  ASSERT_TRUE(asha_again.ok()) << asha_again.status().ToString();
  EXPECT_DOUBLE_EQ(asha_again->time_budget_s, 3600);

  // The forecast needs a limit; the budget is one (trials then train at most 100 epochs).
  j["scheduler"] = {{"algorithm", "forecast"}};
  StatusOr<JobSpec> forecast = ParseJobSpec(j.dump());
  ASSERT_TRUE(forecast.ok()) << forecast.status().ToString();
  EXPECT_TRUE(forecast->asha.rungless);
  EXPECT_EQ(forecast->asha.MaxEpochs(), 100);
  StatusOr<JobSpec> forecast_again = ParseJobSpec(JobSpecToJson(*forecast).dump());
  ASSERT_TRUE(forecast_again.ok()) << forecast_again.status().ToString();
  EXPECT_TRUE(forecast_again->asha.rungless);
  EXPECT_DOUBLE_EQ(forecast_again->time_budget_s, 3600);

  // "auto" with the budget and no rung schedule picks the forecast, and says why.
  j["scheduler"] = {{"algorithm", "auto"}};
  StatusOr<JobSpec> chosen = ParseJobSpec(j.dump());
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(chosen->algorithm, "forecast");
  EXPECT_NE(chosen->auto_reason.find("time budget (3600 s"), std::string::npos)
      << chosen->auto_reason;
  // min_epochs is the forecast's shortest segment, as with max_epochs.
  j["scheduler"] = {{"algorithm", "auto"}, {"min_epochs", 2}};
  StatusOr<JobSpec> segments = ParseJobSpec(j.dump());
  ASSERT_TRUE(segments.ok()) << segments.status().ToString();
  EXPECT_EQ(segments->algorithm, "forecast");
  EXPECT_EQ(segments->asha.SegmentEpochs(), 5);  // max(2, 100 / 20)
  // min_seconds belongs to rungs in seconds, and says so.
  j["scheduler"] = {{"algorithm", "auto"}, {"min_seconds", 2}};
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.min_seconds applies only with"), std::string::npos);
  // With a rung schedule it keeps the rungs, and the budget.
  j["scheduler"] = {{"algorithm", "auto"}, {"rungs", 3}};
  StatusOr<JobSpec> rungs = ParseJobSpec(j.dump());
  ASSERT_TRUE(rungs.ok()) << rungs.status().ToString();
  EXPECT_EQ(rungs->algorithm, "tpe");
  EXPECT_DOUBLE_EQ(rungs->time_budget_s, 3600);

  j["scheduler"] = {{"algorithm", "forecast"}};
  j.erase("time_budget_s");
  EXPECT_NE(ErrorOf(j.dump()).find("or the job's time_budget_s"), std::string::npos);
  for (const char* bad : {"-1", "1e10", "\"an hour\""}) {
    std::string text = ValidSpec().dump();
    text.insert(text.size() - 1, std::string(", \"time_budget_s\": ") + bad);
    EXPECT_NE(ErrorOf(text).find("time_budget_s"), std::string::npos) << bad;
  }
}

TEST(JobSpec, IncumbentSeedsIsOneByDefaultAndAtMostFive) {
  StatusOr<JobSpec> spec = ParseJobSpec(ValidSpec().dump());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->incumbent_seeds, 1);
  json j = ValidSpec();
  j["incumbent_seeds"] = 3;
  spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->incumbent_seeds, 3);
  EXPECT_EQ(JobSpecToJson(*spec)["incumbent_seeds"], 3);
  for (const char* bad : {"0", "6", "-1", "2.5", "\"3\""}) {
    std::string text = ValidSpec().dump();
    text.insert(text.size() - 1, std::string(", \"incumbent_seeds\": ") + bad);
    EXPECT_NE(ErrorOf(text).find("incumbent_seeds"), std::string::npos) << bad;
  }
}

TEST(JobSpec, ASubmittedForecastNamesItsBestByTheMeanOverThreeSeedsUnlessItSays) {
  json j = ValidSpec();
  j["scheduler"] = {{"algorithm", "forecast"}, {"max_epochs", 20}};
  StatusOr<JobSpec> spec = SubmittedJobSpec(j);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->incumbent_seeds, kForecastIncumbentSeeds);
  // Stored normalised, it reads back the same.
  StatusOr<JobSpec> again = ParseJobSpec(JobSpecToJson(*spec).dump());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->incumbent_seeds, kForecastIncumbentSeeds);
  // A spec stored before the default existed has no such field: it keeps its one seed.
  spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->incumbent_seeds, 1);
  j["scheduler"]["algorithm"] = "auto";  // which picks the forecast for such a job
  spec = SubmittedJobSpec(j);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->algorithm, "forecast");
  EXPECT_EQ(spec->incumbent_seeds, kForecastIncumbentSeeds);
  EXPECT_NE(spec->auto_reason.find("mean time-to-accuracy over 3 seeds"), std::string::npos)
      << spec->auto_reason;
  j["incumbent_seeds"] = 1;
  spec = SubmittedJobSpec(j);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->incumbent_seeds, 1);
  // Other algorithms keep one seed.
  spec = SubmittedJobSpec(ValidSpec());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->incumbent_seeds, 1);
}

TEST(JobSpec, NormalisedFormRoundTrips) {
  StatusOr<JobSpec> spec = ParseJobSpec(ValidSpec().dump());
  ASSERT_TRUE(spec.ok());
  StatusOr<JobSpec> again = JobSpecFromJson(JobSpecToJson(*spec));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(JobSpecToJson(*again), JobSpecToJson(*spec));
}

// A job may name the topology its report answers for; it is validated at submission and
// kept as given.
TEST(JobSpec, ATopologyIsValidatedAndKept) {
  json j = ValidSpec();
  j["topology"] = json::parse(R"({"sites": {"edge-1": {"edge": 1}, "cloud": {"cloud": 1}},
      "links": [{"between": ["edge-1", "cloud"], "bandwidth_mbit_s": 10, "latency_ms": 40}],
      "data": {"site": "edge-1", "bytes": 6.2e6},
      "targets": [{"name": "edge", "class": "edge", "site": "edge-1"},
                  {"name": "cloud", "class": "cloud", "site": "cloud"}]})");
  StatusOr<JobSpec> spec = JobSpecFromJson(j);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(json::parse(spec->topology_json), j["topology"]);
  StatusOr<JobSpec> again = ParseJobSpec(JobSpecToJson(*spec).dump());
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->topology_json, spec->topology_json);
  EXPECT_FALSE(JobSpecToJson(*ParseJobSpec(ValidSpec().dump())).contains("topology"));
  j["topology"]["targets"][1]["site"] = "mars";
  EXPECT_NE(ErrorOf(j.dump()).find("topology: targets[1].site"), std::string::npos)
      << ErrorOf(j.dump());
}

// A job with targets counts seconds on its first target's class, unless it names another.
TEST(JobSpec, SecondsCountOnTheFirstTargetsClassUnlessTheJobNamesAnother) {
  json j = ValidSpec();
  EXPECT_EQ(ParseJobSpec(j.dump())->reference_class, "");
  j["topology"] = json::parse(R"({"sites": {"edge-1": {"edge": 1}, "cloud": {"cloud": 1}},
      "targets": [{"name": "edge", "class": "edge", "site": "edge-1"},
                  {"name": "cloud", "class": "cloud", "site": "cloud"}]})");
  EXPECT_EQ(ParseJobSpec(j.dump())->reference_class, "edge");
  j["reference_class"] = "cloud";
  StatusOr<JobSpec> spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->reference_class, "cloud");
  EXPECT_EQ(ParseJobSpec(JobSpecToJson(*spec).dump())->reference_class, "cloud");
  j["reference_class"] = "no spaces";
  EXPECT_NE(ErrorOf(j.dump()).find("reference_class must be"), std::string::npos)
      << ErrorOf(j.dump());
  j["reference_class"] = 3;
  EXPECT_NE(ErrorOf(j.dump()).find("reference_class"), std::string::npos) << ErrorOf(j.dump());
}

// Seconds count on the first target as a whole: a data-parallel one stays data-parallel,
// through the spec's JSON too; a job that names another class counts one device of it.
TEST(JobSpec, SecondsCountOnTheFirstTargetAsItTrains) {
  json j = ValidSpec();
  j["topology"] = json::parse(R"({"sites": {"cloud": {"cloud": 4}}, "model_bytes": 248000,
      "targets": [{"name": "x4", "kind": "data_parallel", "class": "cloud", "site": "cloud",
                   "devices": 4, "nodes": 4,
                   "inter_node": {"bandwidth_mbit_s": 10, "latency_ms": 1}}]})");
  StatusOr<JobSpec> spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  for (const JobSpec& s : {*spec, *ParseJobSpec(JobSpecToJson(*spec).dump())}) {
    const Target t = ReferenceTarget(s);
    EXPECT_EQ(t.kind, Target::Kind::kDataParallel);
    EXPECT_EQ(t.devices, 4);
    EXPECT_DOUBLE_EQ(t.inter_node.bandwidth_bytes_s, 10e6 / 8);
    EXPECT_DOUBLE_EQ(s.workload.model_bytes, 248000);
  }
  j["reference_class"] = "edge";
  spec = ParseJobSpec(j.dump());
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(ReferenceTarget(*spec).kind, Target::Kind::kSingle);
  EXPECT_EQ(ReferenceTarget(*spec).device_class, "edge");
}

TEST(JobSpec, RejectsBadJson) {
  EXPECT_NE(ErrorOf("{\"model\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(ErrorOf("[1, 2]").find("must be a JSON object"), std::string::npos);
}

TEST(JobSpec, RejectsAnUnknownOptimizer) {
  json j = ValidSpec();
  j["search_space"]["optimizer"] = {"sgd", "rmsprop"};
  const std::string m = ErrorOf(j.dump());
  EXPECT_NE(m.find("search_space.optimizer"), std::string::npos) << m;
  EXPECT_NE(m.find("rmsprop"), std::string::npos) << m;
}

TEST(JobSpec, RejectsAnInvertedLearningRateRange) {
  json j = ValidSpec();
  j["search_space"]["learning_rate"] = {{"min", 1.0}, {"max", 0.001}};
  const std::string m = ErrorOf(j.dump());
  EXPECT_NE(m.find("search_space.learning_rate"), std::string::npos) << m;
  EXPECT_NE(m.find("must be less than max"), std::string::npos) << m;
}

TEST(JobSpec, RejectsBatchSizeZero) {
  json j = ValidSpec();
  j["search_space"]["batch_size"]["min"] = 0;
  const std::string m = ErrorOf(j.dump());
  EXPECT_NE(m.find("search_space.batch_size.min"), std::string::npos) << m;
  EXPECT_NE(m.find("got 0"), std::string::npos) << m;
  j["search_space"]["batch_size"] = {{"values", {32, 0}}};
  EXPECT_NE(ErrorOf(j.dump()).find("batch_size.values"), std::string::npos);
}

TEST(JobSpec, RejectsAMissingTarget) {
  json j = ValidSpec();
  j.erase("target_accuracy");
  EXPECT_NE(ErrorOf(j.dump()).find("target_accuracy is required"), std::string::npos);
  j["target_accuracy"] = 1.5;
  EXPECT_NE(ErrorOf(j.dump()).find("target_accuracy must be in (0, 1]"), std::string::npos);
}

TEST(JobSpec, RejectsAnUnknownModel) {
  json j = ValidSpec();
  j["model"] = "resnet9000";
  const std::string m = ErrorOf(j.dump());
  EXPECT_NE(m.find("unknown model \"resnet9000\""), std::string::npos) << m;
  EXPECT_NE(m.find("lenet"), std::string::npos) << m;  // lists the known ones
}

TEST(JobSpec, RejectsWrongTypesAndUnknownFields) {
  json j = ValidSpec();
  j["max_trials"] = "ten";
  EXPECT_NE(ErrorOf(j.dump()).find("max_trials must be an integer, got string"), std::string::npos);
  j = ValidSpec();
  j["max_trails"] = 10;  // a typo must not fall back to the default
  EXPECT_NE(ErrorOf(j.dump()).find("unknown field max_trails"), std::string::npos);
  j = ValidSpec();
  j["scheduler"]["reduction_factor"] = 1;
  EXPECT_NE(ErrorOf(j.dump()).find("scheduler.reduction_factor must be in [2, 16]"),
            std::string::npos);
  j = ValidSpec();
  j["dataset"].erase("path");
  EXPECT_NE(ErrorOf(j.dump()).find("dataset.path is required"), std::string::npos);
}

}  // namespace
}  // namespace topotune
