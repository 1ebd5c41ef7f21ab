#include "tests/support/bench_flags.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace wake::testing {

BenchFlags::BenchFlags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void BenchFlags::String(const std::string& name, std::string* value, const std::string& help) {
  Add({name, help, *value, [value](const std::string& text) {
         *value = text;
         return true;
       }});
}

void BenchFlags::Choice(const std::string& name, std::string* value,
                        std::vector<std::string> choices, const std::string& help) {
  const std::string described = absl::StrCat(help, " (", absl::StrJoin(choices, " | "), ")");
  Add({name, described, *value, [value, choices = std::move(choices)](const std::string& text) {
         if (std::find(choices.begin(), choices.end(), text) == choices.end()) return false;
         *value = text;
         return true;
       }});
}

void BenchFlags::Int(const std::string& name, int* value, const std::string& help, int min) {
  Add({name, absl::StrCat(help, " (>= ", min, ")"), absl::StrCat(*value),
       [value, min](const std::string& text) {
         int parsed = 0;
         if (!absl::SimpleAtoi(text, &parsed) || parsed < min) return false;
         *value = parsed;
         return true;
       }});
}

void BenchFlags::IntList(const std::string& name, std::vector<int>* values, const std::string& help,
                         int min) {
  Add({name, absl::StrCat(help, " (comma-separated, each >= ", min, ")"),
       absl::StrJoin(*values, ","), [values, min](const std::string& text) {
         std::vector<int> parsed;
         for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
           int one = 0;
           if (!absl::SimpleAtoi(part, &one) || one < min) return false;
           parsed.push_back(one);
         }
         if (parsed.empty()) return false;
         *values = std::move(parsed);
         return true;
       }});
}

void BenchFlags::Add(Flag flag) { flags_.push_back(std::move(flag)); }

bool BenchFlags::Parse(int argc, char** argv) const {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string problem;
    const size_t eq = arg.find('=');
    if (arg == "--help" || arg == "-h") {
      std::fputs(Usage().c_str(), stderr);
      return false;
    }
    if (!absl::StartsWith(arg, "--") || eq == std::string::npos) {
      problem = absl::StrCat("expected --name=value, got ", arg);
    } else {
      const std::string name = arg.substr(2, eq - 2);
      auto flag = std::find_if(flags_.begin(), flags_.end(),
                               [&name](const Flag& f) { return f.name == name; });
      if (flag == flags_.end()) {
        problem = absl::StrCat("unknown flag --", name);
      } else if (!flag->set(arg.substr(eq + 1))) {
        problem = absl::StrCat("bad value for --", name, ": ", arg.substr(eq + 1));
      }
    }
    if (!problem.empty()) {
      std::fprintf(stderr, "%s: %s\n%s", program_.c_str(), problem.c_str(), Usage().c_str());
      return false;
    }
  }
  return true;
}

std::string BenchFlags::Usage() const {
  std::string usage = absl::StrCat("usage: ", program_, " [--name=value ...]\n", summary_, "\n");
  for (const Flag& flag : flags_) {
    absl::StrAppend(&usage, "  --", flag.name, "  ", flag.help,
                    " [default: ", flag.default_value.empty() ? "\"\"" : flag.default_value, "]\n");
  }
  return usage;
}

}  // namespace wake::testing
