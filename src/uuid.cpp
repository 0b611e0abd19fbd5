#include "uuid.hpp"

#include <openssl/rand.h>

#include <cctype>
#include <stdexcept>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

bool parse_uuid(const std::string &text, std::string &canonical) {
    if (text.size() != 36) return false;
    std::string out(36, '-');
    for (size_t i = 0; i < 36; i++) {
        char c = text[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
            continue;
        }
        if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
        out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    canonical = out;
    return true;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool uuid_bytes(const std::string &text, unsigned char out[16]) {
    if (text.size() != 36) return false;
    size_t at = 0;
    for (int i = 0; i < 16; i++) {
        if (at == 8 || at == 13 || at == 18 || at == 23) {
            if (text[at] != '-') return false;
            at++;
        }
        int high = hex_value(text[at]), low = hex_value(text[at + 1]);
        if (high < 0 || low < 0) return false;
        out[i] = static_cast<unsigned char>(high << 4 | low);
        at += 2;
    }
    return true;
}

std::string random_uuid() {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) throw std::runtime_error("RAND_bytes failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        out.push_back(hex[b[i] >> 4]);
        out.push_back(hex[b[i] & 15]);
    }
    return out;
}

}  // namespace rws
