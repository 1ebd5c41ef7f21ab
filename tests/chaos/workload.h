// What the chaos run produces, decided up front from the seed: families of
// one parent stream and its children. Each child registers its parent for
// run_finished wakes; then the children finish runs in rounds, every child of
// a family in a round at once (a burst on the parent stream). A persistent
// registration is woken once per run; a one-shot family finishes one run per
// child and each registration goes with its wake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wake::chaos {

struct ChildPlan {
  std::string source;  // The child's stream (the registration's source_url).
  int runs = 1;        // Runs it finishes, one per round.
};

struct FamilyPlan {
  int index = 0;
  std::string parent;  // The subscriber stream.
  bool one_shot = false;
  std::vector<ChildPlan> children;

  int wakes() const;
  int rounds() const;
};

// Families whose wakes add up to exactly `wakes`, under stream prefix
// `prefix` (e.g. "/chaos").
std::vector<FamilyPlan> PlanFamilies(int wakes, uint64_t seed, const std::string& prefix);

// The idempotency key (EvaluateRunFinished.offset) of the n-th event of the
// run. Zero-padded so offsets of one source sort the same as strings and as
// numbers, whatever ordering a registry might rely on.
std::string EventOffset(int64_t n);

}  // namespace wake::chaos
