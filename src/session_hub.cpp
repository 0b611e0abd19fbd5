#include "session_hub.hpp"

#include "connection_records.hpp"
#include "metrics.hpp"
#include "protocol.hpp"
#include "settings.hpp"
#include "worker_peers.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <unordered_set>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

SessionHub::SessionHub(Database &db, Generations &generations, JwtKeys &keys, int worker_pid)
    : db_(db),
      generations_(generations),
      registry_(worker_pid),
      protocol_(keys, generations, registry_),
      delivery_(db, registry_),
      worker_pid_(worker_pid) {}

void SessionHub::attach(Server *server) {
    server_ = server;
    protocol_.attach(server);
    delivery_.attach(server);
}

void SessionHub::on_closed(Connection &conn) {
    release_connection_record(conn.record);
    conn.record = -1;
    registry_.leave(conn);
    if (!conn.live_row_id.empty()) {
        Request request{Request::Kind::Detach};
        request.live_row_id = conn.live_row_id;
        protocol_.enqueue(std::move(request));
    }
}

void SessionHub::on_drained(Connection &conn) {
    if (conn.state == Connection::State::Ready) delivery_.mark(conn.session_id);
}

// After a commit: the other workers read what this one appended, for their
// connections of those sessions (their owner of a session reads its new
// generations). This worker sends its own from memory.
static void wake_other_workers(const AppendBatch &appends) {
    if (settings.workers < 2) return;                        // no list built on the one-worker hot path
    const std::vector<NewEvent> &events = appends.events();  // by session
    std::vector<std::string> sessions;
    for (const NewEvent &event : events)
        if (sessions.empty() || sessions.back() != event.session_id) sessions.push_back(event.session_id);
    peers::wake_others(sessions);
}

