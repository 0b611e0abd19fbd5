// The HTTP/WebSocket server: libwebsockets on a libuv loop owned by the
// worker (a "foreign loop"), so that the worker waits on the loop's backend
// fd in its one WaitEventSet. Callbacks only parse and hand work to the
// ServerHandler; they never touch SPI.
#pragma once

#include "connection.hpp"
#include "http_endpoints.hpp"
#include "listener.hpp"
#include "tls.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

struct lws_context;
struct lws_vhost;
typedef struct uv_loop_s uv_loop_t;

namespace rws {

// What the server asks of the worker. Runs inside uv_run on the worker's
// thread; must not call Postgres.
class ServerHandler {
  public:
    virtual ~ServerHandler() = default;
    virtual void on_open(Connection &conn) = 0;
    virtual void on_text(Connection &conn, const std::string &text) = 0;
    virtual void on_closed(Connection &conn) = 0;
    // The queue of a connection that was behind fell below its mark.
    virtual void on_drained(Connection &conn) = 0;
    virtual void on_health_request() = 0;
};

// WebSocket close codes of PROTOCOL.md §3.
enum CloseCode {
    kCloseProtocolError = 1002,
    kCloseInvalidPayload = 1007,
    kCloseUnauthorized = 4001,
    kCloseForbidden = 4003,
    kCloseSessionNotFound = 4004,
    kCloseTooSlow = 4010,
    kClosePolicy = 1008,
    kCloseTooBig = 1009,
    kCloseInternal = 1011,
    kCloseRestart = 1012,
};

class Server {
  public:
    Server(uv_loop_t *loop, ServerHandler &handler);
    ~Server();
    // Reads the TLS files the settings name: "" (TLS on, or off as asked) or
    // why TLS was asked for and cannot be used. Called before start().
    std::string prepare_tls();
    bool tls_on() const { return tls_.on(); }
    std::string tls_certificate() const { return tls_.describe(); }
    // After SIGHUP: a new certificate for new handshakes, or Restart when TLS
    // was switched on or off.
    tls::Reload reload_tls();
    // Binds resumable_ws.listen_addresses:port (shared with the other
    // workers when there are several; with TLS if prepare_tls said so);
    // throws on failure.
    void start();
    // The page, the client library, sign-in, metrics, health.
    HttpEndpoints &endpoints() { return endpoints_; }

    // Events are fed to a connection only while its queue is below this
    // share of max_send_buffer: bursts and replays are paced by the reader,
    // and 4010 is left for a queue that grows anyway (answers a client never
    // reads, or a single event larger than the buffer).
    static size_t feed_limit();
    // The largest client message: max_message_size, and never more than
    // what may enter the log as one event.
    static size_t message_limit();

    Connection *find(uint64_t id);
    size_t connection_count() const { return connections_.size(); }
    void for_each(const std::function<void(Connection &)> &fn);

    // Queues a text frame. Over max_send_buffer the connection is closed 4010;
    // one frame larger than that by itself goes out alone into an empty queue.
    void send(Connection &conn, const Frame &frame);
    void send(Connection &conn, std::string frame);
    // Writes what send() queued for connections whose queue was empty. The
    // worker calls it at the end of each loop pass.
    void flush();
    // Sends what is queued, then closes with this code.
    void close(Connection &conn, int code, const std::string &reason);
    // Drops what is queued and what was received, then closes.
    void drop_and_close(Connection &conn, int code, const std::string &reason);
    // Answers a malformed frame with bad_request; many in a row close 1008.
    void reject_frame(Connection &conn, const std::string &message);
    // Sends an error frame, then closes.
    void fail(Connection &conn, const std::string &error_code, const std::string &message, int close_code);

    // Pings, closes silent connections and those whose token expired.
    void tick(Clock::time_point now, int64_t unix_now);

    // Answers every pending GET /healthz: 200 on a reachable primary, 503
    // on a hot standby or when the database cannot be reached.
    void answer_health(bool database_ok, bool standby);

    // Sends server_restarting (retry_after_ms jittered) and closes 1012.
    void tell_to_come_back(Connection &conn);

    // Shutdown: no new connections (the listening sockets close); an upgrade
    // already under way is told server_restarting, HTTP requests get 503.
    void stop_accepting();

    // lws callback (public for the C trampoline).
    int callback(lws *wsi, int reason, void *user, void *in, size_t len);

  private:
    // An accepted socket becomes an lws connection on our vhost.
    void adopt(int fd);
    int on_http(lws *wsi, const char *uri);
    int on_peer_close(lws *wsi, Connection *conn, const unsigned char *payload, size_t length);
    bool refuse_unmasked(Connection &conn);
    void respond(lws *wsi, HttpResponse response, bool close_after = false);
    int write_http(lws *wsi);
    void forget_http(lws *wsi);
    int on_confirm_upgrade(lws *wsi);
    int on_filter(lws *wsi, Connection **slot);
    int on_receive(Connection &conn, const void *in, size_t len);
    int on_writeable(Connection &conn);
    void send_close_frame(Connection &conn);

    uv_loop_t *loop_;
    ServerHandler &handler_;
    lws_context *context_ = nullptr;
    lws_vhost *vhost_ = nullptr;
    std::unique_ptr<Listener> listener_;
    uint64_t next_id_ = 1;
    bool stopping_ = false;  // stop_accepting() was called
    std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
    std::unordered_set<lws *> health_waiters_;                // waiting for the next pass
    std::unordered_set<lws *> sign_in_waiters_;               // reading a request body first
    std::unordered_map<lws *, HttpResponse> http_responses_;  // being written
    // Small frames queued for one connection are written together, up to
    // this many bytes per write.
    static constexpr size_t kCoalesceBytes = 64 * 1024;
    std::string write_batch_;         // reused: no allocation per write
    std::vector<uint64_t> to_flush_;  // connections whose queue send() started
    HttpEndpoints endpoints_;
    tls::State tls_;
    bool tls_failed_ = false;  // the vhost being created refused the certificate
};

}  // namespace rws
