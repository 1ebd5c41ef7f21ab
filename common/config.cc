#include "common/config.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace wake::common {

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

const std::string& ConfigValues::GetString(const std::string& name) const {
  static const std::string* const kEmpty = new std::string();
  auto it = values_.find(name);
  return it == values_.end() ? *kEmpty : it->second;
}

std::string ConfigValues::SourceOf(const std::string& name) const {
  auto it = sources_.find(name);
  return it == sources_.end() ? "default" : it->second;
}

absl::Status ConfigValues::Invalid(const std::string& name, const std::string& problem) const {
  const std::string source = SourceOf(name);
  std::string where = absl::StrCat("--", name);
  if (absl::StartsWith(source, "env ")) absl::StrAppend(&where, " (from ", source, ")");
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", problem));
}

absl::StatusOr<absl::Duration> ConfigValues::GetDuration(const std::string& name) const {
  const std::string& text = GetString(name);
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration)) {
    return Invalid(name,
                   absl::StrCat("\"", text, "\" is not a duration (use e.g. 500ms, 30s, 2m)"));
  }
  if (duration < absl::ZeroDuration()) return Invalid(name, "must not be negative");
  return duration;
}

absl::StatusOr<int64_t> ConfigValues::GetInt(const std::string& name) const {
  const std::string& text = GetString(name);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return Invalid(name, absl::StrCat("\"", text, "\" is not an integer"));
  }
  return value;
}

absl::StatusOr<bool> ConfigValues::GetBool(const std::string& name) const {
  const std::string text = absl::AsciiStrToLower(GetString(name));
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no" || text.empty()) return false;
  return Invalid(name, absl::StrCat("\"", text, "\" is not a boolean (true/false)"));
}

ConfigParser::ConfigParser(std::string program, std::vector<FlagSpec> specs)
    : program_(std::move(program)), specs_(std::move(specs)) {}

const FlagSpec* ConfigParser::Find(const std::string& name) const {
  for (const FlagSpec& spec : specs_) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

absl::StatusOr<ConfigValues> ConfigParser::Parse(const std::vector<std::string>& args,
                                                 const EnvLookup& env) const {
  ConfigValues out;
  for (const FlagSpec& spec : specs_) {
    out.values_[spec.name] = spec.default_value;
    if (!spec.env.empty()) {
      if (std::optional<std::string> value = env(spec.env); value.has_value()) {
        out.values_[spec.name] = *value;
        out.sources_[spec.name] = absl::StrCat("env ", spec.env);
      }
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      out.help_requested_ = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\" (flags look like --name=value)"));
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const FlagSpec* spec = Find(name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    if (!value.has_value()) {
      if (spec->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": missing value"));
      }
    }
    out.values_[name] = *value;
    out.sources_[name] = absl::StrCat("--", name);
  }
  return out;
}

std::string ConfigParser::Usage() const {
  std::string usage = absl::StrCat("usage: ", program_, " [flags]\n\nflags:\n");
  for (const FlagSpec& spec : specs_) {
    absl::StrAppend(&usage, "  --", spec.name, spec.is_bool ? "" : "=VALUE", "\n      ", spec.help);
    if (!spec.env.empty()) absl::StrAppend(&usage, " (env ", spec.env, ")");
    if (!spec.default_value.empty()) absl::StrAppend(&usage, " [default ", spec.default_value, "]");
    usage.push_back('\n');
  }
  return usage;
}

absl::Status ValidateListenAddress(const std::string& flag, const std::string& address) {
  const size_t colon = address.rfind(':');
  if (address.empty() || colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", address, "\" is not host:port (e.g. 127.0.0.1:50051)"));
  }
  const std::string host = address.substr(0, colon);
  if (host.find(':') != std::string::npos && (host.front() != '[' || host.back() != ']')) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": IPv6 hosts need brackets, e.g. [::1]:50051"));
  }
  int port = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": port in \"", address, "\" must be 0-65535"));
  }
  return absl::OkStatus();
}

}  // namespace wake::common
