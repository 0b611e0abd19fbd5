#include "session_hub.hpp"

#include "auth.hpp"
#include "connection_records.hpp"
#include "metrics.hpp"
#include "protocol.hpp"
#include "settings.hpp"
#include "uuid.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// Events read per session per pass: bounds a pass's latency and memory.
constexpr int kReadBatch = 500;
// Frames a client may send before its session is ready.
constexpr size_t kMaxHeldFrames = 64;

// A token that waits for the JWKS is refused after this long (a fetch
// itself gives up after kJwksTotalTimeoutMs).
constexpr std::chrono::seconds kKeyWaitLimit{15};

SessionHub::SessionHub(Database &db, Generations &generations, JwtKeys &keys, int worker_pid)
    : db_(db), generations_(generations), keys_(keys), worker_pid_(worker_pid) {
    generations_.on_events_written([this](const std::string &session_id) { mark_dirty(session_id); });
}

// --- lws side: parse, validate, enqueue -----------------------------------

TokenCheck SessionHub::check_token(const std::string &token) const {
    TokenRules rules;
    rules.secret = settings.jwt_secret ? settings.jwt_secret : "";
    rules.audience = settings.jwt_audience ? settings.jwt_audience : "";
    rules.issuer = settings.jwt_issuer ? settings.jwt_issuer : "";
    keys_.fill(rules);
    return verify_token(token, rules, time(nullptr));
}

void SessionHub::enqueue(Request request) {
    requests_.push_back(std::move(request));
    requests_deferred_only_ = false;
}

static void fill_text(char *out, size_t size, const std::string &text) {
    size_t n = std::min(size - 1, text.size());
    memcpy(out, text.data(), n);
    out[n] = '\0';
}

void SessionHub::write_record(const Connection &conn) {
    if (conn.record < 0) return;
    ConnectionFields fields;
    fields.worker_pid = worker_pid_;
    fill_text(fields.user_id, sizeof(fields.user_id), conn.user_id);
    fill_text(fields.session_id, sizeof(fields.session_id), conn.session_id);
    fill_text(fields.remote_addr, sizeof(fields.remote_addr), conn.remote_addr);
    fields.cursor = conn.cursor;
    fields.queued_bytes = static_cast<int64_t>(conn.out_bytes);
    fields.connected_at_us = conn.connected_at_us;
    write_connection_record(conn.record, fields);
}

bool SessionHub::wait_for_keys(Connection &conn, TokenCheck &check, const std::string &token, bool refresh) {
    if (!check.unknown_kid) return false;
    if (keys_.refetch_for_unknown_kid(Clock::now()) != JwtKeys::Refetch::Waiting) {
        check.reason += " (no jwt_jwks_url, or it was read for an unknown kid moments ago)";
        return false;
    }
    // One wait per connection: a newer auth frame replaces the token an
    // older one left waiting (a flood of them holds no more memory).
    for (KeyWait &waiting : key_waits_)
        if (waiting.conn_id == conn.id && waiting.refresh == refresh) {
            waiting.token = token;
            return true;
        }
    KeyWait wait;
    wait.conn_id = conn.id;
    wait.token = token;
    wait.refresh = refresh;
    wait.deadline = Clock::now() + kKeyWaitLimit;
    key_waits_.push_back(std::move(wait));
    return true;
}

void SessionHub::on_open(Connection &conn) {
    std::string token;
    token.swap(conn.token);  // kept no longer than it is needed
    TokenCheck check = check_token(token);
    if (wait_for_keys(conn, check, token, false)) return;  // still Opening; frames are held meanwhile
    open_verified(conn, check);
}

void SessionHub::open_verified(Connection &conn, const TokenCheck &check) {
    if (!check.ok) {
        fprintf(stderr, "resumable_ws: connection from %s refused: %s\n", conn.remote_addr.c_str(),
                check.reason.c_str());
        count(metrics().auth_failures[classify_auth_failure(check.failure)]);
        count(metrics().connections_refused[kRefuseUnauthorized]);
        server_->fail(conn, "unauthorized", "invalid or expired token", kCloseUnauthorized);
        return;
    }
    conn.user_id = check.user_id;
    conn.token_expires_at = check.expires_at;
    conn.connected_at_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    conn.record = claim_connection_record(ConnectionFields());
    write_record(conn);

    Request request{Request::Kind::Open};
    request.conn_id = conn.id;
    request.user_id = conn.user_id;
    request.remote_addr = conn.remote_addr;
    if (!conn.session_param.empty() && !parse_uuid(conn.session_param, request.session_id)) {
        count(metrics().connections_refused[kRefuseSessionNotFound]);
        server_->fail(conn, "session_not_found", "no such session", kCloseSessionNotFound);
        return;
    }
    enqueue(std::move(request));
}

