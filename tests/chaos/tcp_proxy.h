// A loopback TCP proxy the chaos driver puts between a runtime and its
// registry, so it can cut that connection: Cut() drops every connection and
// resets new ones until Restore(). Bytes are copied as they come (a thread
// per direction; a runtime keeps one or two connections open).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace wake::chaos {

class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a port the kernel picks) and forwards to
  // 127.0.0.1:target_port.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  // Closes everything and joins its threads.
  ~TcpProxy();

  int port() const { return port_; }
  // Drops every open connection; new ones are reset at once until Restore().
  // Returns how many connections were dropped.
  int Cut();
  void Restore();
  // Connections accepted and forwarded so far.
  int64_t forwarded() const { return forwarded_.load(); }

 private:
  struct Connection {
    int client_fd = -1;
    int server_fd = -1;
    std::thread up;
    std::thread down;
    std::atomic<int> open_directions{2};
  };

  TcpProxy(int listen_fd, int port, int target_port)
      : listen_fd_(listen_fd), port_(port), target_port_(target_port) {}
  void AcceptLoop();
  void Pump(Connection* connection, int from, int to);
  static void Drop(Connection& connection);
  // Joins and frees connections whose both directions ended.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int listen_fd_;
  const int port_;
  const int target_port_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> forwarded_{0};

  absl::Mutex mu_;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace wake::chaos
