#include "delivery.hpp"

#include "event_frame.hpp"
#include "metrics.hpp"
#include "protocol.hpp"
#include "settings.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

// Events read per session per pass: bounds a pass's latency and memory.
constexpr int kReadBatch = 500;

int Delivery::idle_timeout_ms() const {
    if (!maybe_closed_.empty()) return failing_ ? 250 : 0;
    for (const auto &session_id : marked_)
        if (registry_.watched(session_id)) return failing_ ? 250 : 0;
    return -1;
}

Delivery::Offer Delivery::offer(Connection &conn, int64_t id, const Frame &frame) {
    if (id != conn.cursor + 1) {
        // Ids are dense by construction; a gap means a bug. Stop here rather
        // than skip an event.
        fprintf(stderr, "resumable_ws: gap in session %s after event %lld\n", conn.session_id.c_str(),
                static_cast<long long>(conn.cursor));
        return Offer::Stop;
    }
    if (conn.out_bytes >= Server::feed_limit()) {
        conn.fed_again_below = Server::feed_limit();
        return Offer::Full;
    }
    if (conn.out_bytes > 0 && conn.out_bytes + frame->size() > static_cast<size_t>(settings.max_send_buffer)) {
        // Too large to share the buffer: it goes alone, once the queue is
        // empty (an old event, or a lowered limit).
        conn.fed_again_below = 1;
        return Offer::Full;
    }
    server_->send(conn, frame);
    conn.cursor = id;
    return conn.state == Connection::State::Ready ? Offer::Sent : Offer::Stop;  // closed meanwhile
}

void Delivery::send_appended(const AppendBatch &appends) {
    const std::vector<NewEvent> &events = appends.events();  // by session, in id order
    uint64_t delivered = 0;
    std::vector<Frame> frames;
    for (size_t begin = 0, end = 0; begin < events.size(); begin = end) {
        const std::string &session_id = events[begin].session_id;
        end = begin;
        while (end < events.size() && events[end].session_id == session_id) end++;
        std::vector<Connection *> *connections = registry_.find(session_id);
        if (connections == nullptr) continue;
        frames.clear();
        bool all_caught_up = true;
        for (Connection *conn : *connections) {
            if (conn->state != Connection::State::Ready) continue;
            if (conn->replaying || conn->fed_again_below != 0 || conn->cursor != events[begin].id - 1) {
                all_caught_up = false;  // behind, paused or replaying: it reads the log
                continue;
            }
            if (frames.empty())
                for (size_t i = begin; i < end; i++)
                    frames.push_back(std::make_shared<const std::string>(frames::event(
                        events[i].id, events[i].event_type, events[i].payload_json, appends.created_at())));
            int64_t cursor_before = conn->cursor;
            for (size_t i = begin; i < end; i++)
                if (offer(*conn, events[i].id, frames[i - begin]) != Offer::Sent) break;
            delivered += static_cast<uint64_t>(conn->cursor - cursor_before);
            if (conn->cursor != events[end - 1].id) all_caught_up = false;
            registry_.record(*conn);
        }
        if (!all_caught_up) mark(session_id);
    }
    if (delivered > 0) count(metrics().events_delivered, delivered);
}

void Delivery::deliver() {
    if (marked_.empty() && maybe_closed_.empty()) return;
    std::vector<std::string> to_read;
    for (const auto &session_id : marked_)
        if (registry_.watched(session_id)) to_read.push_back(session_id);
    std::vector<std::string> to_check(maybe_closed_.begin(), maybe_closed_.end());
    if (to_read.empty() && to_check.empty()) {
        marked_.clear();
        return;
    }

    failing_ = !db_.transact([&](EventLog &log) {
        // Every session's new events in one read: one statement per pass
        // however many sessions are behind.
        std::vector<Readers> plans;
        std::vector<EventLog::Cursor> cursors;
        for (const auto &session_id : to_read) {
            std::vector<Connection *> *connections = registry_.find(session_id);
            Readers readers = connections == nullptr ? Readers() : ready_readers(session_id, *connections);
            if (readers.connections.empty()) {
                marked_.erase(session_id);
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
                if (feed(plans[i], events, begin, end)) marked_.erase(plans[i].session_id);
                begin = end;
            }
        }
        for (const auto &session_id : to_check) {
            // Events committed before the close are delivered first.
            if (registry_.watched(session_id) && !marked_.count(session_id)) {
                SessionRow row = log.get_session(session_id);
                if (!row.found || !row.active) close_session_connections(session_id);
            }
            if (!marked_.count(session_id)) maybe_closed_.erase(session_id);
        }
    });
    // Sessions no one watches any more need no reading.
    for (auto it = marked_.begin(); it != marked_.end();)
        it = registry_.watched(*it) ? std::next(it) : marked_.erase(it);
}

Delivery::Readers Delivery::ready_readers(const std::string &session_id, std::vector<Connection *> &connections) {
    const size_t feed_limit = Server::feed_limit();
    Readers readers;
    readers.session_id = session_id;
    readers.from = INT64_MAX;
    for (Connection *conn : connections) {
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

bool Delivery::feed(const Readers &readers, const std::vector<EventRow> &events, size_t begin, size_t end) {
    bool batch_full = end - begin == static_cast<size_t>(kReadBatch);
    bool wants_more = false;  // someone took the whole batch: read on next pass
    uint64_t delivered = 0, replayed = 0;
    for (Connection *conn : readers.connections) {
        int64_t cursor_before = conn->cursor;
        bool was_replaying = conn->replaying;
        for (size_t i = begin; i < end; i++) {
            if (events[i].id <= conn->cursor) continue;
            if (offer(*conn, events[i].id, events[i].frame) != Offer::Sent) break;
        }
        uint64_t fed = static_cast<uint64_t>(conn->cursor - cursor_before);
        delivered += fed;
        if (was_replaying) replayed += fed;
        if (fed > 0) registry_.record(*conn);
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

void Delivery::close_session_connections(const std::string &session_id) {
    std::vector<Connection *> *connections = registry_.find(session_id);
    if (connections == nullptr) return;
    for (Connection *conn : *connections) {
        server_->send(*conn, frames::session_closed());
        server_->close(*conn, kCloseSessionNotFound, "session closed");
    }
}

}  // namespace rws
