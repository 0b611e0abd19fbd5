// The event frame ({"type":"event",…}, PROTOCOL.md §3), built from a row of
// ws_events (defined in protocol.cpp with the other frames). Its own header,
// without nlohmann, for the Postgres-side code that reads the log.
#pragma once

#include <cstdint>
#include <string>

namespace rws::frames {

// payload_json: jsonb's text output (valid JSON, sent as is); created_at:
// ISO 8601 in UTC, as the log query formats it.
std::string event(int64_t id, const std::string &event_type, const std::string &payload_json,
                  const std::string &created_at);

}  // namespace rws::frames
