#include "runtime-service/runner_pool.h"

#include <algorithm>

#include "absl/strings/match.h"

namespace wake::runtime {

SessionId RunnerPool::Add(const RunnerSpec& spec, ClaimSinkPtr sink) {
  const SessionId id = next_id_++;
  Session& session = sessions_[id];
  session.spec = spec;
  session.sink = std::move(sink);
  current_[spec.runner_id] = id;
  rings_[spec.tenant_id].sessions.push_back(id);
  return id;
}

std::optional<RunnerPool::Session> RunnerPool::Remove(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  Session session = std::move(it->second);
  sessions_.erase(it);
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
  return std::max(0, session->spec.max_in_flight - static_cast<int>(session->claims.size()));
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

void RunnerPool::AddClaim(SessionId id, const StreamKey& key) {
  sessions_.at(id).claims.insert(key);
}

void RunnerPool::RemoveClaim(SessionId id, const StreamKey& key) {
  if (Session* session = Find(id)) session->claims.erase(key);
}

}  // namespace wake::runtime
