// The record a chaos runner process keeps of what it received and acked: one
// line per event, appended with a single write(2) each, so a runner killed
// with SIGKILL loses at most the line it had not started writing. The driver
// reads every runner's file (while the run goes on and at the end) and does
// its accounting from them.
//
// Lines (fields separated by tabs; strings percent-escaped; times in unix
// microseconds):
//   start    <t> <runner_id> <pid>
//   session  <t> <session_id> open
//   session  <t> <session_id> closed <grpc code>
//   claim    <t> <session_id> <claim_token> <stream> <n> <id,registration_id,key> ...(n, space
//   separated) hold     <t> <session_id> <claim_token>          (sabotage: never acked) ack_sent
//   <t> <session_id> <claim_token> <attempt> ack      <t> <session_id> <claim_token> <attempt>
//   <grpc code> <acked>
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "wake/v1/runtime.pb.h"

namespace wake::chaos {

// One wake as a runner saw it in a claim.
struct RecordedWake {
  int64_t id = 0;
  int64_t registration_id = 0;
  std::string source_event_key;
};

struct RecordLine {
  enum class Kind { kStart, kSessionOpen, kSessionClosed, kClaim, kHold, kAckSent, kAck };
  Kind kind = Kind::kStart;
  absl::Time at;
  std::string session_id;  // kStart: the runner id.
  std::string claim_token;
  std::string stream;               // kClaim.
  std::vector<RecordedWake> wakes;  // kClaim.
  int attempt = 0;                  // kAckSent, kAck.
  int code = 0;                     // kAck, kSessionClosed: a grpc::StatusCode.
  int64_t acked = 0;                // kAck.
  int64_t pid = 0;                  // kStart.
};

// Appends lines to one file (O_APPEND; a restarted runner continues it).
class RecordWriter {
 public:
  // The file is created if missing.
  static absl::StatusOr<std::unique_ptr<RecordWriter>> Open(const std::string& path);
  ~RecordWriter();

  void Start(const std::string& runner_id, int64_t pid);
  void SessionOpen(const std::string& session_id);
  void SessionClosed(const std::string& session_id, int code);
  void Claim(const std::string& session_id, const v1::WakeClaim& claim);
  void Hold(const std::string& session_id, const std::string& claim_token);
  void AckSent(const std::string& session_id, const std::string& claim_token, int attempt);
  void Ack(const std::string& session_id, const std::string& claim_token, int attempt, int code,
           int64_t acked);

 private:
  explicit RecordWriter(int fd) : fd_(fd) {}
  void Write(const std::string& line);

  int fd_;
};

// Formats one line (without the newline); exposed for tests.
std::string FormatLine(const RecordLine& line);
// Parses one line (without the newline); INVALID_ARGUMENT when malformed.
absl::StatusOr<RecordLine> ParseLine(const std::string& line);

// Reads a record file incrementally: each Poll hands over the complete lines
// appended since the previous Poll (a line still being written waits).
class RecordReader {
 public:
  explicit RecordReader(std::string path) : path_(std::move(path)) {}

  // Calls `visit` for every new well-formed line; counts malformed ones.
  void Poll(const std::function<void(const RecordLine&)>& visit);
  int64_t malformed() const { return malformed_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int64_t offset_ = 0;
  int64_t malformed_ = 0;
};

}  // namespace wake::chaos
