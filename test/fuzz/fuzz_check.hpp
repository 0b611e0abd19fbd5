// Properties checked inside the fuzz targets. A failed check aborts, so
// libFuzzer saves the input as a crash, like a sanitizer report.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(condition, what)                                                      \
    do {                                                                                 \
        if (!(condition)) {                                                              \
            std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, \
                         what, #condition);                                              \
            std::abort();                                                                \
        }                                                                                \
    } while (0)

namespace fuzz {

// Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF),
// as Postgres requires of text and jsonb in a UTF-8 database.
inline bool is_valid_utf8(const std::string &text) {
    size_t i = 0;
    while (i < text.size()) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        size_t length;
        unsigned int min, code;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            length = 2, min = 0x80, code = c & 0x1fu;
        } else if ((c & 0xf0) == 0xe0) {
            length = 3, min = 0x800, code = c & 0x0fu;
        } else if ((c & 0xf8) == 0xf0) {
            length = 4, min = 0x10000, code = c & 0x07u;
        } else {
            return false;
        }
        if (text.size() - i < length) return false;
        for (size_t k = 1; k < length; k++) {
            unsigned char next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0) != 0x80) return false;
            code = (code << 6) | (next & 0x3fu);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
        i += length;
    }
    return true;
}

}  // namespace fuzz