void SessionHub::refresh_verified(Connection &conn, const TokenCheck &check) {
    if (!check.ok || check.user_id != conn.user_id) {
        fprintf(stderr, "resumable_ws: token refresh from %s refused: %s\n", conn.remote_addr.c_str(),
                check.ok ? "a token of another user" : check.reason.c_str());
        count(metrics().auth_failures[check.ok ? kAuthClaims : classify_auth_failure(check.failure)]);
        server_->fail(conn, "unauthorized", "invalid token, or a token of another user", kCloseUnauthorized);
        return;
    }
    conn.token_expires_at = check.expires_at;
}

void SessionHub::keys_refreshed() {
    std::vector<KeyWait> waits;
    waits.swap(key_waits_);
    for (KeyWait &wait : waits) {
        Connection *conn = server_->find(wait.conn_id);
        if (conn == nullptr || conn->state == Connection::State::Closing) continue;
        TokenCheck check = check_token(wait.token);
        if (check.unknown_kid && keys_.fetching()) {  // a newer read began (a reload): wait for that one
            key_waits_.push_back(std::move(wait));
            continue;
        }
        if (wait.refresh)
            refresh_verified(*conn, check);
        else
            open_verified(*conn, check);
    }
}

void SessionHub::expire_key_waits(Clock::time_point now) {
    for (auto it = key_waits_.begin(); it != key_waits_.end();) {
        if (it->deadline > now) {
            ++it;
            continue;
        }
        Connection *conn = server_->find(it->conn_id);
        if (conn != nullptr && conn->state != Connection::State::Closing) {
            TokenCheck check;
            check.failure = TokenFailure::UnknownKey;
            check.reason = "unknown kid (the JWKS could not be read in time)";
            if (it->refresh)
                refresh_verified(*conn, check);
            else
                open_verified(*conn, check);
        }
        it = key_waits_.erase(it);
    }
}

void SessionHub::on_text(Connection &conn, const std::string &text) {
    if (conn.state == Connection::State::Closing) return;
    if (conn.state == Connection::State::Opening) {
        if (conn.held_frames.size() >= kMaxHeldFrames) {
            server_->close(conn, kClosePolicy, "too many frames before ready");
            return;
        }
        conn.held_frames.push_back(text);
        return;
    }
    dispatch(conn, text);
}

void SessionHub::dispatch(Connection &conn, const std::string &text) {
    ClientFrame frame = parse_client_frame(text);
    if (frame.type == ClientFrameType::Invalid) {
        server_->reject_frame(conn, frame.error);
        return;
    }
    conn.consecutive_bad_frames = 0;

    switch (frame.type) {
        case ClientFrameType::Ping: server_->send(conn, frames::pong(std::move(frame.fields))); break;
        case ClientFrameType::Auth: {
            TokenCheck check = check_token(frame.token);
            if (!wait_for_keys(conn, check, frame.token, true)) refresh_verified(conn, check);
            break;
        }
        case ClientFrameType::Cancel: generations_.cancel(conn.session_id); break;
        case ClientFrameType::Resume: {
            Request request{Request::Kind::Resume};
            request.conn_id = conn.id;
            request.session_id = conn.session_id;
            request.last_event_id = frame.last_event_id;
            enqueue(std::move(request));
            break;
        }
        case ClientFrameType::UserMessage: {
            Request request{Request::Kind::UserMessage};
            request.conn_id = conn.id;
            request.session_id = conn.session_id;
            request.content = std::move(frame.content);
            request.idempotency_key = std::move(frame.idempotency_key);
            enqueue(std::move(request));
            break;
        }
        case ClientFrameType::Invalid: break;
    }
}

void SessionHub::on_closed(Connection &conn) {
    release_connection_record(conn.record);
    conn.record = -1;
    if (!conn.session_id.empty()) {
        auto it = sessions_.find(conn.session_id);
        if (it != sessions_.end()) {
            auto &list = it->second.connections;
            list.erase(std::remove(list.begin(), list.end(), &conn), list.end());
            if (list.empty()) sessions_.erase(it);
        }
    }
    if (!conn.live_row_id.empty()) {
        Request request{Request::Kind::Detach};
        request.live_row_id = conn.live_row_id;
        enqueue(std::move(request));
    }
}

