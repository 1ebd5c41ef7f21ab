#include "tests/support/private_cluster.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"

namespace wake::testing {
namespace {

// Only names the socket file (.s.PGSQL.5432) inside the private directory.
constexpr int kPort = 5432;
// sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
constexpr size_t kMaxSocketPath = 107;
constexpr char kSocketFile[] = "/data/.s.PGSQL.5432.lock";

std::string PgBin() {
  const char* bin = std::getenv("WAKE_PG_BIN");
  return bin != nullptr ? bin : "/usr/lib/postgresql/15/bin";
}

std::string AsPgUser(const std::string& command) {
  if (geteuid() != 0) return command;
  // By absolute path: test actions run with Bazel's fixed PATH, without sbin.
  const char* runuser =
      access("/usr/sbin/runuser", X_OK) == 0 ? "/usr/sbin/runuser" : "/sbin/runuser";
  return absl::StrCat(runuser, " -u postgres -- ", command);
}

// As root the server runs as 'postgres', which must be able to enter every
// directory on the way (TEST_TMPDIR lies under /root, which it cannot).
bool ServerCanReach(const std::string& dir) {
  if (geteuid() != 0) return true;
  for (size_t end = dir.size(); end != std::string::npos && end > 0;
       end = dir.rfind('/', end - 1)) {
    struct stat info;
    if (stat(dir.substr(0, end).c_str(), &info) != 0 || (info.st_mode & S_IXOTH) == 0) {
      return false;
    }
  }
  return true;
}

// Where the cluster's directory goes: TEST_TMPDIR when it can, else /tmp.
std::string ParentDirectory() {
  const char* test_tmpdir = std::getenv("TEST_TMPDIR");
  // mkdtemp's suffix adds "/wakeline-pg.XXXXXX".
  if (test_tmpdir != nullptr &&
      std::string(test_tmpdir).size() + 19 + sizeof(kSocketFile) - 1 <= kMaxSocketPath &&
      ServerCanReach(test_tmpdir)) {
    return test_tmpdir;
  }
  return "/tmp";
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateCluster>> PrivateCluster::Create() {
  std::string tmpl = ParentDirectory() + "/wakeline-pg.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<PrivateCluster> cluster(new PrivateCluster(tmpl));
  const std::string data = cluster->data_dir();
  // No TCP listener at all: the socket in the data directory is the only way in.
  const std::string setup = absl::StrCat(
      "chmod 755 ", tmpl, geteuid() == 0 ? absl::StrCat(" && chown postgres ", tmpl) : "", " && ",
      AsPgUser(absl::StrCat(PgBin(), "/initdb -D ", data,
                            " -U postgres --auth=trust --no-locale >/dev/null")),
      " && printf \"listen_addresses=''\\nunix_socket_directories='", data, "'\\nport=", kPort,
      "\\nwal_level=logical\\nmax_wal_senders=20\\nmax_replication_slots=20\\n\" >> ", data,
      "/postgresql.conf");
  if (absl::Status s = cluster->Run(setup); !s.ok()) return s;
  if (absl::Status s = cluster->Start(); !s.ok()) return s;
  return cluster;
}

PrivateCluster::~PrivateCluster() {
  Stop().IgnoreError();
  Run(absl::StrCat("rm -rf ", root_)).IgnoreError();
}

absl::Status PrivateCluster::Run(const std::string& command) const {
  const int rc = std::system(command.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("command failed (", rc, "): ", command));
  return absl::OkStatus();
}

absl::Status PrivateCluster::Start() {
  return Run(AsPgUser(absl::StrCat(PgBin(), "/pg_ctl -D ", data_dir(), " -l ", data_dir(),
                                   "/server.log -w -t 60 start >/dev/null")));
}

absl::Status PrivateCluster::Stop() {
  return Run(AsPgUser(
      absl::StrCat(PgBin(), "/pg_ctl -D ", data_dir(), " -m fast -w -t 60 stop >/dev/null 2>&1")));
}

std::string PrivateCluster::url() const {
  return absl::StrCat("postgresql://postgres@/postgres?host=", data_dir(), "&port=", kPort);
}

}  // namespace wake::testing
