// BenchFlags: the command line of the benchmark and load binaries, one
// `--name=value` per argument. Each binary names its flags with a pointer to
// the field that holds the default and receives the value; anything unknown
// or malformed fails Parse with a usage text built from the declarations:
//   BenchFlags flags("register_load", "Registers or evaluates for a while.");
//   flags.String("target", &options.target, "registry address");
//   flags.Int("callers", &options.callers, "concurrent callers", /*min=*/1);
//   if (!flags.Parse(argc, argv)) return 2;
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace wake::testing {

class BenchFlags {
 public:
  BenchFlags(std::string program, std::string summary);

  // The pointers must outlive Parse.
  void String(const std::string& name, std::string* value, const std::string& help);
  // One of `choices`.
  void Choice(const std::string& name, std::string* value, std::vector<std::string> choices,
              const std::string& help);
  void Int(const std::string& name, int* value, const std::string& help, int min = 0);
  // A comma-separated list, at least one value, each >= `min`.
  void IntList(const std::string& name, std::vector<int>* values, const std::string& help,
               int min = 1);

  // Sets the named fields; on an unknown flag, a bad value or --help, prints
  // why and the usage to stderr and returns false (the caller exits 2).
  bool Parse(int argc, char** argv) const;

  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_value;
    // Sets the field from the text; false if the text is not a valid value.
    std::function<bool(const std::string&)> set;
  };

  void Add(Flag flag);

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
};

}  // namespace wake::testing
