#include "tests/electric/scripted_electric_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace wake::testing {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

CannedResponse BadRequest(const std::string& field, const std::string& problem) {
  CannedResponse r;
  r.status = 400;
  r.body = nlohmann::json{{"message", "Invalid request"},
                          {"errors", {{field, nlohmann::json::array({problem})}}}}
               .dump();
  return r;
}

std::string OffsetAt(size_t position) { return absl::StrCat(position, "_0"); }

}  // namespace

nlohmann::json ShapeChangeMessage(const std::string& table, const std::string& operation,
                                  const nlohmann::json& value, const std::vector<int64_t>& txids,
                                  std::optional<bool> last) {
  nlohmann::json headers = {{"operation", operation}};
  if (!txids.empty()) {
    nlohmann::json list = nlohmann::json::array();
    for (int64_t txid : txids) list.push_back(std::to_string(txid));
    headers["txids"] = list;
  }
  if (last.has_value()) headers["last"] = *last;
  const std::string id = value.at("id").is_string() ? value.at("id").get<std::string>()
                                                    : value.at("id").dump();
  return {{"headers", headers},
          {"key", absl::StrCat("\"public\".\"", table, "\"/\"", id, "\"")},
          {"value", value}};
}

absl::StatusOr<std::unique_ptr<ScriptedElectricServer>> ScriptedElectricServer::Start(
    Options options) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string error = std::strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("bind/listen on 127.0.0.1:0: ", error));
  }
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    close(fd);
    return absl::InternalError("pipe failed");
  }
  return std::unique_ptr<ScriptedElectricServer>(new ScriptedElectricServer(
      options, fd, ntohs(addr.sin_port), pipe_fds[0], pipe_fds[1]));
}

ScriptedElectricServer::ScriptedElectricServer(Options options, int listen_fd, int port,
                                               int wake_read, int wake_write)
    : options_(options),
      listen_fd_(listen_fd),
      port_(port),
      wake_read_(wake_read),
      wake_write_(wake_write) {
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

ScriptedElectricServer::~ScriptedElectricServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int fd : connections_) shutdown(fd, SHUT_RDWR);
  }
  const char byte = 'x';
  (void)!write(wake_write_, &byte, 1);
  accept_thread_.join();
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
}

std::string ScriptedElectricServer::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

void ScriptedElectricServer::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    connections_.insert(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void ScriptedElectricServer::Serve(int fd) {
  std::string buffer;
  for (;;) {
    size_t end;
    bool closed = false;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      char chunk[4096];
      ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        closed = true;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (closed) break;
    const std::string head = buffer.substr(0, end);
    buffer.erase(0, end + 4);

    ShapeRequest request;
    std::vector<std::string> line =
        absl::StrSplit(head.substr(0, head.find("\r\n")), ' ', absl::SkipEmpty());
    if (line.size() < 2) break;
    request.method = line[0];
    request.target = line[1];
    const size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) {
      for (absl::string_view pair :
           absl::StrSplit(absl::string_view(request.target).substr(question + 1), '&',
                          absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        request.query[UrlDecode(pair.substr(0, eq))] =
            eq == absl::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1));
      }
    }
    CannedResponse response = Handle(std::move(request));
    std::string out = absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                                   "\r\nContent-Type: application/json\r\nContent-Length: ",
                                   response.body.size(), "\r\n");
    for (const auto& [name, value] : response.headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
    absl::StrAppend(&out, "\r\n", response.body);
    if (!SendAll(fd, out)) break;
  }
  absl::MutexLock lock(&mu_);
  connections_.erase(fd);
  close(fd);
}

CannedResponse ScriptedElectricServer::Handle(ShapeRequest request) {
  absl::MutexLock lock(&mu_);
  request.seq = static_cast<int>(requests_.size());
  requests_.push_back(request);
  const int seq = request.seq;

  std::optional<Interceptor> interceptor;
  for (auto it = interceptors_.begin(); it != interceptors_.end(); ++it) {
    if (it->match(request)) {
      interceptor = *it;
      if (it->times > 0 && --it->times == 0) interceptors_.erase(it);
      break;
    }
  }
  if (interceptor.has_value() && interceptor->hold) {
    const uint64_t releases = releases_;
    auto released = [this, releases]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || releases_ != releases;
    };
    mu_.Await(absl::Condition(&released));
  }
  CannedResponse response = interceptor.has_value() && interceptor->response.has_value()
                                ? *interceptor->response
                                : ServeShapeLocked(request);
  requests_[seq].status = response.status;
  return response;
}

uint64_t ScriptedElectricServer::GlobalLsnLocked() {
  return lsn_source_ ? lsn_source_() : global_lsn_;
}

