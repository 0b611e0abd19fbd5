#include "server.hpp"

#include "address_filter.hpp"
#include "auth.hpp"
#include "http_checks.hpp"
#include "lws_frame_probe.hpp"
#include "metrics.hpp"
#include "prometheus.hpp"
#include "protocol.hpp"
#include "settings.hpp"
#include "uuid.hpp"
#include "ws_frames.hpp"

#include <libwebsockets.h>
#include <nlohmann/json.hpp>
#include <uv.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static int callback_trampoline(lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    auto *server = static_cast<Server *>(lws_context_user(lws_get_context(wsi)));
    if (server == nullptr) return lws_callback_http_dummy(wsi, reason, user, in, len);
    try {
        return server->callback(wsi, reason, user, in, len);
    } catch (...) {
        // Never let an exception unwind into lws (C). Drop the connection.
        return -1;
    }
}

// One protocol serves both the HTTP endpoints and the WebSocket: a client
// that names no subprotocol is bound to the first one. lws allocates the rx
// buffer for every connection, so it is small (messages are reassembled from
// pieces anyway); sends go out in packets of up to 64 kB.
static const lws_protocols kProtocols[] = {
    {"resumable-ws", callback_trampoline, sizeof(Connection *), 4096, 0, nullptr, 64 * 1024},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

static void log_from_lws(int level, const char *line) {
    // lws lines end with a newline; they never contain tokens at these levels.
    fprintf(stderr, "resumable_ws: libwebsockets: %s", line);
}

// max_connections counts every worker's connections: the others' as they
// last stored them (once a pass).
static size_t connections_of_other_workers() {
    int64_t sum = 0;
    for (const WorkerGauges &gauges : metrics().workers)
        if (&gauges != &worker_gauges()) sum += gauges.connections.load(std::memory_order_relaxed);
    return sum > 0 ? static_cast<size_t>(sum) : 0;
}

Server::Server(uv_loop_t *loop, ServerHandler &handler) : loop_(loop), handler_(handler) {}

Server::~Server() {
    // The worker exits right after; tearing down lws on a foreign loop would
    // need further loop runs to close its handles. The OS reclaims sockets.
}

std::string Server::prepare_tls() {
    return tls_.prepare(settings.ssl_cert_file, settings.ssl_key_file);
}

tls::Reload Server::reload_tls() {
    return tls_.reload(settings.ssl_cert_file, settings.ssl_key_file);
}

void Server::start() {
    // RWS_LWS_DEBUG in the postmaster's environment adds lws's notice, info
    // and debug lines (never its header/parser levels, which show tokens).
    int levels = LLL_ERR | LLL_WARN;
    if (getenv("RWS_LWS_DEBUG")) levels |= LLL_NOTICE | LLL_INFO | LLL_DEBUG;
    lws_set_log_level(levels, log_from_lws);
    if (!lws_frame_probe::init())
        fprintf(stderr,
                "resumable_ws: unmasked client frames are not detected with libwebsockets %s "
                "(only Debian 12's 4.1.6 is known)\n",
                lws_get_library_version());

    lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *foreign_loops[1] = {loop_};
    info.foreign_loops = foreign_loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.user = this;
    info.port = CONTEXT_PORT_NO_LISTEN;
    if (tls_.on()) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    context_ = lws_create_context(&info);
    if (context_ == nullptr)
        throw std::runtime_error("lws_create_context failed (is libwebsockets-evlib-uv installed?)");

    // One vhost without a listener of its own: the worker opens the
    // listening sockets (Listener) and hands what they accept to lws.
    lws_context_creation_info vhost;
    memset(&vhost, 0, sizeof(vhost));
    vhost.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    vhost.protocols = kProtocols;
    vhost.vhost_name = "resumable_ws";
    // HTTP/1.1 only: lws 4.1.6's HTTP/2 has an open HPACK CVE.
    vhost.alpn = "http/1.1";
    vhost.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_LIBUV;
    if (tls_.on())
        // Our certificate goes into the context lws creates (see
        // tls.hpp). Plain-text requests are let through to be answered
        // 400 (on_http, on_filter) rather than dropped without a word.
        vhost.options |= LWS_SERVER_OPTION_CREATE_VHOST_SSL_CTX | LWS_SERVER_OPTION_ALLOW_NON_SSL_ON_SSL_PORT |
                         LWS_SERVER_OPTION_ALLOW_HTTP_ON_HTTPS_LISTENER;
    tls_failed_ = false;
    vhost_ = lws_create_vhost(context_, &vhost);
    if (vhost_ == nullptr)
        throw std::runtime_error(tls_failed_ ? "OpenSSL refused the TLS certificate" : "lws_create_vhost failed");

    listener_ = std::make_unique<Listener>(loop_, [this](int fd) { adopt(fd); });
    listener_->listen(split_list(settings.listen_addresses ? settings.listen_addresses : ""), settings.port,
                      settings.workers > 1);
}

void Server::adopt(int fd) {
    lws_sock_file_fd_type descriptor;
    descriptor.sockfd = fd;
    int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP;
    if (tls_.on()) type |= LWS_ADOPT_ALLOW_SSL;
    // On failure lws has closed the socket already.
    (void)lws_adopt_descriptor_vhost(vhost_, static_cast<lws_adoption_type>(type), descriptor, nullptr, nullptr);
}

size_t Server::feed_limit() {
    return static_cast<size_t>(settings.max_send_buffer) / 4;
}

size_t Server::message_limit() {
    return std::min(static_cast<size_t>(settings.max_message_size), event_size_limit());
}

Connection *Server::find(uint64_t id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second.get();
}

void Server::for_each(const std::function<void(Connection &)> &fn) {
    for (auto &entry : connections_) fn(*entry.second);
}

void Server::send(Connection &conn, std::string frame) {
    send(conn, std::make_shared<const std::string>(std::move(frame)));
}

void Server::send(Connection &conn, const Frame &frame) {
    if (conn.wsi == nullptr || conn.close_code != 0) return;
    const size_t limit = static_cast<size_t>(settings.max_send_buffer);
    // A queue that is not empty already has a write callback coming (asked
    // for when its first frame came, or again by on_writeable): asking once
    // per frame would cost an epoll_ctl each.
    bool idle = conn.out_queue.empty();
    // An event larger than the buffer (stored before a limit was lowered)
    // is fed only into an empty queue, and does not count against it.
    if (idle && frame->size() > limit) conn.front_oversized = true;
    conn.out_bytes += frame->size();
    conn.out_queue.push_back(frame);
    size_t counted = conn.out_bytes - (conn.front_oversized ? conn.out_queue.front()->size() : 0);
    if (counted > limit) {
        // Events are paced (feed_limit), so only answers the client never
        // reads get here. It gets a close frame (if its socket takes it) and
        // resumes later.
        count(metrics().slow_consumer_closes);
        drop_and_close(conn, kCloseTooSlow, "send buffer over its limit");
        return;
    }
    // Written by flush() at the end of the loop pass, with what else the pass
    // queued: a write callback would cost two epoll_ctl and a loop wake.
    if (idle) to_flush_.push_back(conn.id);
}

void Server::flush() {
    std::vector<uint64_t> ids;
    ids.swap(to_flush_);
    for (uint64_t id : ids) {
        Connection *conn = find(id);
        if (conn == nullptr || conn->wsi == nullptr || conn->out_queue.empty()) continue;
        // What the socket does not take waits for a write callback
        // (on_writeable asks for one); a failed write drops the connection,
        // as returning -1 from the callback would.
        if (on_writeable(*conn) < 0) lws_set_timeout(conn->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
    }
}

void Server::drop_and_close(Connection &conn, int code, const std::string &reason) {
    conn.rx.clear();
    conn.out_queue.clear();
    conn.out_bytes = 0;
    conn.front_oversized = false;
    close(conn, code, reason);
}

void Server::close(Connection &conn, int code, const std::string &reason) {
    if (conn.wsi == nullptr || conn.close_code != 0) return;
    conn.close_code = code;
    conn.close_reason = reason.substr(0, 120);
    conn.close_requested_at = Clock::now();
    conn.state = Connection::State::Closing;
    lws_callback_on_writable(conn.wsi);
}

void Server::fail(Connection &conn, const std::string &error_code, const std::string &message, int close_code) {
    send(conn, frames::error(error_code, message));
    close(conn, close_code, error_code);
}

void Server::tick(Clock::time_point now, int64_t unix_now) {
    auto interval = std::chrono::milliseconds(settings.heartbeat_interval_ms);
    std::vector<lws *> to_kill;
    for (auto &entry : connections_) {
        Connection &conn = *entry.second;
        if (conn.wsi == nullptr) continue;
        bool silent = now - conn.last_received > 3 * interval;
        // A close the peer does not take (it reads nothing) ends here.
        bool stuck_closing = conn.close_code != 0 && now - conn.close_requested_at > std::chrono::seconds(5);
        if (silent || stuck_closing) {
            to_kill.push_back(conn.wsi);
            continue;
        }
        if (conn.close_code == 0 && conn.token_expires_at != 0 && unix_now >= conn.token_expires_at) {
            fail(conn, "unauthorized", "token expired", kCloseUnauthorized);
            continue;
        }
        if (now - conn.last_ping_sent >= interval) {
            conn.last_ping_sent = now;
            conn.ping_due = true;
            lws_callback_on_writable(conn.wsi);
        }
    }
    // Outside any lws callback a synchronous kill is allowed (an async one
    // would wait for lws's timer, which is not re-armed from out here). It
    // runs the CLOSED callback, which erases from connections_: hence the list.
    for (lws *wsi : to_kill) lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);

    endpoints_.tick(now);
}

static std::string peer_address(lws *wsi) {
    char peer[64] = {0};
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    return peer;
}

static std::string if_none_match(lws *wsi) {
    char wanted[128];
    return lws_hdr_copy(wsi, wanted, sizeof(wanted), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 ? wanted : "";
}

static const char *status_text(int status) {
    switch (status) {
        case 200: return "200 OK";
        case 400: return "400 Bad Request";
        case 404: return "404 Not Found";
        case 405: return "405 Method Not Allowed";
        case 413: return "413 Content Too Large";
        case 426: return "426 Upgrade Required";
        case 429: return "429 Too Many Requests";
        default: return "503 Service Unavailable";
    }
}

// Writes a whole (small) HTTP/1.1 response in one write, from inside the
// callback that got the request, and returns -1: lws sends what is left of it,
// then closes. For requests after which the connection must not be read any
// further: lws 4.1.6 loops forever on a request body followed by pipelined
// requests when the answer is not written at once, and refused upgrades are
// answered before lws would (lws's own helper says HTTP/1.0 there).
static bool is_head_request(lws *wsi) {
    return lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
}

static int answer_and_close(lws *wsi, const HttpResponse &response) {
    std::string text = std::string(LWS_PRE, '\0') + "HTTP/1.1 " + status_text(response.status) + "\r\n";
    text += "content-type: " + response.content_type + "\r\ncontent-length: " + std::to_string(response.body.size()) +
            "\r\nconnection: close\r\nx-content-type-options: nosniff\r\n";
    for (const auto &header : response.headers)
        if (header.first != "connection") text += header.first + ": " + header.second + "\r\n";
    text += "\r\n";
    if (!is_head_request(wsi)) text += response.body;
    lws_write(wsi, reinterpret_cast<unsigned char *>(&text[LWS_PRE]), text.size() - LWS_PRE, LWS_WRITE_HTTP);
    return -1;
}

void Server::answer_health(bool database_ok, bool standby) {
    for (lws *wsi : health_waiters_)
        respond(wsi, HttpEndpoints::health(database_ok, standby, connections_.size()), /*close_after=*/true);
    health_waiters_.clear();
}

void Server::respond(lws *wsi, HttpResponse response, bool close_after) {
    response.close_after = close_after;
    response.head_only = is_head_request(wsi);
    http_responses_[wsi] = std::move(response);
    lws_callback_on_writable(wsi);
}

int Server::write_http(lws *wsi) {
    auto it = http_responses_.find(wsi);
    if (it == http_responses_.end()) return 0;
    HttpResponse &response = it->second;
    if (!response.headers_sent) {
        response.headers_sent = true;
        std::vector<unsigned char> buffer(LWS_PRE + 4096);
        unsigned char *start = buffer.data() + LWS_PRE, *p = start, *end = buffer.data() + buffer.size() - 1;
        if (lws_add_http_common_headers(wsi, response.status, response.content_type.c_str(), response.body.size(), &p,
                                        end))
            return -1;
        response.headers.emplace_back("x-content-type-options", "nosniff");  // on every answer
        for (const auto &header : response.headers) {
            std::string name = header.first + ":";
            if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char *>(name.c_str()),
                                            reinterpret_cast<const unsigned char *>(header.second.data()),
                                            static_cast<int>(header.second.size()), &p, end))
                return -1;
        }
        if (lws_finalize_write_http_header(wsi, start, &p, end)) return -1;
    }
    // The body goes out in pieces the socket takes; lws keeps what a partial
    // write leaves and reports the pipe choked until it is out.
    constexpr size_t kPiece = 16 * 1024;
    if (response.head_only) response.body_sent = response.body.size();
    while (response.body_sent < response.body.size() && !lws_send_pipe_choked(wsi)) {
        size_t length = std::min(kPiece, response.body.size() - response.body_sent);
        bool last = response.body_sent + length == response.body.size();
        std::vector<unsigned char> piece(LWS_PRE + length);
        memcpy(piece.data() + LWS_PRE, response.body.data() + response.body_sent, length);
        if (lws_write(wsi, piece.data() + LWS_PRE, length, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
            static_cast<int>(length))
            return -1;
        response.body_sent += length;
    }
    if (response.body_sent < response.body.size()) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    bool close_after = response.close_after;
    http_responses_.erase(it);
    if (close_after) return -1;  // what is written is flushed, then the connection closes
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void Server::forget_http(lws *wsi) {
    health_waiters_.erase(wsi);
    sign_in_waiters_.erase(wsi);
    http_responses_.erase(wsi);
}

// Every occurrence of a header, each on its own (lws keeps repeated headers
// as fragments; lws_hdr_copy would join them with commas).
static HeaderValues header_values(lws *wsi, lws_token_indexes token) {
    HeaderValues values;
    // An absent header has no fragment 0; an empty one has, of length 0.
    std::vector<char> buffer(static_cast<size_t>(std::max(lws_hdr_total_length(wsi, token), 0)) + 1);
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, buffer.data(), static_cast<int>(buffer.size()), token, i);
        if (n < 0) break;
        values.emplace_back(buffer.data(), static_cast<size_t>(n));
    }
    return values;
}

