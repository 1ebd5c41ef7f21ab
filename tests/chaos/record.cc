#include "tests/chaos/record.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace wake::chaos {
namespace {

// Escapes the characters that separate fields ('\t'), wakes (' ') and a
// wake's parts (','), line ends, and '%' itself.
std::string Escape(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    if (c == '%' || c == '\t' || c == ' ' || c == ',' || c == '\n' || c == '\r') {
      absl::StrAppend(&out, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool Unescape(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    int value = 0;
    if (i + 2 >= in.size() || !absl::SimpleHexAtoi(in.substr(i + 1, 2), &value)) return false;
    out->push_back(static_cast<char>(value));
    i += 2;
  }
  return true;
}

const char* KindName(RecordLine::Kind kind) {
  switch (kind) {
    case RecordLine::Kind::kStart:
      return "start";
    case RecordLine::Kind::kSessionOpen:
    case RecordLine::Kind::kSessionClosed:
      return "session";
    case RecordLine::Kind::kClaim:
      return "claim";
    case RecordLine::Kind::kHold:
      return "hold";
    case RecordLine::Kind::kAckSent:
      return "ack_sent";
    case RecordLine::Kind::kAck:
      return "ack";
  }
  return "?";
}

absl::Status Malformed(const std::string& line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("record line (", why, "): ", line));
}

}  // namespace

std::string FormatLine(const RecordLine& line) {
  std::string out = absl::StrCat(KindName(line.kind), "\t", absl::ToUnixMicros(line.at));
  switch (line.kind) {
    case RecordLine::Kind::kStart:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\t", line.pid);
      break;
    case RecordLine::Kind::kSessionOpen:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\topen");
      break;
    case RecordLine::Kind::kSessionClosed:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\tclosed\t", line.code);
      break;
    case RecordLine::Kind::kClaim: {
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\t", Escape(line.claim_token), "\t",
                      Escape(line.stream), "\t", line.wakes.size(), "\t");
      std::vector<std::string> wakes;
      for (const RecordedWake& wake : line.wakes) {
        wakes.push_back(
            absl::StrCat(wake.id, ",", wake.registration_id, ",", Escape(wake.source_event_key)));
      }
      absl::StrAppend(&out, absl::StrJoin(wakes, " "));
      break;
    }
    case RecordLine::Kind::kHold:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\t", Escape(line.claim_token));
      break;
    case RecordLine::Kind::kAckSent:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\t", Escape(line.claim_token), "\t",
                      line.attempt);
      break;
    case RecordLine::Kind::kAck:
      absl::StrAppend(&out, "\t", Escape(line.session_id), "\t", Escape(line.claim_token), "\t",
                      line.attempt, "\t", line.code, "\t", line.acked);
      break;
  }
  return out;
}

absl::StatusOr<RecordLine> ParseLine(const std::string& text) {
  const std::vector<std::string> f = absl::StrSplit(text, '\t');
  if (f.size() < 3) return Malformed(text, "too few fields");
  RecordLine line;
  int64_t micros = 0;
  if (!absl::SimpleAtoi(f[1], &micros)) return Malformed(text, "time");
  line.at = absl::FromUnixMicros(micros);
  if (!Unescape(f[2], &line.session_id)) return Malformed(text, "escape");
  auto token = [&](size_t i) { return f.size() > i && Unescape(f[i], &line.claim_token); };
  const std::string& kind = f[0];
  if (kind == "start") {
    line.kind = RecordLine::Kind::kStart;
    if (f.size() != 4 || !absl::SimpleAtoi(f[3], &line.pid)) return Malformed(text, "start");
  } else if (kind == "session") {
    if (f.size() == 4 && f[3] == "open") {
      line.kind = RecordLine::Kind::kSessionOpen;
    } else if (f.size() == 5 && f[3] == "closed" && absl::SimpleAtoi(f[4], &line.code)) {
      line.kind = RecordLine::Kind::kSessionClosed;
    } else {
      return Malformed(text, "session");
    }
  } else if (kind == "claim") {
    line.kind = RecordLine::Kind::kClaim;
    size_t n = 0;
    if (f.size() != 7 || !token(3) || !Unescape(f[4], &line.stream) ||
        !absl::SimpleAtoi(f[5], &n)) {
      return Malformed(text, "claim");
    }
    for (absl::string_view part : absl::StrSplit(f[6], ' ', absl::SkipEmpty())) {
      const std::vector<absl::string_view> w = absl::StrSplit(part, ',');
      RecordedWake wake;
      if (w.size() != 3 || !absl::SimpleAtoi(w[0], &wake.id) ||
          !absl::SimpleAtoi(w[1], &wake.registration_id) ||
          !Unescape(w[2], &wake.source_event_key)) {
        return Malformed(text, "claim wake");
      }
      line.wakes.push_back(std::move(wake));
    }
    if (line.wakes.size() != n) return Malformed(text, "claim wake count");
  } else if (kind == "hold") {
    line.kind = RecordLine::Kind::kHold;
    if (f.size() != 4 || !token(3)) return Malformed(text, "hold");
  } else if (kind == "ack_sent") {
    line.kind = RecordLine::Kind::kAckSent;
    if (f.size() != 5 || !token(3) || !absl::SimpleAtoi(f[4], &line.attempt)) {
      return Malformed(text, "ack_sent");
    }
  } else if (kind == "ack") {
    line.kind = RecordLine::Kind::kAck;
    if (f.size() != 7 || !token(3) || !absl::SimpleAtoi(f[4], &line.attempt) ||
        !absl::SimpleAtoi(f[5], &line.code) || !absl::SimpleAtoi(f[6], &line.acked)) {
      return Malformed(text, "ack");
    }
  } else {
    return Malformed(text, "kind");
  }
  return line;
}

