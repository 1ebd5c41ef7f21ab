#include "tests/chaos/workload.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace wake::chaos {

int FamilyPlan::wakes() const {
  int total = 0;
  for (const ChildPlan& child : children) total += child.runs;
  return total;
}

int FamilyPlan::rounds() const {
  int rounds = 0;
  for (const ChildPlan& child : children) rounds = std::max(rounds, child.runs);
  return rounds;
}

std::vector<FamilyPlan> PlanFamilies(int wakes, uint64_t seed, const std::string& prefix) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto chance = [&rng](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  std::vector<FamilyPlan> families;
  int left = wakes;
  while (left > 0) {
    FamilyPlan family;
    family.index = static_cast<int>(families.size());
    family.parent = absl::StrCat(prefix, "/p", family.index);
    family.one_shot = chance(0.25);
    // Mostly small families; one in five a big burst of siblings.
    const int children = chance(0.2) ? uniform(12, 25) : uniform(1, 8);
    const int runs = family.one_shot ? 1 : uniform(1, 3);
    for (int c = 0; c < children && left > 0; ++c) {
      ChildPlan child;
      child.source = absl::StrCat(family.parent, "/c", c);
      child.runs = std::min(runs, left);
      left -= child.runs;
      family.children.push_back(std::move(child));
    }
    families.push_back(std::move(family));
  }
  return families;
}

std::string EventOffset(int64_t n) { return absl::StrFormat("%016d_0", n); }

}  // namespace wake::chaos
