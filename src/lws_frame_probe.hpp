// Whether the WebSocket frame libwebsockets is parsing was masked. RFC 6455
// §5.1 says a server must close the connection (1002) on an unmasked client
// frame; lws 4.1.6 parses the MASK bit into a private field
// (roles/ws/ops-ws.c: ws->this_frame_masked) but neither checks it on the
// server side (that came in lws 5.0) nor exposes it.
//
// So this reads the private field, pinned to the one build it was read from:
// Debian 12's libwebsockets17 4.1.6 on 64-bit. init() compares the machine
// code of two public accessors that read the same private struct with the
// bytes that build has, so any other build or version turns the probe off
// (masked() then says "unknown") instead of reading the wrong bytes, and
// every read is cross-checked against the public accessors.
//
//   struct lws                     { ... struct _lws_websocket_related *ws  at 0xc8 ... }
//   struct _lws_websocket_related  { ... bit fields at byte 0xb5: bit 0 final,
//                                    bit 1 frame_is_binary, bit 2 all_zero_nonce,
//                                    bit 3 this_frame_masked;
//                                    size_t rx_packet_length at 0xc0 ... }
//
// Limit: lws answers a ping itself without calling us, so an unmasked ping
// (which carries no application data) is not seen; every data, pong and
// close frame is.
#pragma once

#include <libwebsockets.h>

#include <cstddef>
#include <cstring>

namespace rws {
namespace lws_frame_probe {

constexpr size_t kWsOffset = 0xc8;         // struct lws: ws
constexpr size_t kFlagsOffset = 0xb5;      // struct _lws_websocket_related: the bit fields
constexpr size_t kRemainingOffset = 0xc0;  // struct _lws_websocket_related: rx_packet_length
constexpr unsigned kBinaryBit = 1, kMaskedBit = 3;

inline bool &enabled() {
    static bool on = false;
    return on;
}

// Once, after lws is loaded. Returns whether the probe can be used.
inline bool init() {
    // lws_frame_is_binary: mov 0xc8(%rdi),%rax; movzbl 0xb5(%rax),%eax; shr %al; and $1,%eax; ret
    static const unsigned char kIsBinary[] = {0x48, 0x8b, 0x87, 0xc8, 0x00, 0x00, 0x00, 0x0f, 0xb6, 0x80,
                                              0xb5, 0x00, 0x00, 0x00, 0xd0, 0xe8, 0x83, 0xe0, 0x01, 0xc3};
    // lws_remaining_packet_payload: mov 0xc8(%rdi),%rax; mov 0xc0(%rax),%rax; ret
    static const unsigned char kRemaining[] = {0x48, 0x8b, 0x87, 0xc8, 0x00, 0x00, 0x00, 0x48,
                                               0x8b, 0x80, 0xc0, 0x00, 0x00, 0x00, 0xc3};
    const char *version = lws_get_library_version();
    auto is_binary = reinterpret_cast<const unsigned char *>(&lws_frame_is_binary);
    auto remaining = reinterpret_cast<const unsigned char *>(&lws_remaining_packet_payload);
    enabled() = sizeof(void *) == 8 && version != nullptr && strncmp(version, "4.1.6", 5) == 0 &&
                memcmp(is_binary, kIsBinary, sizeof(kIsBinary)) == 0 &&
                memcmp(remaining, kRemaining, sizeof(kRemaining)) == 0;
    return enabled();
}

enum class Masked { No, Yes, Unknown };

// For a connection in the WebSocket role (inside its RECEIVE, RECEIVE_PONG or
// WS_PEER_INITIATED_CLOSE callback): whether the frame being parsed had its
// MASK bit set.
inline Masked masked(lws *wsi) {
    if (!enabled() || wsi == nullptr) return Masked::Unknown;
    const unsigned char *ws;
    memcpy(&ws, reinterpret_cast<const unsigned char *>(wsi) + kWsOffset, sizeof(ws));
    if (ws == nullptr) return Masked::Unknown;
    size_t remaining;
    memcpy(&remaining, ws + kRemainingOffset, sizeof(remaining));
    unsigned flags = ws[kFlagsOffset];
    if (remaining != lws_remaining_packet_payload(wsi) ||
        ((flags >> kBinaryBit) & 1u) != (lws_frame_is_binary(wsi) ? 1u : 0u)) {
        enabled() = false;  // the layout is not what it was: never guess
        return Masked::Unknown;
    }
    return (flags >> kMaskedBit) & 1u ? Masked::Yes : Masked::No;
}

}  // namespace lws_frame_probe
}  // namespace rws
