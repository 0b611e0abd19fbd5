#include "http_checks.hpp"

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

static std::string trimmed(const std::string &value) {
    size_t begin = value.find_first_not_of(" \t");
    if (begin == std::string::npos) return std::string();
    size_t end = value.find_last_not_of(" \t");
    return value.substr(begin, end - begin + 1);
}

std::string request_framing_error(const HeaderValues &content_length, const HeaderValues &transfer_encoding) {
    if (!transfer_encoding.empty()) return "Transfer-Encoding is not supported; send a Content-Length";
    if (content_length.size() > 1) return "more than one Content-Length";
    if (content_length.size() == 1) {
        std::string value = trimmed(content_length[0]);
        // 18 digits: any such number fits the int64 lws keeps the length in.
        if (value.empty() || value.size() > 18 || value.find_first_not_of("0123456789") != std::string::npos)
            return "Content-Length is not a decimal number";
    }
    return std::string();
}

static bool is_base64_of_16_bytes(const std::string &key) {
    // 16 bytes: 22 characters, the last carrying 2 bits (so one of A Q g w),
    // then "==". Untrimmed: lws hashes the value exactly as it arrived.
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < 22; i++) {
        char c = key[i];
        bool base64 =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (!base64) return false;
    }
    char last = key[21];
    return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

UpgradeCheck check_upgrade(const HeaderValues &version, const HeaderValues &key) {
    if (version.size() != 1 || trimmed(version[0]) != "13") return UpgradeCheck::UnsupportedVersion;
    if (key.size() != 1 || !is_base64_of_16_bytes(key[0])) return UpgradeCheck::BadKey;
    return UpgradeCheck::Ok;
}

int close_frame_error(const unsigned char *payload, size_t length) {
    if (length == 0) return 0;
    if (length == 1) return 1002;
    int code = (payload[0] << 8) | payload[1];
    // RFC 6455 §7.4: 1004-1006 and 1015 must never be sent; 1000-2999 beyond
    // the registered ones are reserved; 3000-4999 belong to applications.
    bool allowed = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    if (!allowed) return 1002;
    if (!is_valid_utf8(payload + 2, length - 2)) return 1007;
    return 0;
}

bool is_valid_utf8(const unsigned char *text, size_t length) {
    size_t i = 0;
    while (i < length) {
        unsigned char c = text[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t size;
        unsigned char low = 0x80, high = 0xbf;  // range of the second byte
        if (c >= 0xc2 && c <= 0xdf) {
            size = 2;
        } else if (c == 0xe0) {
            size = 3, low = 0xa0;  // no overlong forms
        } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
            size = 3;
        } else if (c == 0xed) {
            size = 3, high = 0x9f;  // no surrogates
        } else if (c == 0xf0) {
            size = 4, low = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            size = 4;
        } else if (c == 0xf4) {
            size = 4, high = 0x8f;  // nothing above U+10FFFF
        } else {
            return false;
        }
        if (length - i < size || text[i + 1] < low || text[i + 1] > high) return false;
        for (size_t k = 2; k < size; k++)
            if (text[i + k] < 0x80 || text[i + k] > 0xbf) return false;
        i += size;
    }
    return true;
}

}  // namespace rws
