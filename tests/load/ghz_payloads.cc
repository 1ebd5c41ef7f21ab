// Writes request messages for ghz's --binary-file: COUNT messages of one
// wake.v1 request type, each length-prefixed (the "count-delimited" form ghz
// reads), made from a JSON template in which every "{{.RequestNumber}}" is
// replaced by the message's index. ghz then sends message i % COUNT as call
// i, so the load test gets a distinct row per call without ghz rendering a
// template and parsing JSON on every call (which cost it more CPU per call
// than the registry spends serving one).
//   ghz_payloads --type=wake.v1.RegisterWakeRequest --count=50000
//     --json='{"subscriber_url":"/p-{{.RequestNumber}}",...}' --out=FILE
//   (one command line)
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "google/protobuf/util/json_util.h"
#include "wake/v1/registry.pb.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "ghz_payloads: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Links the wake.v1 registry messages into the generated pool.
  (void)wake::v1::RegisterWakeRequest::descriptor();
  std::string type;
  std::string json;
  std::string out;
  int64_t count = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (!absl::StartsWith(arg, "--") || eq == std::string::npos) {
      return Fail(absl::StrCat("unexpected argument '", arg, "'"));
    }
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    if (name == "type") {
      type = value;
    } else if (name == "json") {
      json = value;
    } else if (name == "out") {
      out = value;
    } else if (name == "count") {
      if (!absl::SimpleAtoi(value, &count) || count < 1) return Fail("--count must be >= 1");
    } else {
      return Fail(absl::StrCat("unknown flag --", name));
    }
  }
  if (type.empty() || json.empty() || out.empty() || count == 0) {
    return Fail("usage: ghz_payloads --type=wake.v1.X --json=TEMPLATE --count=N --out=FILE");
  }
  const google::protobuf::Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (descriptor == nullptr) return Fail(absl::StrCat("unknown message type ", type));
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> message(factory.GetPrototype(descriptor)->New());

  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  if (!file) return Fail(absl::StrCat("cannot write ", out));
  {
    google::protobuf::io::OstreamOutputStream raw(&file);
    google::protobuf::io::CodedOutputStream coded(&raw);
    std::string bytes;
    for (int64_t n = 0; n < count; ++n) {
      const std::string text = absl::StrReplaceAll(json, {{"{{.RequestNumber}}", absl::StrCat(n)}});
      message->Clear();
      const auto status = google::protobuf::util::JsonStringToMessage(text, message.get());
      if (!status.ok()) return Fail(absl::StrCat("bad --json: ", status.ToString()));
      bytes.clear();
      message->SerializeToString(&bytes);
      coded.WriteVarint32(static_cast<uint32_t>(bytes.size()));
      coded.WriteString(bytes);
    }
  }
  file.close();
  if (!file) return Fail(absl::StrCat("writing ", out, " failed"));
  return 0;
}