// Why this request's framing is refused, or "": see request_framing_error.
// Also headers lws does not recognise because of a space before the colon.
static std::string framing_error(lws *wsi, const HeaderValues &content_length) {
    for (const char *odd : {"transfer-encoding :", "transfer-encoding\t:", "content-length :", "content-length\t:"})
        if (lws_hdr_custom_length(wsi, odd, static_cast<int>(strlen(odd))) >= 0)
            return "whitespace before a header's colon";
    return request_framing_error(content_length, header_values(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING));
}

// A body follows: a Content-Length (the only one, framing checked) above 0.
static bool has_body(const HeaderValues &content_length) {
    return !content_length.empty() && content_length[0].find_first_not_of(" \t0") != std::string::npos;
}

// A plain-text request on a TLS port (lws lets it through only to be
// answered here).
static bool plain_text_on_tls(const tls::State &state, lws *wsi) {
    return state.on() && !lws_is_ssl(wsi);
}

static HttpResponse speaks_https() {
    return text_response(HTTP_STATUS_BAD_REQUEST, "this server speaks HTTPS only: use https:// (and wss:// for /ws)");
}

int Server::on_http(lws *wsi, const char *uri) {
    if (plain_text_on_tls(tls_, wsi)) return answer_and_close(wsi, speaks_https());
    // HEAD is answered as GET without the body (PROTOCOL.md §2).
    bool is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0 || is_head_request(wsi);
    bool is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    std::string path = uri ? uri : "";

    // Where a request's body ends must be unambiguous, or what follows it
    // could be read as another request (RFC 9112 §6.3).
    HeaderValues content_length = header_values(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    std::string framing = framing_error(wsi, content_length);
    if (!framing.empty()) return answer_and_close(wsi, text_response(HTTP_STATUS_BAD_REQUEST, framing));
    if (stopping_)
        return answer_and_close(
            wsi, text_response(HTTP_STATUS_SERVICE_UNAVAILABLE, "the server is restarting", {{"retry-after", "1"}}));
    bool sign_in = path == "/auth/anonymous" && is_post && settings.anonymous_sign_in;
    if (has_body(content_length)) {
        // Only sign-in takes a body (and ignores it): it is read to its end,
        // then answered (sign_in_waiters_).
        if (!sign_in)
            return answer_and_close(wsi, text_response(HTTP_STATUS_BAD_REQUEST, "this request takes no body"));
        if (content_length[0].size() > 5)  // 100 kB or more: not worth reading
            return answer_and_close(wsi, text_response(HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "request body too large"));
        sign_in_waiters_.insert(wsi);
        return 0;
    }

    if (path == "/healthz" && is_get) {
        health_waiters_.insert(wsi);
        handler_.on_health_request();
        return 0;  // answered after the worker's next pass
    }
    if (path == "/" && is_get) {
        respond(wsi, endpoints_.page());
        return 0;
    }
    if (path == "/client.js" && is_get) {
        respond(wsi, endpoints_.client_library(if_none_match(wsi)));
        return 0;
    }
    if (path == "/vendor/markdown-it.mjs" && is_get) {
        respond(wsi, endpoints_.markdown_renderer(if_none_match(wsi)));
        return 0;
    }
    if (path == "/metrics" && is_get) {
        respond(wsi, HttpEndpoints::metrics(peer_address(wsi)));
        return 0;
    }
    if (path == "/auth/anonymous" && is_post) {
        // Without a Content-Length lws would take whatever follows for this
        // request's body: answer, then close.
        if (content_length.empty()) return answer_and_close(wsi, endpoints_.sign_in_anonymously(peer_address(wsi)));
        respond(wsi, endpoints_.sign_in_anonymously(peer_address(wsi)));
        return 0;
    }
    if (path == "/ws" && is_get) {  // without an upgrade: say what it takes
        respond(wsi, text_response(426, "this endpoint takes a WebSocket upgrade", {{"upgrade", "websocket"}}));
        return 0;
    }
    if (path == "/healthz" || path == "/" || path == "/metrics" || path == "/client.js" ||
        path == "/vendor/markdown-it.mjs" || (path == "/auth/anonymous" && settings.anonymous_sign_in)) {
        respond(wsi, text_response(HTTP_STATUS_METHOD_NOT_ALLOWED, "method not allowed",
                                   {{"allow", path == "/auth/anonymous" ? "POST" : "GET, HEAD"}}));
        return 0;
    }
    respond(wsi, text_response(HTTP_STATUS_NOT_FOUND, "not found"));
    return 0;
}

// Copies a URL argument (name without '='); returns false if absent.
static bool url_arg(lws *wsi, const char *name, std::string &out) {
    char buffer[4096];
    std::string key = std::string(name) + "=";
    const char *value = lws_get_urlarg_by_name(wsi, key.c_str(), buffer, sizeof(buffer));
    if (value == nullptr) return false;
    out = value;
    return true;
}

// An upgrade refused before lws answers it, counted.
static int refuse_upgrade(lws *wsi, const HttpResponse &response, RefuseReason reason = kRefuseBadHandshake) {
    count(metrics().connections_refused[reason]);
    return answer_and_close(wsi, response);
}

// The upgrade request is checked here, before lws answers it: lws 4.1.6
// accepts any Sec-WebSocket-Version and any non-empty key. (Not in
// LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, which lws 4.1.6 can call with freed
// header data: CVE-2025-11677; see on_confirm_upgrade.)
int Server::on_filter(lws *wsi, Connection **slot) {
    if (plain_text_on_tls(tls_, wsi)) return answer_and_close(wsi, speaks_https());
    char uri[256];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0)
        return refuse_upgrade(wsi, text_response(HTTP_STATUS_NOT_FOUND, "no WebSocket endpoint here"));
    // A body (none belongs here) would be read as WebSocket frames.
    HeaderValues content_length = header_values(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    std::string framing = framing_error(wsi, content_length);
    if (!framing.empty() || has_body(content_length))
        return refuse_upgrade(
            wsi, text_response(HTTP_STATUS_BAD_REQUEST, framing.empty() ? "an upgrade request has no body" : framing));
    switch (check_upgrade(header_values(wsi, WSI_TOKEN_VERSION), header_values(wsi, WSI_TOKEN_KEY))) {
        case UpgradeCheck::UnsupportedVersion:
            return refuse_upgrade(
                wsi, text_response(426, "only WebSocket version 13 is supported", {{"sec-websocket-version", "13"}}));
        case UpgradeCheck::BadKey:
            return refuse_upgrade(
                wsi, text_response(HTTP_STATUS_BAD_REQUEST, "Sec-WebSocket-Key must be the base64 of 16 bytes"));
        case UpgradeCheck::Ok: break;
    }
    if (connections_.size() + connections_of_other_workers() >= static_cast<size_t>(settings.max_connections))
        return refuse_upgrade(wsi, text_response(HTTP_STATUS_SERVICE_UNAVAILABLE, "too many connections"),
                              kRefuseTooManyConnections);

    auto conn = std::make_unique<Connection>();
    conn->id = next_id_++;
    conn->wsi = wsi;
    char peer[64] = {0};
    lws_get_peer_simple(wsi, peer, sizeof(peer));
    conn->remote_addr = peer;

    if (!url_arg(wsi, "token", conn->token)) {
        char header[4096];
        int n = lws_hdr_copy(wsi, header, sizeof(header), WSI_TOKEN_HTTP_AUTHORIZATION);
        if (n > 7 && strncasecmp(header, "Bearer ", 7) == 0) conn->token = header + 7;
    }
    url_arg(wsi, "session_id", conn->session_param);
    conn->has_cursor_param = url_arg(wsi, "last_event_id", conn->cursor_param);

    auto now = Clock::now();
    conn->last_received = conn->last_ping_sent = conn->rate_refilled = now;
    conn->rate_tokens = 2.0 * settings.max_messages_per_second;
    *slot = conn.get();
    connections_.emplace(conn->id, std::move(conn));
    return 0;
}

// lws 4.1.6 switches to HTTP/2 on "Upgrade: h2c" (also inside TLS, where
// ALPN never offers h2), and its HPACK decoder has an open CVE: only
// "websocket" passes. The header is read from lws's header table, never
// through `in`: after lws has refused an unknown upgrade itself, `in` points
// at freed header data (CVE-2025-11677) while the table is empty, so nothing
// more is written then and lws hangs up.
int Server::on_confirm_upgrade(lws *wsi) {
    char upgrade[16];
    int length = lws_hdr_copy(wsi, upgrade, sizeof(upgrade), WSI_TOKEN_UPGRADE);
    if (length > 0 && strcasecmp(upgrade, "websocket") == 0) return 0;
    if (length <= 0) return -1;
    if (plain_text_on_tls(tls_, wsi)) {
        answer_and_close(wsi, speaks_https());
    } else {
        answer_and_close(wsi, text_response(HTTP_STATUS_BAD_REQUEST, "only Upgrade: websocket is served here"));
    }
    return -1;
}

void Server::reject_frame(Connection &conn, const std::string &message) {
    send(conn, frames::error("bad_request", message));
    // A client that keeps sending garbage is told to back off.
    if (++conn.consecutive_bad_frames >= 10) close(conn, kClosePolicy, "too many bad frames");
}

int Server::on_receive(Connection &conn, const void *in, size_t len) {
    if (conn.close_code == 0 && refuse_unmasked(conn)) return 0;  // every fragment and piece
    auto now = Clock::now();
    conn.last_received = now;
    if (lws_is_first_fragment(conn.wsi)) conn.rx.clear();

    // Checked while fragments accumulate, so a huge message is never held.
    if (conn.rx.size() + len + lws_remaining_packet_payload(conn.wsi) > message_limit()) {
        drop_and_close(conn, kCloseTooBig, "message too big");
        return 0;
    }
    if (conn.close_code != 0) return 0;  // closing: ignore what still arrives
    count(metrics().bytes_received, len);
    conn.rx.append(static_cast<const char *>(in), len);
    if (!lws_is_final_fragment(conn.wsi) || lws_remaining_packet_payload(conn.wsi) > 0) return 0;

    std::string text;
    text.swap(conn.rx);
    if (conn.close_code != 0) return 0;
    count(metrics().frames_received);

    // Token bucket: max_messages_per_second, bursts of twice that.
    double rate = settings.max_messages_per_second;
    double elapsed = std::chrono::duration<double>(now - conn.rate_refilled).count();
    conn.rate_refilled = now;
    conn.rate_tokens = std::min(2.0 * rate, conn.rate_tokens + elapsed * rate);
    if (conn.rate_tokens < 1.0) {
        close(conn, kClosePolicy, "rate limit");
        return 0;
    }
    conn.rate_tokens -= 1.0;

    if (lws_frame_is_binary(conn.wsi)) {
        reject_frame(conn, "frames must be JSON text");
        return 0;
    }
    handler_.on_text(conn, text);
    return 0;
}

int Server::on_writeable(Connection &conn) {
    if (conn.close_sent) return 0;
    if (conn.ping_due) {
        conn.ping_due = false;
        // Not empty: lws 4.1 does not report a pong with no payload.
        unsigned char ping[LWS_PRE + 2] = {};
        memcpy(ping + LWS_PRE, "hb", 2);
        if (lws_write(conn.wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0) return -1;
    }
    uint64_t frames_sent = 0, bytes_sent = 0;  // counted once per write callback
    std::string &batch = write_batch_;
    while (!conn.out_queue.empty() && !lws_send_pipe_choked(conn.wsi)) {
        size_t length = conn.out_queue.front()->size();
        if (length >= kCoalesceBytes) {
            // A large frame goes alone, framed by lws (which needs LWS_PRE
            // bytes of headroom in front of it).
            batch.assign(LWS_PRE, '\0');
            batch += *conn.out_queue.front();
            auto *payload = reinterpret_cast<unsigned char *>(&batch[LWS_PRE]);
            if (lws_write(conn.wsi, payload, length, LWS_WRITE_TEXT) < static_cast<int>(length)) return -1;
            conn.out_bytes -= length;
            conn.out_queue.pop_front();
            conn.front_oversized = false;
            frames_sent++;
            bytes_sent += length;
            continue;
        }
        // Small frames (events of a replay or a burst) go out together: one
        // write instead of a send() and a poll() each.
        batch.assign(LWS_PRE, '\0');
        while (!conn.out_queue.empty()) {
            const std::string &next = *conn.out_queue.front();
            size_t next_length = next.size();
            if (batch.size() > LWS_PRE && batch.size() + kMaxFrameHeader + next_length > LWS_PRE + kCoalesceBytes)
                break;
            if (next_length >= kCoalesceBytes) break;
            append_text_frame_header(batch, next_length);
            batch += next;
            conn.out_bytes -= next_length;
            conn.out_queue.pop_front();
            frames_sent++;
            bytes_sent += next_length;
        }
        conn.front_oversized = false;
        size_t batch_length = batch.size() - LWS_PRE;
        // LWS_WRITE_HTTP: lws sends the bytes as they are (its raw path, TLS
        // included, keeping what the socket does not take for later).
        auto *bytes = reinterpret_cast<unsigned char *>(&batch[LWS_PRE]);
        if (lws_write(conn.wsi, bytes, batch_length, LWS_WRITE_HTTP) < static_cast<int>(batch_length)) return -1;
    }
    if (frames_sent > 0) {
        count(metrics().frames_sent, frames_sent);
        count(metrics().bytes_sent, bytes_sent);
    }
    if (conn.fed_again_below != 0 && conn.out_bytes < conn.fed_again_below) {
        conn.fed_again_below = 0;
        handler_.on_drained(conn);
    }
    if (!conn.out_queue.empty()) {
        lws_callback_on_writable(conn.wsi);
        return 0;
    }
    if (conn.close_code != 0) send_close_frame(conn);
    return 0;
}

// Written by hand rather than "lws_close_reason + return -1": Debian's lws
// is built with _DEBUG, where that path on libuv closes twice ("uv repeat
// test") and the socket is dropped before the close frame goes out; its
// timeout path drops it too.
static void write_close_frame(lws *wsi, int code, const std::string &reason) {
    unsigned char frame[LWS_PRE + 2 + 123];
    unsigned char *payload = frame + LWS_PRE;
    size_t reason_length = std::min<size_t>(reason.size(), 123);
    payload[0] = static_cast<unsigned char>((code >> 8) & 0xff);
    payload[1] = static_cast<unsigned char>(code & 0xff);
    memcpy(payload + 2, reason.data(), reason_length);
    // lws writes its own close frames with write protocol 4 (LWS_WRITE_CLOSE,
    // no longer in the public enum).
    constexpr auto kWriteClose = static_cast<lws_write_protocol>(4);
    lws_write(wsi, payload, 2 + reason_length, kWriteClose);
}

void Server::send_close_frame(Connection &conn) {
    // The peer answers our close frame with its own, upon which lws closes
    // the socket; if it never does, the timeout below does.
    if (conn.close_sent) return;
    conn.close_sent = true;
    write_close_frame(conn.wsi, conn.close_code, conn.close_reason);
    lws_set_timeout(conn.wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
}

// The peer's close frame. lws echoes it unless told otherwise (nonzero); an
// invalid one (RFC 6455 §5.5.1, §7.4) gets our own close frame with 1002 or
// 1007 instead, and an answer to our close frame gets nothing.
int Server::on_peer_close(lws *wsi, Connection *conn, const unsigned char *payload, size_t length) {
    // A second close frame makes browsers report 1006 instead of our code.
    if (conn != nullptr && conn->close_sent) return 1;
    int code = close_frame_error(payload, length);
    const char *reason = code == kCloseInvalidPayload ? "close reason is not UTF-8" : "invalid close frame";
    if (lws_frame_probe::masked(wsi) == lws_frame_probe::Masked::No) {
        code = kCloseProtocolError;
        reason = "unmasked frame";
    }
    if (code == 0) return 0;
    write_close_frame(wsi, code, reason);
    if (conn != nullptr) conn->close_sent = true;
    return 1;
}

// RFC 6455 §5.1: a client masks every frame; a server closes with 1002 when
// one is not. Returns true if this one was not (and the connection closes).
bool Server::refuse_unmasked(Connection &conn) {
    if (lws_frame_probe::masked(conn.wsi) != lws_frame_probe::Masked::No) return false;
    drop_and_close(conn, kCloseProtocolError, "unmasked frame");
    return true;
}

void Server::tell_to_come_back(Connection &conn) {
    // Jitter spreads the reconnects of many clients.
    int retry_after_ms = 1000 + static_cast<int>(random() % 2000);
    send(conn, frames::server_restarting(retry_after_ms));
    close(conn, kCloseRestart, "server restarting");
}

void Server::stop_accepting() {
    if (stopping_) return;
    stopping_ = true;
    // Closes the listening sockets; connections stay.
    if (listener_) listener_->close();
    for (lws *wsi : health_waiters_)
        respond(wsi,
                json_response(HTTP_STATUS_SERVICE_UNAVAILABLE, "{\"status\":\"restarting\",\"database\":false}\n",
                              {{"connection", "close"}}),
                /*close_after=*/true);
    health_waiters_.clear();
}

int Server::callback(lws *wsi, int reason_int, void *user, void *in, size_t len) {
    auto reason = static_cast<lws_callback_reasons>(reason_int);
    // Called while a TLS vhost is created; user is its SSL_CTX, not a slot.
    if (reason == LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS) {
        tls_failed_ = !tls_.configure(static_cast<SSL_CTX *>(user));
        return tls_failed_ ? 1 : 0;
    }
    auto **slot = static_cast<Connection **>(user);
    Connection *conn = slot ? *slot : nullptr;

    switch (reason) {
        case LWS_CALLBACK_HTTP: return on_http(wsi, static_cast<const char *>(in));
        case LWS_CALLBACK_HTTP_WRITEABLE: return write_http(wsi);
        case LWS_CALLBACK_HTTP_BODY: return 0;  // nothing to keep: no endpoint reads a body
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            // Called more than once for one body by lws 4.1.6: answer once.
            // At once, and then close: see answer_and_close.
            if (sign_in_waiters_.erase(wsi))
                return answer_and_close(wsi, endpoints_.sign_in_anonymously(peer_address(wsi)));
            return 0;
        case LWS_CALLBACK_CLOSED_HTTP: forget_http(wsi); break;
        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return on_confirm_upgrade(wsi);
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return slot ? on_filter(wsi, slot) : 1;
        case LWS_CALLBACK_ESTABLISHED:
            if (conn == nullptr) return 0;
            // Upgraded during shutdown (accepted before the listening
            // sockets closed): told to come back, never left in silence.
            if (stopping_) {
                count(metrics().connections_refused[kRefuseRestarting]);
                tell_to_come_back(*conn);
            } else {
                handler_.on_open(*conn);
            }
            return 0;
        case LWS_CALLBACK_RECEIVE: return conn ? on_receive(*conn, in, len) : -1;
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            return on_peer_close(wsi, conn, static_cast<const unsigned char *>(in), len);
        case LWS_CALLBACK_RECEIVE_PONG:
            if (conn && !refuse_unmasked(*conn)) conn->last_received = Clock::now();
            return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE: return conn ? on_writeable(*conn) : 0;
        case LWS_CALLBACK_CLOSED:
        case LWS_CALLBACK_WSI_DESTROY:
            if (conn) {
                *slot = nullptr;
                conn->wsi = nullptr;
                handler_.on_closed(*conn);
                connections_.erase(conn->id);
            }
            if (reason == LWS_CALLBACK_WSI_DESTROY) forget_http(wsi);
            return 0;
        default: break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

}  // namespace rws
