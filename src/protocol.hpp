// The WebSocket frames of PROTOCOL.md §3: parsing what clients send and
// building what the server sends. Pure C++: no Postgres calls.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace rws {

enum class ClientFrameType { Invalid, Ping, Resume, UserMessage, Cancel, Auth };

struct ClientFrame {
    ClientFrameType type = ClientFrameType::Invalid;
    std::string error;              // Invalid: what is wrong, for the error frame
    nlohmann::ordered_json fields;  // Ping: the object, echoed back as pong
    int64_t last_event_id = 0;      // Resume
    std::string content;            // UserMessage
    std::string idempotency_key;    // UserMessage (canonical UUID)
    std::string token;              // Auth
};

ClientFrame parse_client_frame(const std::string &text);

// Parses a non-negative decimal event id (URL parameter or JSON number).
bool parse_event_id(const std::string &text, int64_t &out);

namespace frames {
std::string ready(const std::string &session_id, int64_t last_event_id, bool resumed, int heartbeat_interval_ms);
std::string error(const std::string &code, const std::string &message);
std::string ack(const std::string &idempotency_key, int64_t event_id, bool duplicate);
std::string pong(nlohmann::ordered_json fields);
std::string replay_done(int64_t last_event_id);
std::string server_restarting(int retry_after_ms);
std::string session_closed();
}  // namespace frames

}  // namespace rws
