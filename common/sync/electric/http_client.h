// A minimal HTTP GET client interface for the Electric shape client, so the
// protocol code does not depend on libcurl and tests can substitute a fake.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace wake::sync {

struct HttpResponse {
  int status = 0;
  // Header names lower-cased; the last value wins.
  std::map<std::string, std::string> headers;
  std::string body;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;

  // GETs `url` (one request at a time per client). Any HTTP status is a
  // response, not an error. Errors: UNAVAILABLE (connection or transfer
  // failure), DEADLINE_EXCEEDED (`timeout` passed), CANCELLED (`should_abort`
  // returned true; it is checked when the request starts, after Wakeup() and
  // at least once a second).
  virtual absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration timeout,
                                           const std::function<bool()>& should_abort) = 0;

  // Makes an in-flight Get() re-check `should_abort` now. Thread-safe; a
  // wakeup with no request in flight only makes the next check early.
  virtual void Wakeup() = 0;
};

using HttpClientPtr = std::unique_ptr<HttpClient>;

}  // namespace wake::sync
