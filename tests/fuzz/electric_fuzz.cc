// Fuzzes the Electric source's parsers through their public functions: a
// shape response (status, headers, JSON body) and the values of its rows.
// Input: 2 bytes of status, header lines "name: value" up to an empty line,
// then the body.
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/sync/electric/electric_shape_client.h"
#include "common/sync/electric/electric_values.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wake::sync;  // NOLINT: a fuzz target.
  if (size < 2) return 0;
  HttpResponse http;
  http.status = 100 + (data[0] << 8 | data[1]) % 500;
  absl::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    const absl::string_view line = rest.substr(0, end);
    rest = end == absl::string_view::npos ? absl::string_view() : rest.substr(end + 1);
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    http.headers[absl::AsciiStrToLower(line.substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  http.body = std::string(rest);
  (void)ElectricShapeClient::Interpret(http, "fuzz");
  const nlohmann::json value = nlohmann::json::parse(http.body, nullptr, false);
  if (!value.is_discarded()) {
    (void)RegistrationFromShapeValue(value, true);
    (void)RegistrationFromShapeValue(value, false);
    (void)WakeRowFromShapeValue(value, true);
  }
  (void)ParsePgTimestamptz(http.body);
  (void)ParsePgInt8(http.body);
  (void)ParsePgBool(http.body);
  return 0;
}
