#include "client_protocol.hpp"

#include "connection_records.hpp"
#include "metrics.hpp"
#include "protocol.hpp"
#include "settings.hpp"
#include "uuid.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// Frames a client may send before its session is ready.
constexpr size_t kMaxHeldFrames = 64;

// A token that waits for the JWKS is refused after this long (a fetch
// itself gives up after kJwksTotalTimeoutMs).
constexpr std::chrono::seconds kKeyWaitLimit{15};

void ClientProtocol::enqueue(Request request) {
    requests_.push_back(std::move(request));
    deferred_only_ = false;
}

std::vector<Request> ClientProtocol::take_requests() {
    std::vector<Request> requests;
    requests.swap(requests_);
    return requests;
}

void ClientProtocol::put_back(std::vector<Request> deferred) {
    if (deferred.empty()) return;
    bool only_deferred = requests_.empty();
    requests_.insert(requests_.begin(), std::make_move_iterator(deferred.begin()),
                     std::make_move_iterator(deferred.end()));
    deferred_only_ = only_deferred;
}

TokenCheck ClientProtocol::check_token(const std::string &token) const {
    TokenRules rules;
    rules.secret = settings.jwt_secret ? settings.jwt_secret : "";
    rules.audience = settings.jwt_audience ? settings.jwt_audience : "";
    rules.issuer = settings.jwt_issuer ? settings.jwt_issuer : "";
    keys_.fill(rules);
    return verify_token(token, rules, time(nullptr));
}

bool ClientProtocol::wait_for_keys(Connection &conn, TokenCheck &check, const std::string &token, bool refresh) {
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

void ClientProtocol::on_open(Connection &conn) {
    std::string token;
    token.swap(conn.token);  // kept no longer than it is needed
    TokenCheck check = check_token(token);
    if (wait_for_keys(conn, check, token, false)) return;  // still Opening; frames are held meanwhile
    open_verified(conn, check);
}

void ClientProtocol::open_verified(Connection &conn, const TokenCheck &check) {
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
    registry_.record(conn);

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

void ClientProtocol::refresh_verified(Connection &conn, const TokenCheck &check) {
    if (!check.ok || check.user_id != conn.user_id) {
        fprintf(stderr, "resumable_ws: token refresh from %s refused: %s\n", conn.remote_addr.c_str(),
                check.ok ? "a token of another user" : check.reason.c_str());
        count(metrics().auth_failures[check.ok ? kAuthClaims : classify_auth_failure(check.failure)]);
        server_->fail(conn, "unauthorized", "invalid token, or a token of another user", kCloseUnauthorized);
        return;
    }
    conn.token_expires_at = check.expires_at;
}

void ClientProtocol::keys_refreshed() {
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

void ClientProtocol::expire_key_waits(Clock::time_point now) {
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

void ClientProtocol::on_text(Connection &conn, const std::string &text) {
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

void ClientProtocol::dispatch(Connection &conn, const std::string &text) {
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

}  // namespace rws
