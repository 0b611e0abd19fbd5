// The per-connection protocol (PROTOCOL.md §3): the token at the upgrade and
// in auth frames (with waits for an unknown kid), and each client frame
// parsed, validated and answered — at once when it needs no database
// (ping, auth, cancel), else queued as a Request for the hub's next pass.
#pragma once

#include "auth.hpp"
#include "connection.hpp"
#include "generations.hpp"
#include "jwt_keys.hpp"
#include "request_batch.hpp"
#include "server.hpp"
#include "session_registry.hpp"

#include <string>
#include <vector>

namespace rws {

class ClientProtocol {
  public:
    ClientProtocol(JwtKeys &keys, Generations &generations, SessionRegistry &registry)
        : keys_(keys), generations_(generations), registry_(registry) {}
    void attach(Server *server) { server_ = server; }

    // A new WebSocket: its token is checked (or waits for the JWKS).
    void on_open(Connection &conn);
    // A text frame: held until the session is ready, then dispatched.
    void on_text(Connection &conn, const std::string &text);
    // A frame of a connection whose session is ready.
    void dispatch(Connection &conn, const std::string &text);

    // The JWKS keys changed, or a read of jwt_jwks_url ended: tokens that
    // wait on an unknown kid are verified again.
    void keys_refreshed();
    // Once a second: refuses tokens that waited too long for the JWKS.
    void expire_key_waits(Clock::time_point now);

    // Requests for the next pass, in arrival order.
    void enqueue(Request request);
    std::vector<Request> take_requests();
    // Requests that had to wait on a lock go first next time; if nothing
    // else came, the next pass waits a little (deferred_only()).
    void put_back(std::vector<Request> deferred);
    bool has_requests() const { return !requests_.empty(); }
    bool deferred_only() const { return deferred_only_; }

  private:
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

    JwtKeys &keys_;
    Generations &generations_;
    SessionRegistry &registry_;
    Server *server_ = nullptr;
    std::vector<KeyWait> key_waits_;
    std::vector<Request> requests_;
    bool deferred_only_ = false;  // every queued request waits on a lock
};

}  // namespace rws
