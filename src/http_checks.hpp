// Checks of what a peer sends before it is trusted with anything: the framing
// of an HTTP request (RFC 9112 §6), the WebSocket opening handshake (RFC 6455
// §4.2.1) and close frames (RFC 6455 §5.5.1, §7.4). libwebsockets 4.1.6 does
// none of these itself. Pure C++: unit tested and fuzzed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace rws {

// Every value of one header, one entry per occurrence in the request.
using HeaderValues = std::vector<std::string>;

// Why the end of a request's body is ambiguous, or "" when it is not. Any
// Transfer-Encoding is refused (lws reads no chunked request body, so its
// chunks would be taken for the next request: request smuggling behind a
// proxy), as are more than one Content-Length and one that is not a plain
// decimal number.
std::string request_framing_error(const HeaderValues &content_length, const HeaderValues &transfer_encoding);

enum class UpgradeCheck {
    Ok,
    UnsupportedVersion,  // answer 426 with Sec-WebSocket-Version: 13
    BadKey,              // answer 400
};
// Exactly one Sec-WebSocket-Version, 13; exactly one Sec-WebSocket-Key, the
// base64 of 16 bytes.
UpgradeCheck check_upgrade(const HeaderValues &version, const HeaderValues &key);

// The close code to answer a peer's close frame with instead of echoing it,
// or 0 to echo it: 1002 for a one-byte payload or a code that may not be
// sent, 1007 for a reason that is not UTF-8.
int close_frame_error(const unsigned char *payload, size_t length);

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(const unsigned char *text, size_t length);

}  // namespace rws
