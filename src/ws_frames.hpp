// Server-to-client WebSocket text frames written by us rather than by lws, so
// that many small frames go out in one write (RFC 6455 §5.2: FIN, opcode 1,
// no mask, the payload length in 7, 16 or 64 bits). Pure C++: no Postgres
// calls, safe from lws callbacks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rws {

// The longest header: 2 bytes and a 64-bit length.
constexpr size_t kMaxFrameHeader = 10;

// Appends the header of a final, unmasked text frame of `length` bytes.
void append_text_frame_header(std::string &out, size_t length);

}  // namespace rws
