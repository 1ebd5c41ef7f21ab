#include "common/sync/electric/curl_http_client.h"

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace wake::sync {
namespace {

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  static_cast<HttpResponse*>(user)->body.append(data, size * count);
  return size * count;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  absl::string_view line(data, size * count);
  if (absl::StartsWith(line, "HTTP/")) {
    response->headers.clear();  // A new response (e.g. after "100 Continue").
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    response->headers[name] = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * count;
}

long Millis(absl::Duration d) {
  return static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

}  // namespace

CurlHttpClient::CurlHttpClient(absl::Duration connect_timeout) : connect_timeout_(connect_timeout) {
  GlobalInitOnce();
  multi_ = curl_multi_init();
  easy_ = curl_easy_init();
}

CurlHttpClient::~CurlHttpClient() {
  if (easy_ != nullptr) curl_easy_cleanup(easy_);
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
}

void CurlHttpClient::Wakeup() {
  if (multi_ != nullptr) curl_multi_wakeup(multi_);
}

absl::StatusOr<HttpResponse> CurlHttpClient::Get(const std::string& url, absl::Duration timeout,
                                                 const std::function<bool()>& should_abort) {
  if (multi_ == nullptr || easy_ == nullptr) {
    return absl::UnavailableError("libcurl could not be initialised");
  }
  if (should_abort && should_abort()) return absl::CancelledError("request abandoned");

  HttpResponse response;
  error_[0] = '\0';
  curl_easy_reset(easy_);  // Keeps the connection cache, clears the options.
  curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy_, CURLOPT_ACCEPT_ENCODING, "");  // Whatever libcurl can decode.
  curl_easy_setopt(easy_, CURLOPT_USERAGENT, "wakeline-electric/1");
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, Millis(timeout));
  curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS, Millis(std::min(timeout, connect_timeout_)));
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &response);

  if (CURLMcode mc = curl_multi_add_handle(multi_, easy_); mc != CURLM_OK) {
    return absl::UnavailableError(absl::StrCat("libcurl: ", curl_multi_strerror(mc)));
  }
  CURLcode result = CURLE_OK;
  bool done = false;
  absl::Status failure;
  while (!done) {
    int running = 0;
    if (CURLMcode mc = curl_multi_perform(multi_, &running); mc != CURLM_OK) {
      failure = absl::UnavailableError(absl::StrCat("libcurl: ", curl_multi_strerror(mc)));
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy_) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done) break;
    if (should_abort && should_abort()) {
      failure = absl::CancelledError("request abandoned");
      break;
    }
    if (CURLMcode mc = curl_multi_poll(multi_, nullptr, 0, 1000, nullptr); mc != CURLM_OK) {
      failure = absl::UnavailableError(absl::StrCat("libcurl: ", curl_multi_strerror(mc)));
      break;
    }
  }
  curl_multi_remove_handle(multi_, easy_);
  if (!failure.ok()) return failure;

  if (result != CURLE_OK) {
    const std::string detail =
        error_[0] != '\0' ? std::string(error_) : std::string(curl_easy_strerror(result));
    if (result == CURLE_OPERATION_TIMEDOUT) {
      return absl::DeadlineExceededError(
          absl::StrCat("no response within ", absl::FormatDuration(timeout), ": ", detail));
    }
    return absl::UnavailableError(detail);
  }
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  return response;
}

}  // namespace wake::sync
