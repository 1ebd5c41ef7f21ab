#include "tests/chaos/managed_process.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace wake::chaos {

ManagedProcess::ManagedProcess(std::string name, std::string binary, std::vector<std::string> args,
                               std::string ready, std::string log_dir)
    : name_(std::move(name)),
      binary_(std::move(binary)),
      args_(std::move(args)),
      ready_(std::move(ready)),
      log_dir_(std::move(log_dir)) {}

absl::Status ManagedProcess::Start(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (process_ != nullptr && process_->Running()) {
    return absl::FailedPreconditionError(absl::StrCat(name_, " is already running"));
  }
  // Subprocess logs under TEST_TMPDIR (set by the driver); the child must not
  // inherit it.
  absl::StatusOr<std::unique_ptr<testing::Subprocess>> started =
      testing::Subprocess::Start(binary_, args_, {{"TEST_TMPDIR", std::nullopt}});
  if (!started.ok()) return started.status();
  process_ = std::move(*started);
  ++starts_;
  log_path_ = absl::StrCat(log_dir_, "/", name_, ".", starts_, ".log");
  std::remove(log_path_.c_str());
  if (symlink(process_->log_path().c_str(), log_path_.c_str()) != 0) {
    log_path_ = process_->log_path();
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (process_->ReadLog().find(ready_) != std::string::npos) return absl::OkStatus();
    if (!process_->Running()) {
      const int code = process_->WaitForExit(absl::ZeroDuration()).value_or(-1);
      process_.reset();
      return absl::UnavailableError(absl::StrCat(
          name_, " exited (status ", code, ") before logging \"", ready_, "\"; see ", log_path_));
    }
    if (absl::Now() > deadline) {
      process_.reset();  // Kills it.
      return absl::DeadlineExceededError(absl::StrCat(name_, " did not log \"", ready_,
                                                      "\" within ", absl::FormatDuration(timeout),
                                                      "; see ", log_path_));
    }
    absl::SleepFor(absl::Milliseconds(20));  // Polling its log: the condition is the line.
  }
}

pid_t ManagedProcess::Kill() {
  absl::MutexLock lock(&mu_);
  if (process_ == nullptr) return 0;
  const pid_t pid = process_->pid();
  process_->Signal(SIGKILL);
  process_->WaitForExit(absl::Seconds(30));
  process_.reset();
  return pid;
}

void ManagedProcess::Stop(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  if (process_ == nullptr) return;
  process_->Signal(SIGTERM);
  if (!process_->WaitForExit(grace).has_value()) process_->Signal(SIGKILL);
  process_->WaitForExit(absl::Seconds(30));
  process_.reset();
}

void ManagedProcess::Signal(int signal) {
  absl::MutexLock lock(&mu_);
  if (process_ != nullptr) process_->Signal(signal);
}

std::optional<int> ManagedProcess::CheckExited() {
  absl::MutexLock lock(&mu_);
  if (process_ == nullptr) return std::nullopt;
  std::optional<int> code = process_->WaitForExit(absl::ZeroDuration());
  if (code.has_value()) process_.reset();
  return code;
}

bool ManagedProcess::running() {
  absl::MutexLock lock(&mu_);
  return process_ != nullptr && process_->Running();
}

pid_t ManagedProcess::pid() {
  absl::MutexLock lock(&mu_);
  return process_ == nullptr ? 0 : process_->pid();
}

int ManagedProcess::starts() {
  absl::MutexLock lock(&mu_);
  return starts_;
}

std::string ManagedProcess::log_path() {
  absl::MutexLock lock(&mu_);
  return log_path_;
}

bool ManagedProcess::LogContains(const std::string& needle) {
  absl::MutexLock lock(&mu_);
  return process_ != nullptr && process_->ReadLog().find(needle) != std::string::npos;
}

}  // namespace wake::chaos
