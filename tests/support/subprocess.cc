#include "tests/support/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/support/wait_until.h"

extern char** environ;

namespace wake::testing {

std::string RunfilePath(const std::string& relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return relative;
  return absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "wakeline", "/", relative);
}

std::string TempPath(const std::string& prefix) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", prefix, "-", getpid(), "-", counter++);
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::optional<std::string>>& env) {
  const std::string log_path = TempPath("proc") + ".log";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) == 0) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : env) {
    if (value.has_value()) env_strings.push_back(absl::StrCat(name, "=", *value));
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);

  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::InternalError(absl::StrCat("cannot create ", log_path));
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    // Child: fresh signal state, output to the log.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(path.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  return std::unique_ptr<Subprocess>(new Subprocess(pid, log_path));
}

Subprocess::~Subprocess() {
  if (!exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::string Subprocess::ReadLog() const {
  std::ifstream in(log_path_);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::string> Subprocess::WaitForLog(const std::string& needle,
                                                   absl::Duration timeout) const {
  // Polling a file: the condition is the log line.
  std::string log;
  size_t at = std::string::npos;
  if (!WaitUntil(
          [&] {
            log = ReadLog();
            at = log.find(needle);
            return at != std::string::npos;
          },
          absl::Now() + timeout, absl::Milliseconds(10))) {
    return absl::DeadlineExceededError(absl::StrCat("\"", needle, "\" not logged within ",
                                                    absl::FormatDuration(timeout),
                                                    "; log so far:\n", log));
  }
  const size_t start = log.rfind('\n', at);
  const size_t end = log.find('\n', at);
  const size_t first = start == std::string::npos ? 0 : start + 1;
  return log.substr(first, end == std::string::npos ? std::string::npos : end - first);
}

void Subprocess::Signal(int signal) {
  if (!exit_code_.has_value()) kill(pid_, signal);
}

bool Subprocess::Running() { return !WaitForExit(absl::ZeroDuration()).has_value(); }

std::optional<int> Subprocess::WaitForExit(absl::Duration timeout) {
  if (exit_code_.has_value()) return exit_code_;
  WaitUntil(
      [this] {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      },
      absl::Now() + timeout, absl::Milliseconds(5));
  return exit_code_;
}

std::string LogValue(const std::string& line, const std::string& key) {
  const std::string needle = absl::StrCat(" ", key, "=");
  const size_t at = line.find(needle);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  const size_t end = line.find(' ', start);
  return line.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace wake::testing
