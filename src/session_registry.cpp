#include "session_registry.hpp"

#include "connection_records.hpp"

#include <algorithm>
#include <cstring>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

void SessionRegistry::join(Connection &conn) {
    sessions_[conn.session_id].push_back(&conn);
}

void SessionRegistry::leave(Connection &conn) {
    if (conn.session_id.empty()) return;
    auto it = sessions_.find(conn.session_id);
    if (it == sessions_.end()) return;
    auto &list = it->second;
    list.erase(std::remove(list.begin(), list.end(), &conn), list.end());
    if (list.empty()) sessions_.erase(it);
}

std::vector<Connection *> *SessionRegistry::find(const std::string &session_id) {
    auto it = sessions_.find(session_id);
    return it == sessions_.end() ? nullptr : &it->second;
}

static void fill_text(char *out, size_t size, const std::string &text) {
    size_t n = std::min(size - 1, text.size());
    memcpy(out, text.data(), n);
    out[n] = '\0';
}

void SessionRegistry::record(const Connection &conn) const {
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

}  // namespace rws
