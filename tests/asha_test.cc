#include "tuner/asha.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace topotune {
namespace {

TEST(Asha, PromotesExactlyTheTopOneOverEta) {
  AshaRungs rungs(/*num_rungs=*/3, /*reduction_factor=*/3);
  // Nine results in rung 0 with accuracies 0.1 .. 0.9 in a shuffled order.
  const double acc[] = {0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4};
  for (int i = 0; i < 9; ++i) rungs.Record(0, {i, false, 0.0, acc[i]});
  const std::vector<int64_t> top = rungs.TopOfRung(0);
  ASSERT_EQ(top.size(), 3u);  // floor(9 / 3)
  EXPECT_EQ(top[0], 1);       // 0.9
  EXPECT_EQ(top[1], 5);       // 0.8
  EXPECT_EQ(top[2], 3);       // 0.7
  const auto candidates = rungs.PromotionCandidates();
  ASSERT_EQ(candidates.size(), 3u);
  for (const auto& c : candidates) EXPECT_EQ(c.rung, 0);
}

TEST(Asha, NoPromotionUntilARungHasEtaResults) {
  AshaRungs rungs(3, 3);
  rungs.Record(0, {1, false, 0.0, 0.9});
  rungs.Record(0, {2, false, 0.0, 0.8});
  EXPECT_TRUE(rungs.PromotionCandidates().empty());  // floor(2/3) = 0
  rungs.Record(0, {3, false, 0.0, 0.1});
  ASSERT_EQ(rungs.PromotionCandidates().size(), 1u);
  EXPECT_EQ(rungs.PromotionCandidates()[0].trial_id, 1);
}

TEST(Asha, PromotedTrialsAreNotCandidatesAgainAndHigherRungsComeFirst) {
  AshaRungs rungs(3, 2);
  for (int i = 0; i < 4; ++i) rungs.Record(0, {i, false, 0.0, 0.1 * (i + 1)});
  // Top two of rung 0: ids 3 and 2.
  rungs.MarkPromoted(0, 3);
  rungs.MarkPromoted(0, 2);
  EXPECT_TRUE(rungs.PromotionCandidates().empty());
  rungs.Record(1, {3, false, 0.0, 0.9});
  rungs.Record(1, {2, false, 0.0, 0.5});
  rungs.Record(0, {4, false, 0.0, 0.95});  // rung 0 now has 5 results: top 2 = 4, 3
  const auto candidates = rungs.PromotionCandidates();
  ASSERT_EQ(candidates.size(), 2u);
  EXPECT_EQ(candidates[0].rung, 1);  // the highest rung first
  EXPECT_EQ(candidates[0].trial_id, 3);
  EXPECT_EQ(candidates[1].rung, 0);
  EXPECT_EQ(candidates[1].trial_id, 4);
}

TEST(Asha, TrialsThatReachedTheTargetRankFirstByTimeToAccuracy) {
  EXPECT_TRUE(RanksAbove({1, true, 50.0, 0.8}, {2, false, 0.0, 0.99}));
  EXPECT_TRUE(RanksAbove({1, true, 10.0, 0.8}, {2, true, 20.0, 0.9}));
  EXPECT_FALSE(RanksAbove({1, true, 30.0, 0.8}, {2, true, 20.0, 0.9}));
  EXPECT_TRUE(RanksAbove({1, false, 0.0, 0.7}, {2, false, 0.0, 0.6}));
}

TEST(Asha, TopRungIsNeverPromoted) {
  AshaRungs rungs(2, 2);
  for (int i = 0; i < 4; ++i) rungs.Record(1, {i, false, 0.0, 0.2 * i});
  EXPECT_TRUE(rungs.PromotionCandidates().empty());
}

}  // namespace
}  // namespace topotune