absl::StatusOr<std::unique_ptr<RecordWriter>> RecordWriter::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<RecordWriter>(new RecordWriter(fd));
}

RecordWriter::~RecordWriter() { close(fd_); }

void RecordWriter::Write(const std::string& line) {
  const std::string out = line + "\n";
  // One write per line: O_APPEND keeps lines of concurrent writers whole.
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = write(fd_, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void RecordWriter::Start(const std::string& runner_id, int64_t pid) {
  RecordLine line;
  line.kind = RecordLine::Kind::kStart;
  line.at = absl::Now();
  line.session_id = runner_id;
  line.pid = pid;
  Write(FormatLine(line));
}

void RecordWriter::SessionOpen(const std::string& session_id) {
  RecordLine line;
  line.kind = RecordLine::Kind::kSessionOpen;
  line.at = absl::Now();
  line.session_id = session_id;
  Write(FormatLine(line));
}

void RecordWriter::SessionClosed(const std::string& session_id, int code) {
  RecordLine line;
  line.kind = RecordLine::Kind::kSessionClosed;
  line.at = absl::Now();
  line.session_id = session_id;
  line.code = code;
  Write(FormatLine(line));
}

void RecordWriter::Claim(const std::string& session_id, const v1::WakeClaim& claim) {
  RecordLine line;
  line.kind = RecordLine::Kind::kClaim;
  line.at = absl::Now();
  line.session_id = session_id;
  line.claim_token = claim.claim_token();
  line.stream = claim.stream();
  for (const v1::Wake& wake : claim.wakes()) {
    line.wakes.push_back({wake.id(), wake.registration_id(), wake.source_event_key()});
  }
  Write(FormatLine(line));
}

void RecordWriter::Hold(const std::string& session_id, const std::string& claim_token) {
  RecordLine line;
  line.kind = RecordLine::Kind::kHold;
  line.at = absl::Now();
  line.session_id = session_id;
  line.claim_token = claim_token;
  Write(FormatLine(line));
}

void RecordWriter::AckSent(const std::string& session_id, const std::string& claim_token,
                           int attempt) {
  RecordLine line;
  line.kind = RecordLine::Kind::kAckSent;
  line.at = absl::Now();
  line.session_id = session_id;
  line.claim_token = claim_token;
  line.attempt = attempt;
  Write(FormatLine(line));
}

void RecordWriter::Ack(const std::string& session_id, const std::string& claim_token, int attempt,
                       int code, int64_t acked) {
  RecordLine line;
  line.kind = RecordLine::Kind::kAck;
  line.at = absl::Now();
  line.session_id = session_id;
  line.claim_token = claim_token;
  line.attempt = attempt;
  line.code = code;
  line.acked = acked;
  Write(FormatLine(line));
}

void RecordReader::Poll(const std::function<void(const RecordLine&)>& visit) {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return;  // Not written yet.
  in.seekg(offset_);
  std::string buffer((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0;
  for (size_t end = buffer.find('\n'); end != std::string::npos;
       start = end + 1, end = buffer.find('\n', start)) {
    absl::StatusOr<RecordLine> line = ParseLine(buffer.substr(start, end - start));
    if (line.ok()) {
      visit(*line);
    } else {
      ++malformed_;
    }
  }
  offset_ += static_cast<int64_t>(start);
}

}  // namespace wake::chaos
