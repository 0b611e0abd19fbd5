// Which connections watch which session, and each connection's record in
// shared memory (resumable_ws.connections()). Connections join once their
// session is open (after the commit) and leave when they close.
#pragma once

#include "connection.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace rws {

class SessionRegistry {
  public:
    explicit SessionRegistry(int worker_pid) : worker_pid_(worker_pid) {}

    void join(Connection &conn);   // conn.session_id set
    void leave(Connection &conn);  // no-op if it never joined
    // The connections of a session (nullptr: nobody watches it).
    std::vector<Connection *> *find(const std::string &session_id);
    bool watched(const std::string &session_id) const { return sessions_.count(session_id) != 0; }
    const std::unordered_map<std::string, std::vector<Connection *>> &sessions() const { return sessions_; }

    // Writes the connection's record (its cursor, queued bytes …).
    void record(const Connection &conn) const;

  private:
    int worker_pid_;
    std::unordered_map<std::string, std::vector<Connection *>> sessions_;
};

}  // namespace rws
