// Command-line flags with environment fallbacks.
//
// Precedence: --flag on the command line, then the flag's environment
// variable, then its default. Every error names the flag (and the variable
// when the value came from there) so a bad configuration is one clear line.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wake::common {

struct FlagSpec {
  std::string name;           // Without dashes: "database-url".
  std::string env;            // Fallback variable, "" for none.
  std::string default_value;  // Used when neither is set.
  std::string help;
  bool is_bool = false;  // "--flag" alone means true.
};

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The real process environment.
EnvLookup ProcessEnv();

class ConfigValues {
 public:
  // Raw value (never fails for a declared flag).
  const std::string& GetString(const std::string& name) const;
  // Where the value came from, for messages: "--name", "env NAME" or "default".
  std::string SourceOf(const std::string& name) const;

  absl::StatusOr<absl::Duration> GetDuration(const std::string& name) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  absl::StatusOr<bool> GetBool(const std::string& name) const;

  bool help_requested() const { return help_requested_; }

 private:
  friend class ConfigParser;

  absl::Status Invalid(const std::string& name, const std::string& problem) const;

  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> sources_;
  bool help_requested_ = false;
};

class ConfigParser {
 public:
  ConfigParser(std::string program, std::vector<FlagSpec> specs);

  // Parses args (without the program name). Unknown flags, missing values and
  // positional arguments are INVALID_ARGUMENT naming the offender.
  absl::StatusOr<ConfigValues> Parse(const std::vector<std::string>& args,
                                     const EnvLookup& env) const;

  // Text for --help.
  std::string Usage() const;

 private:
  const FlagSpec* Find(const std::string& name) const;

  std::string program_;
  std::vector<FlagSpec> specs_;
};

// Validates "host:port" (port 0-65535; IPv6 hosts in brackets).
absl::Status ValidateListenAddress(const std::string& flag, const std::string& address);

}  // namespace wake::common