void SessionHub::sessions_changed(const std::vector<Wake> &wakes, bool overflowed) {
    if (overflowed) {
        generations_.all_sessions_woken();
        generations_.all_sessions_may_be_closed();
        for (const auto &entry : registry_.sessions()) {
            delivery_.mark(entry.first);
            delivery_.may_be_closed(entry.first);
        }
        return;
    }
    char text[37];
    for (const Wake &wake : wakes) {
        const unsigned char *b = wake.session_id;
        snprintf(text, sizeof(text), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        std::string session_id(text);
        if (wake.cancel) {
            generations_.cancel_forwarded(session_id);
            continue;
        }
        generations_.session_woken(session_id);
        if (wake.closed) generations_.session_may_be_closed(session_id);
        if (!registry_.watched(session_id)) continue;  // nobody watching
        delivery_.mark(session_id);
        if (wake.closed) delivery_.may_be_closed(session_id);
    }
}

int SessionHub::idle_timeout_ms() const {
    if (health_requested_) return 0;
    int timeout = generations_.idle_timeout_ms();
    auto sooner = [&timeout](int other) {
        if (other >= 0 && (timeout < 0 || other < timeout)) timeout = other;
    };
    // Requests waiting on a lock are retried every 20 ms when nothing else
    // wakes the worker.
    if (protocol_.has_requests()) sooner(protocol_.deferred_only() ? 20 : 0);
    sooner(delivery_.idle_timeout_ms());
    return timeout;
}

// --- a pass ----------------------------------------------------------------

void SessionHub::pass() {
    bool generations_work = generations_.prepare();
    if (protocol_.has_requests() || generations_work) write(generations_work);
    delivery_.deliver();
    if (health_requested_) {
        health_requested_ = false;
        bool standby = false;
        bool ok = db_.transact([&standby](EventLog &log) { standby = log.ping_database(); });
        server_->answer_health(ok, standby);
    }
}

void SessionHub::write(bool generations_work) {
    std::vector<Request> requests = protocol_.take_requests();
    RequestBatch batch(worker_pid_);
    AppendBatch appends;
    bool committed = db_.transact([&](EventLog &log) {
        batch = RequestBatch(worker_pid_);
        appends = AppendBatch();
        batch.handle(log, appends, requests);
        if (generations_work) generations_.write(log, appends);
        appends.flush(log);
    });
    if (!committed) {
        write_apart(std::move(requests), generations_work);
        return;
    }
    if (generations_work) generations_.committed(true);
    after_commit(batch, appends);
    protocol_.put_back(std::move(batch.deferred));
}

void SessionHub::write_apart(std::vector<Request> requests, bool generations_work) {
    // A session deferred by one request stays deferred for the rest, so that
    // none of its later requests commits before the waiting one.
    std::unordered_set<std::string> deferred_sessions;
    std::vector<Request> deferred;
    for (const Request &request : requests) {
        RequestBatch batch(worker_pid_);
        AppendBatch appends;
        bool committed = db_.transact([&](EventLog &log) {
            batch = RequestBatch(worker_pid_);
            batch.deferred_sessions = deferred_sessions;
            appends = AppendBatch();
            batch.handle(log, appends, {request});
            appends.flush(log);
        });
        if (committed) {
            deferred_sessions = batch.deferred_sessions;
            after_commit(batch, appends);
            for (Request &later : batch.deferred) deferred.push_back(std::move(later));
        } else {
            apply(RequestBatch::failure(request));
        }
    }
    protocol_.put_back(std::move(deferred));
    if (!generations_work) return;
    AppendBatch appends;
    bool committed = db_.transact([&](EventLog &log) {
        appends = AppendBatch();
        generations_.write(log, appends);
        appends.flush(log);
    });
    generations_.committed(committed);
    if (!committed) return;
    wake_other_workers(appends);
    delivery_.send_appended(appends);
}

void SessionHub::after_commit(RequestBatch &batch, const AppendBatch &appends) {
    if (batch.appended > 0) count(metrics().events_appended[kSourceClient], batch.appended);
    // Answers first (a sender's ack comes before its message's event), and
    // they may queue new requests (frames held until ready, detaches).
    for (const Answer &answer : batch.answers) apply(answer);
    wake_other_workers(appends);
    delivery_.send_appended(appends);
}

void SessionHub::apply(const Answer &answer) {
    if (answer.kind == Answer::Kind::Opened) {
        become_ready(answer);
        return;
    }
    if (answer.kind == Answer::Kind::Acked && !answer.duplicate && !answer.message_id.empty())
        generations_.message_committed(answer.session_id);
    if (answer.kind == Answer::Kind::Refused) count(metrics().connections_refused[answer.refusal]);
    Connection *conn = answer.conn_id == 0 ? nullptr : server_->find(answer.conn_id);
    if (conn == nullptr) return;
    switch (answer.kind) {
        case Answer::Kind::Opened: break;
        case Answer::Kind::Refused: server_->fail(*conn, answer.code, answer.message, answer.close_code); break;
        case Answer::Kind::Acked:
            server_->send(*conn, frames::ack(answer.key, answer.event_id, answer.duplicate));
            break;
        case Answer::Kind::Error: server_->send(*conn, frames::error(answer.code, answer.message)); break;
        case Answer::Kind::Close: server_->close(*conn, answer.close_code, answer.message); break;
        case Answer::Kind::Rewound:
            if (conn->state != Connection::State::Ready) break;
            if (answer.cursor > answer.head) {
                server_->send(*conn,
                              frames::error("invalid_cursor", "last_event_id is beyond the session's newest event"));
                break;
            }
            conn->cursor = answer.cursor;
            conn->replaying = true;
            count(metrics().replays);
            registry_.record(*conn);
            delivery_.mark(conn->session_id);
            break;
    }
}

void SessionHub::become_ready(const Answer &opened) {
    Connection *conn = server_->find(opened.conn_id);
    if (conn == nullptr || conn->state != Connection::State::Opening) {
        Request detach{Request::Kind::Detach};
        detach.live_row_id = opened.live_row_id;
        protocol_.enqueue(std::move(detach));
        return;
    }
    conn->state = Connection::State::Ready;
    conn->session_id = opened.session_id;
    conn->live_row_id = opened.live_row_id;
    conn->cursor = opened.head;
    count(metrics().connections_accepted);
    registry_.join(*conn);
    server_->send(*conn, frames::ready(opened.session_id, opened.head, opened.resumed, settings.heartbeat_interval_ms));

    if (conn->has_cursor_param) {
        int64_t cursor = 0;
        if (!parse_event_id(conn->cursor_param, cursor) || cursor > opened.head) {
            server_->send(*conn, frames::error("invalid_cursor", "last_event_id is beyond the session's newest event"));
        } else {
            conn->cursor = cursor;
            conn->replaying = true;
            count(metrics().replays);
        }
    }
    registry_.record(*conn);
    // Always look once: events may have committed after head was read.
    delivery_.mark(opened.session_id);

    std::vector<std::string> held;
    held.swap(conn->held_frames);
    for (const auto &text : held) protocol_.dispatch(*conn, text);
}

void SessionHub::record_last_seen(Clock::time_point now) {
    if (now - last_seen_written_ < 3 * std::chrono::milliseconds(settings.heartbeat_interval_ms)) return;
    last_seen_written_ = now;
    std::vector<std::string> seen;
    std::vector<Connection *> touched;
    for (const auto &entry : registry_.sessions())
        for (Connection *conn : entry.second)
            if (!conn->live_row_id.empty() && conn->last_received > conn->last_seen_recorded) {
                seen.push_back(conn->live_row_id);
                touched.push_back(conn);
            }
    if (seen.empty()) return;
    if (db_.transact([&](EventLog &log) { log.touch_live_connections(seen); }))
        for (Connection *conn : touched) conn->last_seen_recorded = conn->last_received;
}

void SessionHub::refresh_connection_records() {
    server_->for_each([this](Connection &conn) { registry_.record(conn); });
}

void SessionHub::announce_restart() {
    server_->for_each([this](Connection &conn) { server_->tell_to_come_back(conn); });
}

}  // namespace rws
