// Delivery: every connection of a session gets the session's events in id
// order, from its cursor, paced by its send queue. Events this worker just
// appended are sent from memory, one frame per event shared by all the
// session's connections, to connections whose cursor is exactly at their
// start; everything else (replays, publish()'s events, connections behind
// or paused) is read from ws_events. No callbacks: the hub calls in.
#pragma once

#include "append_batch.hpp"
#include "database.hpp"
#include "server.hpp"
#include "session_registry.hpp"

#include <string>
#include <unordered_set>
#include <vector>

namespace rws {

class Delivery {
  public:
    Delivery(Database &db, SessionRegistry &registry) : db_(db), registry_(registry) {}
    void attach(Server *server) { server_ = server; }

    // The session may have events past some connection's cursor.
    void mark(const std::string &session_id) { marked_.insert(session_id); }
    // The session may have been closed: its connections are told, after its
    // remaining events.
    void may_be_closed(const std::string &session_id) { maybe_closed_.insert(session_id); }

    // After a commit: sends what appends holds from memory where it can, and
    // marks the rest for reading.
    void send_appended(const AppendBatch &appends);
    // Reads the log for marked sessions (one statement for all of them) and
    // re-checks those that may have been closed. Never throws for database
    // errors.
    void deliver();
    // 0: deliver() has work now; 250: it is backing off after errors; -1: none.
    int idle_timeout_ms() const;

  private:
    struct Readers {
        std::string session_id;
        std::vector<Connection *> connections;
        int64_t from = 0;  // the smallest cursor among them
    };
    enum class Offer { Sent, Full, Stop };
    // One event to one connection whose cursor is just before it.
    Offer offer(Connection &conn, int64_t id, const Frame &frame);
    Readers ready_readers(const std::string &session_id, std::vector<Connection *> &connections);
    // Hands each reader the events [begin, end) after its cursor. Returns
    // true when every reader is caught up.
    bool feed(const Readers &readers, const std::vector<EventRow> &events, size_t begin, size_t end);
    void close_session_connections(const std::string &session_id);

    Database &db_;
    SessionRegistry &registry_;
    Server *server_ = nullptr;
    std::unordered_set<std::string> marked_;        // may have events past some cursor
    std::unordered_set<std::string> maybe_closed_;  // re-check status
    bool failing_ = false;                          // back off instead of spinning on errors
};

}  // namespace rws
