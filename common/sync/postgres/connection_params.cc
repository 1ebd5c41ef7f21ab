#include "common/sync/postgres/connection_params.h"

#include "absl/strings/str_cat.h"

namespace wake::sync {
namespace {

// Row formats that rows.h parses; appended to any options in the URL.
constexpr char kSessionOptions[] = "-c datestyle=ISO -c timezone=UTC -c intervalstyle=postgres";

}  // namespace

absl::StatusOr<PqConnection::Params> SyncConnectionParams(const std::string& url,
                                                          bool replication) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (parsed == nullptr) {
    std::string why = error != nullptr ? error : "unparseable";
    if (error != nullptr) PQfreemem(error);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return absl::InvalidArgumentError(
        absl::StrCat("postgres sync: not a valid PostgreSQL connection string: ", why));
  }
  PqConnection::Params params;
  std::string options;
  bool has_application_name = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const std::string key = o->keyword;
    if (key == "options") {
      options = o->val;
    } else if (key != "replication") {
      has_application_name |= key == "application_name";
      params.emplace_back(key, o->val);
    }
  }
  PQconninfoFree(parsed);
  params.emplace_back(
      "options", options.empty() ? kSessionOptions : absl::StrCat(options, " ", kSessionOptions));
  if (!has_application_name) params.emplace_back("application_name", "wakeline-sync");
  if (replication) params.emplace_back("replication", "database");
  return params;
}

}  // namespace wake::sync
