#include "tests/chaos/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace wake::chaos {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// Close with an RST rather than a FIN: what a peer sees when a link is cut.
void Reset(int fd) {
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  close(fd);
}

int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr = Loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(int target_port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = Loopback(0);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    const std::string error = std::strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("proxy listen: ", error));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<TcpProxy> proxy(new TcpProxy(fd, ntohs(addr.sin_port), target_port));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

TcpProxy::~TcpProxy() {
  stopping_.store(true);
  shutdown(listen_fd_, SHUT_RDWR);  // Wakes accept().
  acceptor_.join();
  close(listen_fd_);
  absl::MutexLock lock(&mu_);
  for (auto& connection : connections_) Drop(*connection);
  for (auto& connection : connections_) {
    connection->up.join();
    connection->down.join();
    close(connection->client_fd);
    close(connection->server_fd);
  }
  connections_.clear();
}

void TcpProxy::AcceptLoop() {
  while (!stopping_.load()) {
    const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (stopping_.load()) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      ReapLocked();
      if (cut_) {
        Reset(client);
        continue;
      }
    }
    const int server = ConnectTo(target_port_);
    if (server < 0) {  // The registry is down: the runtime sees what it would see without us.
      Reset(client);
      continue;
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    absl::MutexLock lock(&mu_);
    if (cut_) {  // Cut while we connected.
      Reset(client);
      Reset(server);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->client_fd = client;
    connection->server_fd = server;
    Connection* c = connection.get();
    c->up = std::thread([this, c] { Pump(c, c->client_fd, c->server_fd); });
    c->down = std::thread([this, c] { Pump(c, c->server_fd, c->client_fd); });
    connections_.push_back(std::move(connection));
    forwarded_.fetch_add(1);
  }
}

void TcpProxy::Pump(Connection* connection, int from, int to) {
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = read(from, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t written = 0;
    while (written < n) {
      // MSG_NOSIGNAL: a peer gone mid-write must not SIGPIPE the driver.
      const ssize_t w = send(to, buffer + written, static_cast<size_t>(n - written), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      written += w;
    }
    if (written < n) break;
  }
  // Either side gone: the whole connection goes (gRPC never half-closes).
  // The fds are closed only after both threads are joined (no fd reuse race).
  shutdown(from, SHUT_RDWR);
  shutdown(to, SHUT_RDWR);
  connection->open_directions.fetch_sub(1);
}

void TcpProxy::Drop(Connection& connection) {
  linger hard{1, 0};
  setsockopt(connection.client_fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  setsockopt(connection.server_fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  shutdown(connection.client_fd, SHUT_RDWR);
  shutdown(connection.server_fd, SHUT_RDWR);
}

void TcpProxy::ReapLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = **it;
    if (connection.open_directions.load() > 0) {
      ++it;
      continue;
    }
    connection.up.join();
    connection.down.join();
    close(connection.client_fd);
    close(connection.server_fd);
    it = connections_.erase(it);
  }
}

int TcpProxy::Cut() {
  absl::MutexLock lock(&mu_);
  cut_ = true;
  int dropped = 0;
  for (auto& connection : connections_) {
    if (connection->open_directions.load() == 0) continue;
    Drop(*connection);
    ++dropped;
  }
  ReapLocked();
  return dropped;
}

void TcpProxy::Restore() {
  absl::MutexLock lock(&mu_);
  cut_ = false;
}

}  // namespace wake::chaos
