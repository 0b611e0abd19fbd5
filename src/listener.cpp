#include "listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// Out of file descriptors (or kernel memory), a readable listening socket
// stays readable: accepting pauses this long instead of spinning.
constexpr uint64_t kAcceptPauseMs = 100;
// Accepted per readiness callback, so that a flood cannot starve the pass.
constexpr int kAcceptsPerWake = 256;

struct Listener::Socket {
    uv_poll_t poll;
    uv_timer_t pause;
    int fd = -1;
    int open_handles = 0;  // poll and timer, until libuv has closed both
    Listener *owner = nullptr;
};

static void on_readable(uv_poll_t *handle, int status, int events);

static void resume_accepting(uv_timer_t *timer) {
    auto *socket = static_cast<Listener::Socket *>(timer->data);
    uv_poll_start(&socket->poll, UV_READABLE, on_readable);
}

static void on_readable(uv_poll_t *handle, int status, int) {
    auto *socket = static_cast<Listener::Socket *>(handle->data);
    if (status < 0) return;
    for (int i = 0; i < kAcceptsPerWake; i++) {
        int fd = accept4(socket->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;
            // As lws does for the sockets it accepts: no Nagle delay on frames.
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            socket->owner->accepted(fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection waits in the
        // backlog until there is room again.
        fprintf(stderr, "resumable_ws: accept failed: %s; pausing %llu ms\n", strerror(errno),
                static_cast<unsigned long long>(kAcceptPauseMs));
        uv_poll_stop(&socket->poll);
        uv_timer_start(&socket->pause, resume_accepting, kAcceptPauseMs, 0);
        return;
    }
}

Listener::Listener(uv_loop_t *loop, OnAccept on_accept) : loop_(loop), on_accept_(std::move(on_accept)) {}

Listener::~Listener() {
    close();
}

void Listener::accepted(int fd) {
    on_accept_(fd);
}

void Listener::listen(const std::vector<std::string> &addresses, int port, bool share_port) {
    if (addresses.empty()) throw std::runtime_error("resumable_ws.listen_addresses is empty");
    for (const auto &address : addresses) bind_address(address, port, share_port);
}

void Listener::bind_address(const std::string &address, int port, bool share_port) {
    if (address == "*") {
        // Every address: IPv6 and IPv4 on one socket, or IPv4 alone where
        // the host has no IPv6.
        sockaddr_in6 any6{};
        any6.sin6_family = AF_INET6;
        any6.sin6_addr = in6addr_any;
        any6.sin6_port = htons(static_cast<uint16_t>(port));
        try {
            open(reinterpret_cast<sockaddr *>(&any6), sizeof(any6), share_port, address, port);
            return;
        } catch (const std::runtime_error &) {
            if (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL) throw;
        }
        sockaddr_in any4{};
        any4.sin_family = AF_INET;
        any4.sin_addr.s_addr = htonl(INADDR_ANY);
        any4.sin_port = htons(static_cast<uint16_t>(port));
        open(reinterpret_cast<sockaddr *>(&any4), sizeof(any4), share_port, address, port);
        return;
    }
    // "localhost" is IPv4's loopback, as it always was here.
    std::string host = address == "localhost" ? "127.0.0.1" : address;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo *found = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (rc != 0)
        throw std::runtime_error("cannot listen on " + address + ":" + service + ": " + std::string(gai_strerror(rc)));
    try {
        for (addrinfo *ai = found; ai != nullptr; ai = ai->ai_next)
            open(ai->ai_addr, ai->ai_addrlen, share_port, address, port);
    } catch (...) {
        freeaddrinfo(found);
        throw;
    }
    freeaddrinfo(found);
}

void Listener::open(const sockaddr *address, socklen_t length, bool share_port, const std::string &name, int port) {
    auto fail = [&](int fd) {
        int saved = errno;
        std::string reason = strerror(saved);
        if (fd >= 0) ::close(fd);
        errno = saved;
        throw std::runtime_error("cannot listen on " + name + ":" + std::to_string(port) + ": " + reason);
    };
    int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(fd);
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) fail(fd);
    // Several workers bind the same port; with one worker the port stays
    // exclusive, so that a second server on it fails loudly.
    if (share_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) fail(fd);
    // "*" takes IPv4 too on its IPv6 socket; a named IPv6 address only itself.
    if (address->sa_family == AF_INET6) {
        const int *v6only = name == "*" ? &zero : &one;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only, sizeof(int)) < 0) fail(fd);
    }
    if (bind(fd, address, length) < 0 || ::listen(fd, SOMAXCONN) < 0) fail(fd);

    auto *socket = new Socket();
    socket->fd = fd;
    socket->owner = this;
    socket->poll.data = socket;
    socket->pause.data = socket;
    if (uv_poll_init_socket(loop_, &socket->poll, fd) != 0) {
        delete socket;
        errno = EINVAL;
        fail(fd);
    }
    uv_timer_init(loop_, &socket->pause);
    socket->open_handles = 2;
    sockets_.push_back(socket);
    uv_poll_start(&socket->poll, UV_READABLE, on_readable);
}

static void on_handle_closed(uv_handle_t *handle) {
    auto *socket = static_cast<Listener::Socket *>(handle->data);
    if (--socket->open_handles == 0) delete socket;
}

void Listener::close() {
    for (Socket *socket : sockets_) {
        uv_poll_stop(&socket->poll);
        uv_timer_stop(&socket->pause);
        ::close(socket->fd);
        socket->owner = nullptr;
        // Freed once libuv has closed both handles (on a later loop run;
        // a worker that exits first leaves that to the OS).
        uv_close(reinterpret_cast<uv_handle_t *>(&socket->poll), on_handle_closed);
        uv_close(reinterpret_cast<uv_handle_t *>(&socket->pause), on_handle_closed);
    }
    sockets_.clear();
}

}  // namespace rws
