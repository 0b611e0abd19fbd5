#include "append_batch.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

void AppendBatch::lock(EventLog &log, const std::vector<std::string> &session_ids) {
    std::vector<std::string> wanted;
    std::unordered_set<std::string> seen;
    for (const auto &id : session_ids)
        if (sessions_.count(id) == 0 && seen.insert(id).second) wanted.push_back(id);
    if (wanted.empty()) return;
    for (LockedSession &row : log.lock_sessions(wanted))
        sessions_[row.session_id] = SessionState{Lock::Locked, row.active, row.last_event_id};
    std::vector<std::string> unlocked;
    for (const auto &id : wanted)
        if (sessions_.count(id) == 0) unlocked.push_back(id);
    std::unordered_set<std::string> existing;
    for (auto &id : log.existing_sessions(unlocked)) existing.insert(std::move(id));
    for (const auto &id : unlocked) sessions_[id].lock = existing.count(id) ? Lock::Busy : Lock::Missing;
}

const AppendBatch::SessionState &AppendBatch::session(const std::string &session_id) const {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) throw std::logic_error("AppendBatch: session not locked first");
    return it->second;
}

int64_t AppendBatch::append(const std::string &session_id, const char *event_type, std::string payload_json) {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end() || it->second.lock != Lock::Locked)
        throw std::logic_error("AppendBatch: append to a session not locked");
    int64_t id = ++it->second.head;
    events_.push_back(NewEvent{session_id, id, event_type, std::move(payload_json)});
    return id;
}

const std::pair<int64_t, std::string> *AppendBatch::pending_key(const std::string &session_id,
                                                                const std::string &key) const {
    auto it = pending_keys_.find({session_id, key});
    return it == pending_keys_.end() ? nullptr : &it->second;
}

void AppendBatch::add_idempotency_key(const std::string &session_id, const std::string &key, int64_t event_id,
                                      const std::string &content) {
    keys_.push_back(NewIdempotencyKey{session_id, key, event_id});
    pending_keys_[{session_id, key}] = {event_id, content};
}

void AppendBatch::add_generation(const std::string &session_id, int64_t reply_to, const std::string &message_id) {
    generations_.push_back(NewGeneration{session_id, reply_to, message_id});
}

void AppendBatch::flush(EventLog &log) {
    if (events_.empty() && keys_.empty() && generations_.empty()) return;
    // Events of one session next to each other, in id order: delivery sends
    // them from here after the commit.
    std::stable_sort(events_.begin(), events_.end(), [](const NewEvent &a, const NewEvent &b) {
        return a.session_id != b.session_id ? a.session_id < b.session_id : a.id < b.id;
    });
    std::vector<SessionHead> heads;
    for (const NewEvent &event : events_) {
        if (!heads.empty() && heads.back().session_id == event.session_id)
            heads.back().last_event_id = event.id;
        else
            heads.push_back(SessionHead{event.session_id, event.id});
    }
    log.append_events(events_);
    log.insert_idempotency_keys(keys_);
    log.insert_generations(generations_);
    created_at_ = log.set_heads(heads);
}

}  // namespace rws
