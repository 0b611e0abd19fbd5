// The listening sockets, opened by the worker itself rather than by lws, so
// that several workers can share one port: each binds it with SO_REUSEPORT
// and the kernel spreads new connections over them. (Debian's lws 4.1.6 sets
// that option only for multi-threaded contexts, warmcat/libwebsockets#2470.)
// Accepted sockets are handed to a callback, which gives them to lws.
#pragma once

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

typedef struct uv_loop_s uv_loop_t;

namespace rws {

class Listener {
  public:
    // Takes ownership of the accepted, non-blocking socket.
    using OnAccept = std::function<void(int fd)>;

    Listener(uv_loop_t *loop, OnAccept on_accept);
    ~Listener();
    Listener(const Listener &) = delete;
    Listener &operator=(const Listener &) = delete;

    // Binds every address (host names, IP addresses, "localhost", "*" for
    // all) on port and starts accepting. share_port: SO_REUSEPORT, for
    // several workers. Throws with the address that failed.
    void listen(const std::vector<std::string> &addresses, int port, bool share_port);
    // Closes the listening sockets: nothing new is accepted.
    void close();
    bool listening() const { return !sockets_.empty(); }
    // From the accept loop: hands one accepted socket on.
    void accepted(int fd);

    struct Socket;  // listener.cpp

  private:
    void bind_address(const std::string &address, int port, bool share_port);
    void open(const sockaddr *address, socklen_t length, bool share_port, const std::string &name, int port);

    uv_loop_t *loop_;
    OnAccept on_accept_;
    std::vector<Socket *> sockets_;  // freed by libuv's close callback
};

}  // namespace rws
