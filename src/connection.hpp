// State of one WebSocket connection. Owned by the Server; the worker refers
// to connections by id across a pass, because a connection may close while a
// request of its is being committed.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

struct lws;

namespace rws {

using Clock = std::chrono::steady_clock;

// A text frame's payload. An event's frame is built once and shared by every
// connection it is queued to.
using Frame = std::shared_ptr<const std::string>;

struct Connection {
    uint64_t id = 0;
    lws *wsi = nullptr;
    std::string remote_addr;
    int64_t connected_at_us = 0;  // Unix microseconds, when it was upgraded
    int record = -1;              // its record for resumable_ws.connections(); -1: none

    // From the upgrade request.
    std::string token;
    std::string session_param;  // session_id=…, empty if absent
    std::string cursor_param;   // last_event_id=…, empty if absent
    bool has_cursor_param = false;

    // Authenticated identity.
    std::string user_id;
    int64_t token_expires_at = 0;

    // Session binding, set once the session is opened (after commit).
    enum class State { Opening, Ready, Closing } state = State::Opening;
    std::string session_id;
    std::string live_row_id;  // ws_live_connections.connection_id
    int64_t cursor = 0;       // newest event id queued to this connection
    bool replaying = false;   // replay_done still owed
    // Paced: events wait in the log until the queue is below this many
    // bytes (0: not waiting). Normally Server::feed_limit(); 1 (empty) before
    // an event too large to share the send buffer with anything.
    size_t fed_again_below = 0;
    std::vector<std::string> held_frames;  // client frames received before ready

    // Outgoing frames (payloads; framed when written).
    std::deque<Frame> out_queue;
    size_t out_bytes = 0;
    bool front_oversized = false;  // out_queue.front() is one event larger than the buffer, sent alone
    int close_code = 0;            // sent once out_queue is empty
    std::string close_reason;
    bool close_sent = false;  // our close frame is out; awaiting the peer's
    Clock::time_point close_requested_at;
    bool ping_due = false;

    // Incoming message being reassembled from fragments.
    std::string rx;

    // Liveness and abuse limits.
    Clock::time_point last_received;
    Clock::time_point last_seen_recorded;  // last_received as ws_live_connections.last_seen_at has it
    Clock::time_point last_ping_sent;
    double rate_tokens = 0;
    Clock::time_point rate_refilled;
    int consecutive_bad_frames = 0;
};

}  // namespace rws
