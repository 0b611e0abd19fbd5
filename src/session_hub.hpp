// The worker's application logic, one pass at a time. Between passes the lws
// callbacks (ServerHandler, inside uv_run, no Postgres calls) parse client
// frames and queue requests (ClientProtocol). A pass then
//   1. runs the queued requests and the generations' output in ONE
//      transaction: everything appended goes through one AppendBatch and is
//      written with one statement per kind of change, then one commit;
//   2. after the commit, answers the requests (ready, ack, errors) and sends
//      the appended events from memory (Delivery);
//   3. reads the log for whatever else is owed: replays, other writers'
//      events (publish()), connections that were behind.
// Layering: worker → hub → {ClientProtocol, Generations, Delivery} →
// {Server, EventLog}; nothing below calls back up.
#pragma once

#include "append_batch.hpp"
#include "client_protocol.hpp"
#include "connection.hpp"
#include "database.hpp"
#include "delivery.hpp"
#include "generations.hpp"
#include "jwt_keys.hpp"
#include "request_batch.hpp"
#include "server.hpp"
#include "session_registry.hpp"
#include "wake.hpp"

#include <string>
#include <vector>

namespace rws {

class SessionHub : public ServerHandler {
  public:
    SessionHub(Database &db, Generations &generations, JwtKeys &keys, int worker_pid);
    void attach(Server *server);

    // ServerHandler: inside uv_run, no Postgres calls.
    void on_open(Connection &conn) override { protocol_.on_open(conn); }
    void on_text(Connection &conn, const std::string &text) override { protocol_.on_text(conn, text); }
    void on_closed(Connection &conn) override;
    void on_drained(Connection &conn) override;
    void on_health_request() override { health_requested_ = true; }

    void keys_refreshed() { protocol_.keys_refreshed(); }
    void expire_key_waits(Clock::time_point now) { protocol_.expire_key_waits(now); }

    // Sessions changed by other transactions (from the shared-memory ring).
    void sessions_changed(const std::vector<Wake> &wakes, bool overflowed);

    // One pass (above). Never throws for database errors.
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
    // Step 1 and 2 of a pass.
    void write(bool generations_work);
    // The same, one transaction per request and one for the generations,
    // after the pass's transaction failed: one bad request must not fail
    // the others.
    void write_apart(std::vector<Request> requests, bool generations_work);
    void after_commit(RequestBatch &batch, const AppendBatch &appends);
    void apply(const Answer &answer);
    void become_ready(const Answer &opened);

    Database &db_;
    Generations &generations_;
    Server *server_ = nullptr;
    SessionRegistry registry_;
    ClientProtocol protocol_;
    Delivery delivery_;
    int worker_pid_;
    bool health_requested_ = false;
    Clock::time_point last_seen_written_;
};

}  // namespace rws