CannedResponse ScriptedElectricServer::ServeShapeLocked(const ShapeRequest& request) {
  if (request.method != "GET" || request.path != "/v1/shape") {
    CannedResponse r;
    r.status = 404;
    r.body = R"({"message":"Not found"})";
    return r;
  }
  const std::string table = request.table();
  if (table.empty()) return BadRequest("table", "can't be blank");
  if (shapes_.count(table) == 0) {
    return BadRequest("table", absl::StrCat("Table \"public\".\"", table, "\" does not exist."));
  }
  if (!request.Has("offset")) return BadRequest("offset", "can't be blank");

  auto conflict = [&](const Shape& shape) {
    CannedResponse r;
    r.status = 409;
    r.headers = {{"electric-handle", shape.handle}};
    r.body = R"([{"headers":{"control":"must-refetch"}}])";
    return r;
  };
  const std::string offset = request.Param("offset");
  size_t start = 0;
  if (offset != "-1") {
    const Shape& shape = shapes_[table];
    if (request.Param("handle") != shape.handle) return conflict(shape);
    std::vector<std::string> parts = absl::StrSplit(offset, '_');
    uint64_t position = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &position) ||
        position > shape.log.size()) {
      return BadRequest("offset", "has invalid format");
    }
    start = static_cast<size_t>(position);
  }
  const bool live = request.live();
  if (live && offset == "-1") return BadRequest("live", "can't be true with offset -1");

  if (live && start == shapes_[table].log.size()) {
    const std::string handle = shapes_[table].handle;
    const uint64_t version = shapes_[table].version;
    auto changed = [this, &table, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || shapes_[table].version != version;
    };
    mu_.AwaitWithTimeout(absl::Condition(&changed), options_.live_hold);
    if (shapes_[table].handle != handle) return conflict(shapes_[table]);
  }

  const Shape& shape = shapes_[table];
  const size_t end = std::min(shape.log.size(), start + options_.page_size);
  nlohmann::json body = nlohmann::json::array();
  for (size_t i = start; i < end; ++i) body.push_back(shape.log[i]);
  CannedResponse r;
  r.status = 200;
  r.headers = {{"electric-handle", shape.handle},
               {"electric-offset", OffsetAt(end)},
               {"cache-control", live ? "public, max-age=5" : "public, max-age=60"},
               {"etag", absl::StrCat(shape.handle, ":", offset, ":", OffsetAt(end))}};
  if (live) {
    r.headers.emplace_back("electric-cursor", std::to_string(++cursor_));
  } else {
    r.headers.emplace_back("electric-schema", R"({"id":{"type":"int8","pk_index":0}})");
  }
  if (end == shape.log.size()) {
    body.push_back({{"headers",
                     {{"control", "up-to-date"},
                      {"global_last_seen_lsn", std::to_string(GlobalLsnLocked())}}}});
    r.headers.emplace_back("electric-up-to-date", "");
  }
  r.body = body.dump();
  return r;
}

void ScriptedElectricServer::CreateShape(const std::string& table, const std::string& handle) {
  absl::MutexLock lock(&mu_);
  shapes_[table] = Shape{handle, {}, shapes_[table].version + 1};
}

void ScriptedElectricServer::Append(const std::string& table,
                                    std::vector<nlohmann::json> messages) {
  Ingest(table, [&] { return std::move(messages); });
}

void ScriptedElectricServer::Ingest(
    const std::string& table, const std::function<std::vector<nlohmann::json>()>& produce) {
  absl::MutexLock lock(&mu_);
  std::vector<nlohmann::json> messages = produce();
  Shape& shape = shapes_[table];
  for (nlohmann::json& m : messages) shape.log.push_back(std::move(m));
  ++shape.version;
}

void ScriptedElectricServer::Rotate(const std::string& table, const std::string& handle,
                                    std::vector<nlohmann::json> log) {
  absl::MutexLock lock(&mu_);
  shapes_[table] = Shape{handle, std::move(log), shapes_[table].version + 1};
}

std::string ScriptedElectricServer::Handle(const std::string& table) {
  absl::MutexLock lock(&mu_);
  return shapes_[table].handle;
}

void ScriptedElectricServer::SetGlobalLsn(uint64_t lsn) {
  absl::MutexLock lock(&mu_);
  global_lsn_ = lsn;
}

void ScriptedElectricServer::SetGlobalLsnSource(std::function<uint64_t()> source) {
  absl::MutexLock lock(&mu_);
  lsn_source_ = std::move(source);
}

void ScriptedElectricServer::Inject(RequestMatcher match, CannedResponse response, int times) {
  absl::MutexLock lock(&mu_);
  interceptors_.push_back({std::move(match), std::move(response), /*hold=*/false, times});
}

void ScriptedElectricServer::Hold(RequestMatcher match, std::optional<CannedResponse> response) {
  absl::MutexLock lock(&mu_);
  interceptors_.push_back({std::move(match), std::move(response), /*hold=*/true, 1});
}

void ScriptedElectricServer::ReleaseHeld() {
  absl::MutexLock lock(&mu_);
  ++releases_;
}

std::vector<ShapeRequest> ScriptedElectricServer::Requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

size_t ScriptedElectricServer::Count(const RequestMatcher& match) {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const ShapeRequest& r : requests_) n += match(r) ? 1 : 0;
  return n;
}

bool ScriptedElectricServer::WaitForRequests(const RequestMatcher& match, size_t count,
                                             absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (const ShapeRequest& r : requests_) n += match(r) ? 1 : 0;
    return n >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

}  // namespace wake::testing