void SessionHub::on_drained(Connection &conn) {
    if (conn.state == Connection::State::Ready) mark_dirty(conn.session_id);
}

void SessionHub::sessions_changed(const std::vector<Wake> &wakes, bool overflowed) {
    if (overflowed) {
        generations_.all_sessions_may_be_closed();
        for (auto &entry : sessions_) {
            mark_dirty(entry.first);
            maybe_closed_.insert(entry.first);
        }
        return;
    }
    char text[37];
    for (const Wake &wake : wakes) {
        const unsigned char *b = wake.session_id;
        snprintf(text, sizeof(text), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        std::string session_id(text);
        if (wake.closed) generations_.session_may_be_closed(session_id);
        if (sessions_.count(session_id) == 0) continue;  // nobody watching
        mark_dirty(session_id);
        if (wake.closed) maybe_closed_.insert(session_id);
    }
}

int SessionHub::idle_timeout_ms() const {
    int timeout = generations_.idle_timeout_ms();
    if (timeout == 0) return 0;
    int own = own_idle_timeout_ms();
    if (own < 0) return timeout;
    return timeout < 0 ? own : std::min(own, timeout);
}

int SessionHub::own_idle_timeout_ms() const {
    if (health_requested_) return 0;
    if (!maybe_closed_.empty()) return delivery_failing_ ? 250 : 0;
    if (!requests_.empty()) return requests_deferred_only_ ? 20 : 0;
    for (const auto &session_id : dirty_)
        if (sessions_.count(session_id)) return delivery_failing_ ? 250 : 0;
    return -1;
}

// --- a pass ----------------------------------------------------------------

void SessionHub::pass() {
    // Requests waiting on a lock are retried here too; idle_timeout_ms()
    // paces those retries when nothing else wakes the worker.
    if (!requests_.empty()) run_requests();
    generations_.pass();
    deliver();
    if (health_requested_) {
        health_requested_ = false;
        bool standby = false;
        bool ok = db_.transact([&standby](EventLog &log) { standby = log.ping_database(); });
        server_->answer_health(ok, standby);
    }
}

void SessionHub::run_requests() {
    std::vector<Request> requests;
    requests.swap(requests_);

    Batch batch;
    bool committed = db_.transact([&](EventLog &log) {
        batch = Batch();
        for (const Request &request : requests) handle(log, request, batch);
    });
    if (!committed) {
        // One bad request must not fail the others: run each on its own. A
        // session deferred by one of them stays deferred for the rest, so
        // that none of its later requests commits before the waiting one.
        batch = Batch();
        for (const Request &request : requests) {
            Batch single;
            single.deferred_sessions = std::move(batch.deferred_sessions);
            if (db_.transact([&](EventLog &log) { handle(log, request, single); })) {
                for (auto &answer : single.after_commit) batch.after_commit.push_back(std::move(answer));
                for (auto &later : single.deferred) batch.deferred.push_back(std::move(later));
            } else {
                batch.after_commit.push_back(failure_answer(request));
            }
            batch.deferred_sessions = std::move(single.deferred_sessions);
        }
    }

    // Answers may queue new requests (frames held until ready, detaches).
    for (auto &answer : batch.after_commit) answer();
    if (!batch.deferred.empty()) {
        bool only_deferred = requests_.empty();
        requests_.insert(requests_.begin(), std::make_move_iterator(batch.deferred.begin()),
                         std::make_move_iterator(batch.deferred.end()));
        requests_deferred_only_ = only_deferred;
    }
}

void SessionHub::handle(EventLog &log, const Request &request, Batch &batch) {
    // Keep each session's requests in order behind one that had to wait.
    if (!request.session_id.empty() && batch.deferred_sessions.count(request.session_id)) {
        batch.deferred.push_back(request);
        return;
    }
    switch (request.kind) {
        case Request::Kind::Open: handle_open(log, request, batch); break;
        case Request::Kind::UserMessage: handle_user_message(log, request, batch); break;
        case Request::Kind::Resume: handle_resume(log, request, batch); break;
        case Request::Kind::Detach: log.remove_live_connection(request.live_row_id); break;
    }
}

void SessionHub::handle_open(EventLog &log, const Request &request, Batch &batch) {
    uint64_t conn_id = request.conn_id;
    std::string session_id = request.session_id;
    int64_t head = 0;
    bool resumed = false;
    if (!session_id.empty()) {
        SessionRow row = log.get_session(session_id);
        if (!row.found || !row.active) {
            batch.after_commit.push_back([this, conn_id]() {
                count(metrics().connections_refused[kRefuseSessionNotFound]);
                if (Connection *conn = server_->find(conn_id))
                    server_->fail(*conn, "session_not_found", "no such session, or it is closed",
                                  kCloseSessionNotFound);
            });
            return;
        }
        if (row.user_id != request.user_id) {
            batch.after_commit.push_back([this, conn_id]() {
                count(metrics().connections_refused[kRefuseForbidden]);
                if (Connection *conn = server_->find(conn_id))
                    server_->fail(*conn, "forbidden", "this session belongs to another user", kCloseForbidden);
            });
            return;
        }
        head = row.last_event_id;
        resumed = true;
    } else {
        session_id = log.create_session(request.user_id);
    }
    std::string live_row_id = log.add_live_connection(session_id, request.user_id, worker_pid_, request.remote_addr);
    batch.after_commit.push_back([this, conn_id, session_id, live_row_id, head, resumed]() {
        become_ready(conn_id, session_id, live_row_id, head, resumed);
    });
}

void SessionHub::become_ready(uint64_t conn_id, const std::string &session_id, const std::string &live_row_id,
                              int64_t head, bool resumed) {
    Connection *conn = server_->find(conn_id);
    if (conn == nullptr || conn->state != Connection::State::Opening) {
        Request detach{Request::Kind::Detach};
        detach.live_row_id = live_row_id;
        enqueue(std::move(detach));
        return;
    }
    conn->state = Connection::State::Ready;
    conn->session_id = session_id;
    conn->live_row_id = live_row_id;
    conn->cursor = head;
    count(metrics().connections_accepted);
    sessions_[session_id].connections.push_back(conn);
    server_->send(*conn, frames::ready(session_id, head, resumed, settings.heartbeat_interval_ms));

    if (conn->has_cursor_param) {
        int64_t cursor = 0;
        if (!parse_event_id(conn->cursor_param, cursor) || cursor > head) {
            server_->send(*conn, frames::error("invalid_cursor", "last_event_id is beyond the session's newest event"));
        } else {
            conn->cursor = cursor;
            conn->replaying = true;
            count(metrics().replays);
        }
    }
    write_record(*conn);
    // Always look once: events may have committed after head was read.
    mark_dirty(session_id);

    std::vector<std::string> held;
    held.swap(conn->held_frames);
    for (const auto &text : held) dispatch(*conn, text);
}

void SessionHub::handle_user_message(EventLog &log, const Request &request, Batch &batch) {
    uint64_t conn_id = request.conn_id;
    const std::string &session_id = request.session_id;
    const std::string &key = request.idempotency_key;
    int64_t last_event_id = 0;
    bool active = false;
    switch (log.lock_session(session_id, last_event_id, active)) {
        case LockResult::Busy:
            // Another transaction holds the session (a long publish()): the
            // worker never waits on it; try again on a later pass.
            batch.deferred.push_back(request);
            batch.deferred_sessions.insert(session_id);
            return;
        case LockResult::Missing: active = false; break;
        case LockResult::Locked: break;
    }
    if (!active) {
        batch.after_commit.push_back([this, conn_id]() {
            if (Connection *conn = server_->find(conn_id))
                server_->send(*conn, frames::error("session_not_found", "the session is closed"));
        });
        return;
    }

    int64_t original_id = 0;
    std::string original_content;
    if (log.find_idempotency_key(session_id, key, original_id, original_content)) {
        bool same = original_content == request.content;
        batch.after_commit.push_back([this, conn_id, key, original_id, same]() {
            Connection *conn = server_->find(conn_id);
            if (conn == nullptr) return;
            if (same)
                server_->send(*conn, frames::ack(key, original_id, true));
            else
                server_->send(
                    *conn, frames::error("idempotency_conflict", "this idempotency_key was used with other content"));
        });
        return;
    }

    static const std::string kEventType = "user_message";
    nlohmann::ordered_json payload{{"content", request.content}, {"idempotency_key", key}};
    std::string payload_json = payload.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (payload_json.size() + kEventType.size() > event_size_limit()) {
        // Frames are capped below this (Server::message_limit()), and a
        // stored message is never larger than its frame; kept as a guard.
        batch.after_commit.push_back([this, conn_id]() {
            if (Connection *conn = server_->find(conn_id)) server_->close(*conn, kCloseTooBig, "message too big");
        });
        return;
    }
    int64_t event_id = last_event_id + 1;
    log.insert_event(session_id, event_id, kEventType, payload_json);
    log.insert_idempotency_key(session_id, key, event_id);
    log.set_last_event_id(session_id, event_id);
    // Each new user message gets one generation; its row's primary key is the
    // message, so a generation can never be started twice for it.
    std::string message_id;
    if (settings.llm_provider != LLM_PROVIDER_NONE) {
        message_id = random_uuid();
        log.insert_generation(session_id, event_id, message_id);
    }
    batch.after_commit.push_back([this, conn_id, session_id, key, event_id, message_id]() {
        count(metrics().events_appended[kSourceClient]);
        if (!message_id.empty()) generations_.enqueue(session_id, event_id, message_id);
        mark_dirty(session_id);
        if (Connection *conn = server_->find(conn_id)) server_->send(*conn, frames::ack(key, event_id, false));
    });
}

void SessionHub::handle_resume(EventLog &log, const Request &request, Batch &batch) {
    uint64_t conn_id = request.conn_id;
    int64_t cursor = request.last_event_id;
    SessionRow row = log.get_session(request.session_id);
    int64_t head = row.last_event_id;
    batch.after_commit.push_back([this, conn_id, cursor, head]() {
        Connection *conn = server_->find(conn_id);
        if (conn == nullptr || conn->state != Connection::State::Ready) return;
        if (cursor > head) {
            server_->send(*conn, frames::error("invalid_cursor", "last_event_id is beyond the session's newest event"));
            return;
        }
        conn->cursor = cursor;
        conn->replaying = true;
        count(metrics().replays);
        write_record(*conn);
        mark_dirty(conn->session_id);
    });
}

std::function<void()> SessionHub::failure_answer(const Request &request) {
    uint64_t conn_id = request.conn_id;
    switch (request.kind) {
        case Request::Kind::Open:
            return [this, conn_id]() {
                count(metrics().connections_refused[kRefuseInternalError]);
                if (Connection *conn = server_->find(conn_id))
                    server_->fail(*conn, "internal_error", "the session could not be opened", kCloseInternal);
            };
        case Request::Kind::UserMessage:
        case Request::Kind::Resume:
            return [this, conn_id]() {
                if (Connection *conn = server_->find(conn_id))
                    server_->send(*conn, frames::error("internal_error", "the request failed; retry it"));
            };
        case Request::Kind::Detach: break;
    }
    return []() {};
}

// --- delivery ----------------------------------------------------------------

void SessionHub::deliver() {
    if (dirty_.empty() && maybe_closed_.empty()) return;
    std::vector<std::string> to_read;
    for (const auto &session_id : dirty_)
        if (sessions_.count(session_id)) to_read.push_back(session_id);
    std::vector<std::string> to_check(maybe_closed_.begin(), maybe_closed_.end());
    if (to_read.empty() && to_check.empty()) {
        dirty_.clear();
        return;
    }

    delivery_failing_ = !db_.transact([&](EventLog &log) {
        // Every session's new events in one read: one statement per pass
        // however many sessions are streaming.
        std::vector<Readers> plans;
        std::vector<EventLog::Cursor> cursors;
        for (const auto &session_id : to_read) {
            auto it = sessions_.find(session_id);
            Readers readers = it == sessions_.end() ? Readers() : ready_readers(session_id, it->second);
            if (readers.connections.empty()) {
                dirty_.erase(session_id);
                continue;
            }
            cursors.push_back(EventLog::Cursor{session_id, readers.from});
            plans.push_back(std::move(readers));
        }
        if (!plans.empty()) {
            std::vector<EventRow> events = log.read_events(cursors, kReadBatch);
            size_t begin = 0;
            for (size_t i = 0; i < plans.size(); i++) {
                size_t end = begin;
                while (end < events.size() && events[end].cursor == i) end++;
                if (feed(plans[i], events, begin, end)) dirty_.erase(plans[i].session_id);
                begin = end;
            }
        }
        for (const auto &session_id : to_check) {
            // Events committed before the close are delivered first.
            auto it = sessions_.find(session_id);
            if (it != sessions_.end() && !dirty_.count(session_id)) {
                SessionRow row = log.get_session(session_id);
                if (!row.found || !row.active) close_session_connections(session_id);
            }
            if (!dirty_.count(session_id)) maybe_closed_.erase(session_id);
        }
    });
    // Sessions no one watches any more need no reading.
    for (auto it = dirty_.begin(); it != dirty_.end();) it = sessions_.count(*it) ? std::next(it) : dirty_.erase(it);
}

SessionHub::Readers SessionHub::ready_readers(const std::string &session_id, Session &session) {
    const size_t feed_limit = Server::feed_limit();
    Readers readers;
    readers.session_id = session_id;
    readers.from = INT64_MAX;
    for (Connection *conn : session.connections) {
        if (conn->state != Connection::State::Ready) continue;
        // A full queue waits; on_drained brings the session back here.
        if (conn->fed_again_below != 0) continue;
        if (conn->out_bytes >= feed_limit) {
            conn->fed_again_below = feed_limit;
            continue;
        }
        readers.connections.push_back(conn);
        readers.from = std::min(readers.from, conn->cursor);
    }
    return readers;
}

bool SessionHub::feed(const Readers &readers, const std::vector<EventRow> &events, size_t begin, size_t end) {
    const size_t feed_limit = Server::feed_limit();
    const size_t send_buffer = static_cast<size_t>(settings.max_send_buffer);
    bool batch_full = end - begin == static_cast<size_t>(kReadBatch);
    bool wants_more = false;  // someone took the whole batch: read on next pass
    uint64_t delivered = 0, replayed = 0;
    for (Connection *conn : readers.connections) {
        int64_t cursor_before = conn->cursor;
        bool was_replaying = conn->replaying;
        for (size_t i = begin; i < end; i++) {
            const EventRow &event = events[i];
            if (event.id <= conn->cursor) continue;
            if (event.id != conn->cursor + 1) {
                // Ids are dense by construction; a gap means a bug. Stop here
                // rather than skip an event.
                fprintf(stderr, "resumable_ws: gap in session %s after event %lld\n", readers.session_id.c_str(),
                        static_cast<long long>(conn->cursor));
                break;
            }
            if (conn->out_bytes >= feed_limit) {
                conn->fed_again_below = feed_limit;
                break;
            }
            if (conn->out_bytes > 0 && conn->out_bytes + event.frame.size() > send_buffer) {
                // Too large to share the buffer: it goes alone, once the
                // queue is empty (an old event, or a lowered limit).
                conn->fed_again_below = 1;
                break;
            }
            server_->send(*conn, event.frame);
            conn->cursor = event.id;
            if (conn->state != Connection::State::Ready) break;  // closed meanwhile
        }
        uint64_t fed = static_cast<uint64_t>(conn->cursor - cursor_before);
        delivered += fed;
        if (was_replaying) replayed += fed;
        if (fed > 0) write_record(*conn);
        bool took_all = begin == end || conn->cursor >= events[end - 1].id;
        if (took_all && batch_full) wants_more = true;
        if (took_all && !batch_full && conn->replaying && conn->state == Connection::State::Ready) {
            conn->replaying = false;
            server_->send(*conn, frames::replay_done(conn->cursor));
        }
    }
    if (delivered > 0) count(metrics().events_delivered, delivered);
    if (replayed > 0) count(metrics().replayed_events, replayed);
    return !wants_more;
}

void SessionHub::close_session_connections(const std::string &session_id) {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    for (Connection *conn : it->second.connections) {
        server_->send(*conn, frames::session_closed());
        server_->close(*conn, kCloseSessionNotFound, "session closed");
    }
}

void SessionHub::record_last_seen(Clock::time_point now) {
    if (now - last_seen_written_ < 3 * std::chrono::milliseconds(settings.heartbeat_interval_ms)) return;
    last_seen_written_ = now;
    std::vector<std::string> seen;
    std::vector<Connection *> touched;
    for (auto &entry : sessions_)
        for (Connection *conn : entry.second.connections)
            if (!conn->live_row_id.empty() && conn->last_received > conn->last_seen_recorded) {
                seen.push_back(conn->live_row_id);
                touched.push_back(conn);
            }
    if (seen.empty()) return;
    if (db_.transact([&](EventLog &log) { log.touch_live_connections(seen); }))
        for (Connection *conn : touched) conn->last_seen_recorded = conn->last_received;
}

void SessionHub::refresh_connection_records() {
    server_->for_each([this](Connection &conn) { write_record(conn); });
}

void SessionHub::announce_restart() {
    server_->for_each([this](Connection &conn) { server_->tell_to_come_back(conn); });
}

}  // namespace rws
