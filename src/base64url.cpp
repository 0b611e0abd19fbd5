#include "base64url.hpp"

#include <cstdint>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

bool base64url_decode(const char *in, size_t size, std::string &out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '-') return 62;
        if (c == '_') return 63;
        return -1;
    };
    if (size % 4 == 1) return false;
    out.clear();
    out.reserve(size * 3 / 4);
    uint32_t bits = 0;
    int count = 0;
    for (size_t i = 0; i < size; i++) {
        int v = value(in[i]);
        if (v < 0) return false;
        bits = (bits << 6) | static_cast<uint32_t>(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out.push_back(static_cast<char>((bits >> count) & 0xff));
            bits &= (1u << count) - 1;  // keep only the bits not yet output
        }
    }
    return (bits & ((1u << count) - 1)) == 0;  // leftover bits must be zero
}

std::string base64url_encode(const std::string &in) {
    static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((in.size() * 4 + 2) / 3);
    uint32_t bits = 0;
    int count = 0;
    for (unsigned char c : in) {
        bits = (bits << 8) | c;
        count += 8;
        while (count >= 6) {
            count -= 6;
            out.push_back(kAlphabet[(bits >> count) & 0x3f]);
            bits &= (1u << count) - 1;
        }
    }
    if (count > 0) out.push_back(kAlphabet[(bits << (6 - count)) & 0x3f]);
    return out;
}

}  // namespace rws
