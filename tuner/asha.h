#pragma once

#include <cstdint>
#include <vector>

namespace topotune {

// How a trial did at the end of a rung, ranked by the objective (tuner/objective.h).
struct RungResult {
  int64_t trial_id = 0;
  bool reached_target = false;
  double tta_s = 0.0;
  double accuracy = 0.0;
};
bool RanksAbove(const RungResult& a, const RungResult& b);

// The promotion rule of successive halving. Asynchronous (ASHA, Li et al., 2020): a trial
// in rung k may be promoted to rung k+1 once it is among the top floor(n_k / eta) of the
// n_k results recorded in rung k; decisions never wait for a rung to fill. Synchronous
// (SHA, as in each Hyperband bracket): the top of rung k is promoted only once every trial
// that entered rung k has a result there and no new trial will enter the first rung.
// Trials enter at `first_rung` (Hyperband's brackets start at different rungs). Not
// thread-safe.
class AshaRungs {
 public:
  AshaRungs(int num_rungs, int reduction_factor, bool synchronous = false, int first_rung = 0);

  // A trial started training toward `rung` (a new one at first_rung, or a promotion).
  void Enter(int rung);
  // No new trial will enter the first rung (the bracket is full).
  void CloseFirstRung() { first_rung_closed_ = true; }
  int first_rung() const { return first_rung_; }
  int top_rung() const { return static_cast<int>(rungs_.size()) - 1; }

  // Records a trial's result at the end of `rung`.
  void Record(int rung, const RungResult& result);
  // The trials of `rung` that are in its top floor(n/eta), best first.
  std::vector<int64_t> TopOfRung(int rung) const;
  // Trials that may be promoted now, from the highest rung down and best first within a
  // rung: in the top of their rung, below the top rung, not yet promoted, not finished.
  struct Candidate {
    int rung = 0;
    int64_t trial_id = 0;
  };
  std::vector<Candidate> PromotionCandidates() const;
  // A trial promoted out of `rung` (or one that finished there and needs no promotion) is
  // never a candidate of that rung again.
  void MarkPromoted(int rung, int64_t trial_id);
  bool IsPromoted(int rung, int64_t trial_id) const;
  int Size(int rung) const { return static_cast<int>(rungs_[rung].size()); }

 private:
  bool RungComplete(int rung) const;

  int reduction_factor_;
  bool synchronous_;
  int first_rung_;
  bool first_rung_closed_ = false;
  std::vector<int> entered_;                    // per rung
  std::vector<std::vector<RungResult>> rungs_;  // per rung, in arrival order
  std::vector<std::vector<int64_t>> promoted_;  // per rung
};

}  // namespace topotune
