#include "tuner/seed_groups.h"

#include <algorithm>
#include <limits>

namespace topotune {

bool SeedGroup::Settled(int seeds) const {
  return first->reached_target && !running && !missed && !incomplete &&
         (seed_free || runs >= seeds);
}

double SeedGroup::MeanTta() const {
  if (tta_s.empty()) return std::numeric_limits<double>::infinity();
  double sum = 0.0;
  for (double s : tta_s) sum += s;
  return sum / static_cast<double>(tta_s.size());
}

double SeedGroup::SlowestTta() const {
  if (tta_s.empty()) return std::numeric_limits<double>::infinity();
  return *std::max_element(tta_s.begin(), tta_s.end());
}

bool IsRerunOf(const TrialRecord& t, const TrialRecord& first) {
  return t.confirms == first.number && first.confirms < 0 && t.seed != first.seed;
}

std::map<int, SeedGroup> GroupBySeed(const std::vector<const TrialRecord*>& trials) {
  std::map<int, SeedGroup> groups;
  for (const TrialRecord* t : trials) {
    if (t->confirms >= 0) continue;
    SeedGroup& g = groups[t->number];
    g.first = t;
    if (t->reached_target) {
      g.tta_s.push_back(t->tta_s);
      g.runs = 1;
    }
  }
  std::vector<const TrialRecord*> reruns;
  for (const TrialRecord* t : trials) {
    auto g = groups.find(t->confirms);
    if (t->confirms >= 0 && g != groups.end() && IsRerunOf(*t, *g->second.first)) {
      reruns.push_back(t);
    }
  }
  std::sort(reruns.begin(), reruns.end(),
            [](const TrialRecord* a, const TrialRecord* b) { return a->number < b->number; });
  for (const TrialRecord* t : reruns) {
    SeedGroup& g = groups.at(t->confirms);
    g.reruns.push_back(t);
    if (t->repeats >= 0) {
      g.seed_free = true;
    } else if (t->reached_target) {
      g.tta_s.push_back(t->tta_s);
      ++g.runs;
    } else if (!IsTerminal(t->state)) {
      g.running = true;
    } else if (t->state == TrialState::kCompleted) {
      g.missed = true;
      ++g.runs;
    } else {
      g.incomplete = true;
    }
  }
  return groups;
}

const SeedGroup* NamedGroup(const std::map<int, SeedGroup>& groups, int seeds) {
  const SeedGroup* best = nullptr;
  for (const auto& [number, g] : groups) {
    if (g.Settled(seeds) && (best == nullptr || g.MeanTta() < best->MeanTta())) best = &g;
  }
  return best;
}

}  // namespace topotune
