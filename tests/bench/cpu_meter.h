// CPU time of named processes over a benchmark row, read from /proc: the
// registry, the runtime, PostgreSQL (the postmaster and every child, so
// backends and the walsender count) and this process (the load generator and
// its runners). Divided by the wakes a row delivered it gives the CPU each
// component spends per wake.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace wake::bench {

class CpuMeter {
 public:
  // `spec`: "name=pid[+],..."; a trailing '+' adds the process's children:
  // those alive at each sample, and those that ended (and were waited for)
  // through the parent's cutime and cstime, so a child that exits between
  // two samples still counts.
  // The load generator itself is always measured, as "client".
  bool Parse(const std::string& spec) {
    for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
      Target target;
      target.name = kv.first;
      std::string pid = kv.second;
      if (!pid.empty() && pid.back() == '+') {
        target.children = true;
        pid.pop_back();
      }
      if (target.name.empty() || !absl::SimpleAtoi(pid, &target.pid) || target.pid <= 0) {
        return false;
      }
      targets_.push_back(target);
    }
    return true;
  }

  // CPU ticks (user + system) per component now, "client" last.
  struct Sample {
    std::vector<std::pair<std::string, int64_t>> ticks;
  };

  Sample Take() const {
    Sample sample;
    std::map<int, std::vector<int>> children;
    bool listed = false;
    for (const Target& target : targets_) {
      int64_t ticks = Ticks(target.pid, target.children);
      if (target.children) {
        if (!listed) children = ChildrenByParent();
        listed = true;
        for (int child : children[target.pid]) ticks += Ticks(child);
      }
      sample.ticks.emplace_back(target.name, ticks);
    }
    sample.ticks.emplace_back("client", Ticks(getpid()));
    return sample;
  }

  // Microseconds of CPU per wake of each component between two samples, and
  // their total, as "name=us ... total=us". Processes of `before` that ended
  // meanwhile are not subtracted (their time is lost, never negative).
  static std::string PerWake(const Sample& before, const Sample& after, int64_t wakes) {
    if (wakes <= 0) return "n/a";
    const double us_per_tick = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
    std::ostringstream out;
    double total = 0;
    for (size_t i = 0; i < after.ticks.size() && i < before.ticks.size(); ++i) {
      const int64_t delta = std::max<int64_t>(0, after.ticks[i].second - before.ticks[i].second);
      const double us = static_cast<double>(delta) * us_per_tick / static_cast<double>(wakes);
      total += us;
      char buffer[64];
      std::snprintf(buffer, sizeof(buffer), "%s=%.0f ", after.ticks[i].first.c_str(), us);
      out << buffer;
    }
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "total=%.0f", total);
    out << buffer;
    return out.str();
  }

 private:
  struct Target {
    std::string name;
    int pid = 0;
    bool children = false;
  };

  // utime + stime of /proc/<pid>/stat (fields 14 and 15), and with
  // `reaped` cutime + cstime (16 and 17); 0 once it is gone.
  static int64_t Ticks(int pid, bool reaped = false) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) return 0;
    // The command name (field 2) may hold spaces: count from its ')'.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) return 0;
    std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    if (fields.size() < 15) return 0;
    int64_t sum = 0;
    for (size_t i = 11; i < (reaped ? 15u : 13u); ++i) {
      int64_t value = 0;
      if (!absl::SimpleAtoi(fields[i], &value)) return 0;
      sum += value;
    }
    return sum;
  }

  static std::map<int, std::vector<int>> ChildrenByParent() {
    std::map<int, std::vector<int>> children;
    FILE* pipe = popen("ps -e -o pid=,ppid=", "r");
    if (pipe == nullptr) return children;
    int pid = 0;
    int ppid = 0;
    while (std::fscanf(pipe, "%d %d", &pid, &ppid) == 2) children[ppid].push_back(pid);
    pclose(pipe);
    return children;
  }

  std::vector<Target> targets_;
};

}  // namespace wake::bench
