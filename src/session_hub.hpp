// The worker's application logic: which connections watch which session,
// what clients asked for, and delivery of the log. Client requests that touch
// the database are queued by the lws callbacks and run once per loop pass in
// one transaction; their answers (ready, ack, errors) are sent only after it
// commits. Delivery is every connection tailing the session's log from its
// cursor: replay, live events and fan-out are the same read.
#pragma once

#include "connection.hpp"
#include "database.hpp"
#include "generations.hpp"
#include "jwt_keys.hpp"
#include "server.hpp"
#include "wake.hpp"

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace rws {

struct Request {
    enum class Kind { Open, UserMessage, Resume, Detach } kind;
    uint64_t conn_id = 0;
    std::string session_id;       // UserMessage, Resume; Open: the requested one (may be empty)
    std::string user_id;          // Open
    std::string remote_addr;      // Open
    std::string live_row_id;      // Detach
    std::string content;          // UserMessage
    std::string idempotency_key;  // UserMessage
    int64_t last_event_id = 0;    // Resume
};

class SessionHub : public ServerHandler {
  public:
    SessionHub(Database &db, Generations &generations, JwtKeys &keys, int worker_pid);
    void attach(Server *server) { server_ = server; }

    // ServerHandler: inside uv_run, no Postgres calls.
    void on_open(Connection &conn) override;
    void on_text(Connection &conn, const std::string &text) override;
    void on_closed(Connection &conn) override;
    void on_drained(Connection &conn) override;
    void on_health_request() override { health_requested_ = true; }

    // The JWKS keys changed, or a read of jwt_jwks_url ended: tokens that
    // wait on an unknown kid are verified again.
    void keys_refreshed();
    // Once a second: refuses tokens that waited too long for the JWKS.
    void expire_key_waits(Clock::time_point now);

    // Sessions changed by other transactions (from the shared-memory ring).
    void sessions_changed(const std::vector<Wake> &wakes, bool overflowed);

    // One pass: run queued requests in one transaction, answer after commit,
    // write what generations produced, then deliver new events. Never throws
    // for database errors.
    void pass();
    // Milliseconds the worker may sleep before pass() has work again (-1: none).
    int idle_timeout_ms() const;

    // SIGTERM: tell every client to come back later, and close with 1012.
    void announce_restart();

    // Once a second: every three heartbeat intervals (when a silent
    // connection is closed anyway), one statement moves last_seen_at of the
    // connections that sent anything since.
    void record_last_seen(Clock::time_point now);

    // Once a second: the connection records (resumable_ws.connections())
    // get every connection's queued bytes.
    void refresh_connection_records();

  private:
    struct Session {
        std::vector<Connection *> connections;
    };
    using AfterCommit = std::vector<std::function<void()>>;
    struct Batch {
        AfterCommit after_commit;
        std::vector<Request> deferred;
        std::unordered_set<std::string> deferred_sessions;
    };

    // A token waiting for jwt_jwks_url to be read again (unknown kid).
    struct KeyWait {
        uint64_t conn_id = 0;
        std::string token;
        bool refresh = false;  // an auth frame (else the upgrade's token)
        Clock::time_point deadline;
    };

    TokenCheck check_token(const std::string &token) const;
    // Unknown kid and a read of the URL is under way: waits for it (true).
    bool wait_for_keys(Connection &conn, TokenCheck &check, const std::string &token, bool refresh);
    void open_verified(Connection &conn, const TokenCheck &check);
    void refresh_verified(Connection &conn, const TokenCheck &check);
    int own_idle_timeout_ms() const;
    void enqueue(Request request);
    void dispatch(Connection &conn, const std::string &text);
    void run_requests();
    void handle(EventLog &log, const Request &request, Batch &batch);
    void handle_open(EventLog &log, const Request &request, Batch &batch);
    void handle_user_message(EventLog &log, const Request &request, Batch &batch);
    void handle_resume(EventLog &log, const Request &request, Batch &batch);
    std::function<void()> failure_answer(const Request &request);

    void become_ready(uint64_t conn_id, const std::string &session_id, const std::string &live_row_id, int64_t head,
                      bool resumed);
    // The connections of a session that can take events now, and the
    // smallest cursor among them.
    struct Readers {
        std::string session_id;
        std::vector<Connection *> connections;
        int64_t from = 0;
    };
    void deliver();
    Readers ready_readers(const std::string &session_id, Session &session);
    // Hands each reader the events [begin, end) after its cursor. Returns
    // true when every reader is caught up.
    bool feed(const Readers &readers, const std::vector<EventRow> &events, size_t begin, size_t end);
    void close_session_connections(const std::string &session_id);
    void mark_dirty(const std::string &session_id) { dirty_.insert(session_id); }
    void write_record(const Connection &conn);

    Database &db_;
    Generations &generations_;
    JwtKeys &keys_;
    int worker_pid_;
    Server *server_ = nullptr;

    std::vector<KeyWait> key_waits_;
    std::vector<Request> requests_;
    bool requests_deferred_only_ = false;  // every queued request waits on a lock
    std::unordered_map<std::string, Session> sessions_;
    std::unordered_set<std::string> dirty_;         // may have events past some cursor
    std::unordered_set<std::string> maybe_closed_;  // re-check status
    bool health_requested_ = false;
    bool delivery_failing_ = false;  // back off instead of spinning on errors
    Clock::time_point last_seen_written_;
};

}  // namespace rws
