// Structured one-line logs (logfmt) on stderr:
//   ts=2026-11-25T22:30:01.123Z level=info svc=registry event=listening address=127.0.0.1:50051
// One line per event so logs stay greppable and machine-readable.
#pragma once

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace wake::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug", "info", "warn", "error" (case-insensitive).
bool ParseLogLevel(absl::string_view text, LogLevel* level);

struct LogField {
  LogField(absl::string_view k, const absl::AlphaNum& v) : key(k), value(v.Piece()) {}
  LogField(absl::string_view k, const absl::Status& status) : key(k), value(status.ToString()) {}

  std::string key;
  std::string value;
};

// Process-wide settings; set once in main() before threads start.
void SetLogService(absl::string_view service);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Formats one logfmt line (without the timestamp). Exposed for tests.
std::string FormatLogLine(LogLevel level, absl::string_view service, absl::string_view event,
                          std::initializer_list<LogField> fields);

void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields = {});

inline void LogDebug(absl::string_view event, std::initializer_list<LogField> fields = {}) {
  if (LogEnabled(LogLevel::kDebug)) Log(LogLevel::kDebug, event, fields);
}
inline void LogInfo(absl::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
// Process lifecycle (listening, serving, shutting_down, stopped): printed at
// level info whatever --log-level says, so supervisors and scripts that wait
// for `event=serving` work at every level.
void LogLifecycle(absl::string_view event, std::initializer_list<LogField> fields = {});
inline void LogWarn(absl::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarn, event, fields);
}
inline void LogError(absl::string_view event, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, event, fields);
}

}  // namespace wake::common
