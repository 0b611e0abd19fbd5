// Fuzz target: what a client can send. Every WebSocket text frame goes
// through parse_client_frame, and last_event_id from the URL through
// parse_event_id; neither may crash, and what they accept must be what the
// server relies on afterwards.
#include "fuzz_check.hpp"
#include "protocol.hpp"
#include "uuid.hpp"

#include <cstdint>
#include <string>

using json = nlohmann::ordered_json;

// parse_event_id's contract, computed independently: decimal digits only,
// at most 19 of them, and at most INT64_MAX.
static void check_event_id(const std::string &text) {
    int64_t id = -1;
    bool accepted = rws::parse_event_id(text, id);
    bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || text.size() > 19) {
        FUZZ_CHECK(!accepted, "event id accepted although not 1-19 decimal digits");
        return;
    }
    size_t first = text.find_first_not_of('0');
    std::string canonical = first == std::string::npos ? "0" : text.substr(first);
    const std::string max = "9223372036854775807";
    bool in_range = canonical.size() < max.size() || (canonical.size() == max.size() && canonical <= max);
    FUZZ_CHECK(accepted == in_range, "event id accepted out of range or refused in range");
    if (accepted) FUZZ_CHECK(std::to_string(id) == canonical, "event id has another value");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    check_event_id(text);

    rws::ClientFrame frame = rws::parse_client_frame(text);
    switch (frame.type) {
        case rws::ClientFrameType::Invalid:
            FUZZ_CHECK(!frame.error.empty(), "a refused frame says why");
            // The bad_request frame must serialise whatever the input was.
            (void)rws::frames::error("bad_request", frame.error);
            break;
        case rws::ClientFrameType::Ping: {
            // The pong echoes the ping's fields exactly, with type "pong".
            json expected = frame.fields;
            expected["type"] = "pong";
            std::string pong = rws::frames::pong(std::move(frame.fields));
            json echoed = json::parse(pong, nullptr, false);
            FUZZ_CHECK(!echoed.is_discarded(), "pong is JSON");
            FUZZ_CHECK(echoed == expected, "pong echoes the ping's fields");
            break;
        }
        case rws::ClientFrameType::Resume: FUZZ_CHECK(frame.last_event_id >= 0, "resume cursor is non-negative"); break;
        case rws::ClientFrameType::UserMessage: {
            // Stored as jsonb: non-empty valid UTF-8 without NUL; the key canonical.
            FUZZ_CHECK(!frame.content.empty(), "content is non-empty");
            FUZZ_CHECK(frame.content.find('\0') == std::string::npos, "content has no NUL");
            FUZZ_CHECK(fuzz::is_valid_utf8(frame.content), "content is valid UTF-8");
            std::string canonical;
            FUZZ_CHECK(rws::parse_uuid(frame.idempotency_key, canonical) && canonical == frame.idempotency_key,
                       "idempotency key is a canonical UUID");
            break;
        }
        case rws::ClientFrameType::Cancel:
        case rws::ClientFrameType::Auth: break;
    }
    return 0;
}
