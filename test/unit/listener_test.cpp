// The listening sockets the workers open themselves: several share a port
// only when asked to, and what they accept reaches the callback as a
// non-blocking socket.
#include "listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <stdexcept>
#include <utility>
#include <vector>

using rws::Listener;

namespace {

// A port nothing listens on now (bound and released at once).
int unused_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0);
    socklen_t length = sizeof(address);
    getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
    close(fd);
    return ntohs(address.sin_port);
}

// connect() to 127.0.0.1:port; returns the socket and whether it connected.
std::pair<int, bool> try_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    bool connected = connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0;
    return {fd, connected};
}

int connect_to(int port) {
    auto [fd, connected] = try_connect(port);
    EXPECT_TRUE(connected);
    return fd;
}

struct Loop {
    uv_loop_t loop;
    Loop() { uv_loop_init(&loop); }
    ~Loop() {
        uv_run(&loop, UV_RUN_NOWAIT);  // close callbacks
        uv_loop_close(&loop);
    }
    // Runs the loop until done() or two seconds pass.
    template <typename Done>
    bool run_until(Done done) {
        for (int i = 0; i < 200 && !done(); i++) {
            uv_run(&loop, UV_RUN_NOWAIT);
            usleep(10000);
        }
        return done();
    }
};

}  // namespace

TEST(Listener, APortIsSharedOnlyWhenAsked) {
    Loop l;
    int port = unused_port();
    Listener first(&l.loop, [](int fd) { close(fd); });
    Listener second(&l.loop, [](int fd) { close(fd); });
    first.listen({"127.0.0.1"}, port, /*share_port=*/true);
    second.listen({"127.0.0.1"}, port, /*share_port=*/true);
    EXPECT_TRUE(first.listening() && second.listening());

    Listener alone(&l.loop, [](int fd) { close(fd); });
    try {
        alone.listen({"127.0.0.1"}, port, /*share_port=*/false);
        FAIL() << "an exclusive bind of a shared port succeeded";
    } catch (const std::runtime_error &e) {
        EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
            << e.what();
    }
    first.close();
    second.close();
}

TEST(Listener, AnExclusivePortRefusesASecondListener) {
    Loop l;
    int port = unused_port();
    Listener first(&l.loop, [](int fd) { close(fd); });
    first.listen({"localhost"}, port, /*share_port=*/false);
    Listener second(&l.loop, [](int fd) { close(fd); });
    EXPECT_THROW(second.listen({"127.0.0.1"}, port, /*share_port=*/true), std::runtime_error);
}

TEST(Listener, AcceptedSocketsReachTheCallbackNonBlocking) {
    Loop l;
    int port = unused_port();
    std::vector<int> accepted;
    Listener listener(&l.loop, [&accepted](int fd) { accepted.push_back(fd); });
    listener.listen({"127.0.0.1"}, port, false);
    int clients[3] = {connect_to(port), connect_to(port), connect_to(port)};
    ASSERT_TRUE(l.run_until([&] { return accepted.size() == 3; })) << accepted.size() << " accepted";
    for (int fd : accepted) {
        EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
        EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
    }
    for (int fd : clients) close(fd);

    // Closed: a new connection is refused.
    listener.close();
    EXPECT_FALSE(listener.listening());
    auto [fd, connected] = try_connect(port);
    EXPECT_FALSE(connected);
    close(fd);
}

TEST(Listener, BadAddressesAreNamedInTheError) {
    Loop l;
    Listener listener(&l.loop, [](int fd) { close(fd); });
    try {
        listener.listen({"192.0.2.1"}, unused_port(), false);  // TEST-NET: not ours
        FAIL() << "listened on an address this host does not have";
    } catch (const std::runtime_error &e) {
        EXPECT_NE(std::string(e.what()).find("cannot listen on 192.0.2.1:"), std::string::npos) << e.what();
    }
    EXPECT_THROW(listener.listen({}, unused_port(), false), std::runtime_error);
}
