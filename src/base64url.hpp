// base64url without padding (RFC 7515 §2), as JWS and JWK members use it.
#pragma once

#include <cstddef>
#include <string>

namespace rws {

// Strict: any character outside the alphabet (padding included), a length
// that cannot occur, or stray bits in the last character fail.
bool base64url_decode(const char *in, size_t size, std::string &out);
inline bool base64url_decode(const std::string &in, std::string &out) {
    return base64url_decode(in.data(), in.size(), out);
}

std::string base64url_encode(const std::string &in);

}  // namespace rws
