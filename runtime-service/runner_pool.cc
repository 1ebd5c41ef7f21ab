#include "runtime-service/runner_pool.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace wake::runtime {

absl::Status RunnerPool::CheckNotSuperseded(const RunnerSpec& spec) const {
  auto it = history_.find(spec.runner_id);
  if (it == history_.end() || !it->second.superseded_set.contains(spec.session_id)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("session_id: session \"", spec.session_id, "\" of runner \"", spec.runner_id,
                   "\" was superseded by a newer session (\"", it->second.last_session,
                   "\") and cannot connect again"));
}

void RunnerPool::RecordSession(const RunnerSpec& spec) {
  RunnerHistory& history = history_[spec.runner_id];
  if (history.touched != 0) history_lru_.erase({history.touched, spec.runner_id});
  history.touched = next_touch_++;
  history_lru_.emplace(history.touched, spec.runner_id);
  if (!history.last_session.empty() && history.last_session != spec.session_id &&
      history.superseded_set.insert(history.last_session).second) {
    history.superseded.push_back(history.last_session);
    ++superseded_total_;
    if (history.superseded.size() > superseded_per_runner_) {
      history.superseded_set.erase(history.superseded.front());
      history.superseded.pop_front();
      --superseded_total_;
    }
  }
  history.last_session = spec.session_id;
  // Forget the least recently connected runners (never the one just seen).
  while ((superseded_total_ > superseded_kept_ || history_.size() > superseded_kept_) &&
         history_lru_.size() > 1) {
    auto oldest = history_lru_.begin();
    auto it = history_.find(oldest->second);
    superseded_total_ -= it->second.superseded.size();
    history_.erase(it);
    history_lru_.erase(oldest);
  }
}

SessionId RunnerPool::Add(const RunnerSpec& spec, ClaimSinkPtr sink) {
  RecordSession(spec);
  const SessionId id = next_id_++;
  Session& session = sessions_[id];
  session.spec = spec;
  session.sink = std::move(sink);
  current_[spec.runner_id] = id;
  rings_[spec.tenant_id].sessions.push_back(id);
  grown_.insert(id);
  return id;
}

std::optional<RunnerPool::Session> RunnerPool::Remove(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  Session session = std::move(it->second);
  sessions_.erase(it);
  grown_.erase(id);
  if (auto cur = current_.find(session.spec.runner_id);
      cur != current_.end() && cur->second == id) {
    current_.erase(cur);
  }
  if (auto ring_it = rings_.find(session.spec.tenant_id); ring_it != rings_.end()) {
    TenantRing& ring = ring_it->second;
    auto pos = std::find(ring.sessions.begin(), ring.sessions.end(), id);
    if (pos != ring.sessions.end()) {
      const size_t index = pos - ring.sessions.begin();
      ring.sessions.erase(pos);
      if (index < ring.next) --ring.next;
      if (ring.next >= ring.sessions.size()) ring.next = 0;
    }
    if (ring.sessions.empty()) rings_.erase(ring_it);
  }
  return session;
}

RunnerPool::Session* RunnerPool::Find(SessionId id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

const RunnerPool::Session* RunnerPool::Find(SessionId id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

SessionId RunnerPool::CurrentOf(const std::string& runner_id) const {
  auto it = current_.find(runner_id);
  return it == current_.end() ? 0 : it->second;
}

bool RunnerPool::Serves(const Session& session, const StreamKey& key) const {
  if (session.spec.tenant_id != key.first) return false;
  const std::vector<std::string>& prefixes = session.spec.stream_prefixes;
  return prefixes.empty() ||
         std::any_of(prefixes.begin(), prefixes.end(), [&key](const std::string& prefix) {
           return absl::StartsWith(key.second, prefix);
         });
}

int RunnerPool::Room(SessionId id) const {
  const Session* session = Find(id);
  if (session == nullptr) return 0;
  return std::max(0, session->spec.max_in_flight - static_cast<int>(session->claims.size()) -
                         session->reserved);
}

SessionId RunnerPool::Pick(const StreamKey& key) {
  auto ring_it = rings_.find(key.first);
  if (ring_it == rings_.end()) return 0;
  TenantRing& ring = ring_it->second;
  const size_t n = ring.sessions.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t index = (ring.next + i) % n;
    const SessionId id = ring.sessions[index];
    if (Room(id) <= 0 || !Serves(sessions_.at(id), key)) continue;
    ring.next = (index + 1) % n;
    return id;
  }
  return 0;
}

void RunnerPool::Reserve(SessionId id) { ++sessions_.at(id).reserved; }

void RunnerPool::Unreserve(SessionId id) {
  Session* session = Find(id);
  if (session == nullptr || session->reserved == 0) return;
  --session->reserved;
  grown_.insert(id);
}

void RunnerPool::AddClaim(SessionId id, const StreamKey& key) {
  sessions_.at(id).claims.insert(key);
}

void RunnerPool::RemoveClaim(SessionId id, const StreamKey& key) {
  Session* session = Find(id);
  if (session == nullptr || session->claims.erase(key) == 0) return;
  grown_.insert(id);
}

}  // namespace wake::runtime
