// HttpClient over libcurl's multi interface: one reusable connection, and a
// wakeup pipe (curl_multi_wakeup) so a long poll can be abandoned at once.
#pragma once

#include <curl/curl.h>

#include "absl/time/time.h"
#include "common/sync/electric/http_client.h"

namespace wake::sync {

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(absl::Duration connect_timeout = absl::Seconds(10));
  ~CurlHttpClient() override;

  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  absl::StatusOr<HttpResponse> Get(const std::string& url, absl::Duration timeout,
                                   const std::function<bool()>& should_abort) override;
  void Wakeup() override;

 private:
  const absl::Duration connect_timeout_;
  CURLM* multi_ = nullptr;
  CURL* easy_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
};

}  // namespace wake::sync
