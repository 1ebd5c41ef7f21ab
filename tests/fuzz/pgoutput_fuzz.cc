// Fuzzes the replication stream's decoders: CopyData framing (XLogData,
// keepalives) and pgoutput messages. Malformed input must be an error, never
// a crash or an out-of-bounds read.
#include <cstdint>

#include "common/sync/postgres/pgoutput.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  (void)wake::sync::pgoutput::ParseCopyMessage(input);
  (void)wake::sync::pgoutput::DecodeMessage(input);
  (void)wake::sync::pgoutput::ParseLsn(input);
  return 0;
}
