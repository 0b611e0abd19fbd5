#include "protocol.hpp"

#include "event_frame.hpp"
#include "uuid.hpp"

#include <cerrno>
#include <cstdlib>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using json = nlohmann::ordered_json;

static std::string dump(const json &value) {
    // Replace invalid UTF-8 instead of throwing: frames must always serialise.
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool parse_event_id(const std::string &text, int64_t &out) {
    if (text.empty() || text.size() > 19) return false;
    for (char c : text)
        if (c < '0' || c > '9') return false;
    errno = 0;
    long long value = std::strtoll(text.c_str(), nullptr, 10);
    if (errno != 0 || value < 0) return false;
    out = value;
    return true;
}

static ClientFrame invalid(const std::string &why) {
    ClientFrame frame;
    frame.error = why;
    return frame;
}

// nlohmann-json parses iteratively but copies and serialises recursively, and
// a ping's fields are echoed back: a ping nested ~80,000 deep (a 160 kB frame,
// possible once max_message_size is raised) overflowed the worker's 8 MB
// stack. No frame of the protocol needs more than a few levels.
constexpr int kMaxFrameDepth = 64;

ClientFrame parse_client_frame(const std::string &text) {
    bool too_deep = false;
    json object = json::parse(
        text,
        [&too_deep](int depth, json::parse_event_t, json &) {
            too_deep = too_deep || depth > kMaxFrameDepth;
            return !too_deep;  // nothing deeper is kept
        },
        false);
    if (too_deep) return invalid("frame is nested too deeply");
    if (object.is_discarded() || !object.is_object()) return invalid("frame is not a JSON object");
    auto type_it = object.find("type");
    if (type_it == object.end() || !type_it->is_string()) return invalid("frame has no string type");
    const std::string type = type_it->get<std::string>();

    ClientFrame frame;
    if (type == "ping") {
        frame.type = ClientFrameType::Ping;
        frame.fields = std::move(object);
    } else if (type == "resume") {
        auto id = object.find("last_event_id");
        if (id == object.end() || !id->is_number_integer() || id->get<int64_t>() < 0)
            return invalid("resume needs a non-negative integer last_event_id");
        frame.type = ClientFrameType::Resume;
        frame.last_event_id = id->get<int64_t>();
    } else if (type == "user_message") {
        auto content = object.find("content");
        auto key = object.find("idempotency_key");
        if (content == object.end() || !content->is_string() || content->get_ref<const std::string &>().empty())
            return invalid("user_message needs a non-empty string content");
        if (key == object.end() || !key->is_string() || !parse_uuid(key->get<std::string>(), frame.idempotency_key))
            return invalid("user_message needs a UUID idempotency_key");
        frame.content = content->get<std::string>();
        // Postgres text and jsonb cannot hold NUL.
        if (frame.content.find('\0') != std::string::npos) return invalid("content contains a NUL character");
        frame.type = ClientFrameType::UserMessage;
    } else if (type == "cancel") {
        frame.type = ClientFrameType::Cancel;
    } else if (type == "auth") {
        auto token = object.find("token");
        if (token == object.end() || !token->is_string()) return invalid("auth needs a string token");
        frame.type = ClientFrameType::Auth;
        frame.token = token->get<std::string>();
    } else {
        return invalid("unknown frame type");
    }
    return frame;
}

namespace frames {

std::string ready(const std::string &session_id, int64_t last_event_id, bool resumed, int heartbeat_interval_ms) {
    return dump(json{{"type", "ready"},
                     {"session_id", session_id},
                     {"last_event_id", last_event_id},
                     {"resumed", resumed},
                     {"heartbeat_interval_ms", heartbeat_interval_ms}});
}

std::string error(const std::string &code, const std::string &message) {
    return dump(json{{"type", "error"}, {"code", code}, {"message", message}});
}

std::string ack(const std::string &idempotency_key, int64_t event_id, bool duplicate) {
    return dump(
        json{{"type", "ack"}, {"idempotency_key", idempotency_key}, {"event_id", event_id}, {"duplicate", duplicate}});
}

std::string pong(json fields) {
    fields["type"] = "pong";
    return dump(fields);
}

std::string event(int64_t id, const std::string &event_type, const std::string &payload_json,
                  const std::string &created_at) {
    std::string frame;
    frame.reserve(payload_json.size() + event_type.size() + 96);
    frame += "{\"type\":\"event\",\"id\":";
    frame += std::to_string(id);
    frame += ",\"event_type\":";
    frame += dump(json(event_type));
    frame += ",\"payload\":";
    frame += payload_json;
    frame += ",\"created_at\":\"";
    frame += created_at;
    frame += "\"}";
    return frame;
}

std::string replay_done(int64_t last_event_id) {
    return dump(json{{"type", "replay_done"}, {"last_event_id", last_event_id}});
}

std::string server_restarting(int retry_after_ms) {
    return dump(json{{"type", "server_restarting"}, {"retry_after_ms", retry_after_ms}});
}

std::string session_closed() {
    return dump(json{{"type", "session_closed"}});
}

}  // namespace frames
}  // namespace rws
