// What both JWT targets share: the fixed verification settings and HS256
// signing with OpenSSL's HMAC (independent of the code under test), so that
// fuzzer-made tokens carry a valid signature and reach the claim checks.
// test/fuzz/make_jwt_seeds.py signs the seed tokens with the same secret.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <string>

namespace fuzz {

const std::string kSecret = "fuzz-secret-fuzz-secret-fuzz-secret";
const std::string kAudience = "authenticated";
// After the system clock (cpp-jwt also checks exp and nbf against it), so
// that the answer for an input does not depend on the day it runs (until 2033).
const int64_t kNow = 2000000000;

inline std::string base64url(const std::string &data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]),
                            reinterpret_cast<const unsigned char *>(data.data()), data.size());
    out.resize(n);
    for (char &c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    while (!out.empty() && out.back() == '=') out.pop_back();
    return out;
}

// base64url(HMAC-SHA256(secret, signing_input)): a JWT's third part.
inline std::string hs256_signature(const std::string &signing_input,
                                   const std::string &secret = kSecret) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char *>(signing_input.data()), signing_input.size(), mac,
         &length);
    return base64url(std::string(reinterpret_cast<char *>(mac), length));
}

// A token whose header and claims are these exact bytes, validly signed.
inline std::string sign(const std::string &header_json, const std::string &claims_json) {
    std::string head = base64url(header_json) + "." + base64url(claims_json);
    return head + "." + hs256_signature(head);
}

}  // namespace fuzz
