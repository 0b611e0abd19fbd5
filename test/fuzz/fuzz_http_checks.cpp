// Fuzz target: what a client sends before it is trusted: the headers that
// frame an HTTP request and open a WebSocket, and close frames. Input: lines
// "<letter><value>" (c: Content-Length, t: Transfer-Encoding, v:
// Sec-WebSocket-Version, k: Sec-WebSocket-Key), each one occurrence; the
// whole input is also a close frame's payload. What the checks accept must
// be exactly what the server relies on afterwards.
#include "fuzz_check.hpp"
#include "http_checks.hpp"

#include <openssl/evp.h>

#include <cstdint>
#include <string>

static std::string trimmed(const std::string &value) {
    size_t begin = value.find_first_not_of(" \t");
    if (begin == std::string::npos) return std::string();
    return value.substr(begin, value.find_last_not_of(" \t") - begin + 1);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string input(reinterpret_cast<const char *>(data), size);
    rws::HeaderValues content_length, transfer_encoding, version, key;
    size_t start = 0;
    while (start < input.size()) {
        size_t end = input.find('\n', start);
        if (end == std::string::npos) end = input.size();
        std::string line = input.substr(start, end - start);
        start = end + 1;
        if (line.empty()) continue;
        std::string value = line.substr(1);
        switch (line[0]) {
            case 'c': content_length.push_back(value); break;
            case 't': transfer_encoding.push_back(value); break;
            case 'v': version.push_back(value); break;
            case 'k': key.push_back(value); break;
            default: break;
        }
    }

    // Framing: clear only with no Transfer-Encoding and at most one
    // Content-Length of 1-18 digits (so it fits lws's int64).
    std::string framing = rws::request_framing_error(content_length, transfer_encoding);
    if (framing.empty()) {
        FUZZ_CHECK(transfer_encoding.empty() && content_length.size() <= 1, "ambiguous framing accepted");
        if (!content_length.empty()) {
            std::string digits = trimmed(content_length[0]);
            FUZZ_CHECK(
                !digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string::npos,
                "a Content-Length that is not a number accepted");
        }
    }

    // Handshake: accepted keys decode to exactly 16 bytes and re-encode to
    // themselves (OpenSSL's base64, independently).
    if (rws::check_upgrade(version, key) == rws::UpgradeCheck::Ok) {
        FUZZ_CHECK(version.size() == 1 && trimmed(version[0]) == "13", "a version other than 13 accepted");
        FUZZ_CHECK(key.size() == 1 && key[0].size() == 24, "a key of the wrong length accepted");
        unsigned char decoded[24];
        int n = EVP_DecodeBlock(decoded, reinterpret_cast<const unsigned char *>(key[0].data()), 24);
        FUZZ_CHECK(n == 18, "an accepted key is not base64");  // 16 bytes + 2 of padding
        unsigned char encoded[32];
        EVP_EncodeBlock(encoded, decoded, 16);
        FUZZ_CHECK(std::string(reinterpret_cast<char *>(encoded), 24) == key[0], "an accepted key is not canonical");
    }

    // Close frames: echoed only when empty, or a code a peer may send with a
    // UTF-8 reason.
    const auto *payload = reinterpret_cast<const unsigned char *>(data);
    int answer = rws::close_frame_error(payload, size);
    FUZZ_CHECK(answer == 0 || answer == 1002 || answer == 1007, "an unknown close answer");
    if (answer == 0 && size > 0) {
        FUZZ_CHECK(size >= 2, "a one-byte close payload echoed");
        int code = (payload[0] << 8) | payload[1];
        FUZZ_CHECK(code >= 1000 && code < 5000 && code != 1004 && code != 1005 && code != 1006 && code != 1015,
                   "a reserved close code echoed");
        FUZZ_CHECK(fuzz::is_valid_utf8(input.substr(2)), "a close reason that is not UTF-8 echoed");
    }
    // Two independent UTF-8 decoders agree.
    FUZZ_CHECK(rws::is_valid_utf8(payload, size) == fuzz::is_valid_utf8(input), "UTF-8 decoders disagree");
    return 0;
}
