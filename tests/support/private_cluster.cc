#include "tests/support/private_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace wake::testing {
namespace {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

std::string PgBin() {
  const char* bin = std::getenv("WAKE_PG_BIN");
  return bin != nullptr ? bin : "/usr/lib/postgresql/15/bin";
}

std::string AsPgUser(const std::string& command) {
  if (geteuid() != 0) return command;
  // By absolute path: test actions run with Bazel's fixed PATH, without sbin.
  const char* runuser = access("/usr/sbin/runuser", X_OK) == 0 ? "/usr/sbin/runuser" : "/sbin/runuser";
  return absl::StrCat(runuser, " -u postgres -- ", command);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateCluster>> PrivateCluster::Create() {
  char tmpl[] = "/tmp/wakeline-private-pg.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  const std::string root = tmpl;
  std::unique_ptr<PrivateCluster> cluster(new PrivateCluster(root + "/data", FreePort()));
  const std::string setup = absl::StrCat(
      "chmod 755 ", root, geteuid() == 0 ? absl::StrCat(" && chown postgres ", root) : "",
      " && ", AsPgUser(absl::StrCat(PgBin(), "/initdb -D ", cluster->dir_,
                                    " -U postgres --auth=trust --no-locale >/dev/null")),
      " && printf \"listen_addresses='127.0.0.1'\\nunix_socket_directories='", cluster->dir_,
      "'\\n"
      "wal_level=logical\\nmax_wal_senders=20\\nmax_replication_slots=20\\n\" >> ",
      cluster->dir_, "/postgresql.conf");
  if (absl::Status s = cluster->Run(setup); !s.ok()) return s;
  if (absl::Status s = cluster->Start(); !s.ok()) return s;
  return cluster;
}

PrivateCluster::~PrivateCluster() {
  Stop().IgnoreError();
  Run(absl::StrCat("rm -rf ", dir_.substr(0, dir_.rfind('/')))).IgnoreError();
}

absl::Status PrivateCluster::Run(const std::string& command) const {
  const int rc = std::system(command.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("command failed (", rc, "): ", command));
  return absl::OkStatus();
}

absl::Status PrivateCluster::Start() {
  return Run(AsPgUser(absl::StrCat(PgBin(), "/pg_ctl -D ", dir_, " -l ", dir_,
                                   "/server.log -o \"-p ", port_, "\" -w -t 60 start >/dev/null")));
}

absl::Status PrivateCluster::Stop() {
  return Run(AsPgUser(
      absl::StrCat(PgBin(), "/pg_ctl -D ", dir_, " -m fast -w -t 60 stop >/dev/null 2>&1")));
}

std::string PrivateCluster::url() const {
  return absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/postgres");
}

std::string PrivateCluster::socket_url() const {
  return absl::StrCat("postgresql://postgres@/postgres?host=", dir_, "&port=", port_);
}

}  // namespace wake::testing
