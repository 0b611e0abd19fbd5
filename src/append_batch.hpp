// The worker's one append path. Every event the worker appends in a pass —
// clients' user messages and the generations' events — goes through one
// AppendBatch inside the pass's transaction: sessions are locked without
// waiting, a new event takes the session's head + 1, and flush() writes all
// events, heads, idempotency keys and generation rows of the pass with one
// statement each. publish() (sql/) applies the same rule in SQL; README
// "Event ids" states it once for both.
#pragma once

#include "event_log.hpp"

#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rws {

class AppendBatch {
  public:
    enum class Lock { Locked, Busy, Missing };  // Busy: another transaction holds it
    struct SessionState {
        Lock lock = Lock::Missing;
        bool active = false;
        int64_t head = 0;  // the newest id, including this batch's events
    };
    // Locks the sessions not yet looked at in this batch (one statement, plus
    // one to tell Busy from Missing for those it could not lock).
    void lock(EventLog &log, const std::vector<std::string> &session_ids);
    // After lock(): that session's state.
    const SessionState &session(const std::string &session_id) const;

    // Appends an event to a Locked session; returns its id.
    int64_t append(const std::string &session_id, const char *event_type, std::string payload_json);
    // An idempotency key recorded in this batch: its event and content.
    const std::pair<int64_t, std::string> *pending_key(const std::string &session_id, const std::string &key) const;
    void add_idempotency_key(const std::string &session_id, const std::string &key, int64_t event_id,
                             const std::string &content);
    void add_generation(const std::string &session_id, int64_t reply_to, const std::string &message_id);

    // Writes everything added, still inside the transaction.
    void flush(EventLog &log);

    // After the commit: what was appended, per session in id order, and the
    // events' created_at.
    const std::vector<NewEvent> &events() const { return events_; }
    const std::string &created_at() const { return created_at_; }
    bool empty() const { return events_.empty(); }

  private:
    std::unordered_map<std::string, SessionState> sessions_;
    std::vector<NewEvent> events_;
    std::vector<NewIdempotencyKey> keys_;
    std::map<std::pair<std::string, std::string>, std::pair<int64_t, std::string>> pending_keys_;
    std::vector<NewGeneration> generations_;
    std::string created_at_;
};

}  // namespace rws
