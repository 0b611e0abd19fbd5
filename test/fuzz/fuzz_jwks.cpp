// Fuzz target: a JWKS document as jwt_jwks_url or jwt_jwks gives it.
// Properties: a refusal says why; every key kept has a usable kid, is bound to
// ES256 on P-256 or RS256 of 2048 to 8192 bits, is found by its kid, and
// verifies no made-up signature.
#include "fuzz_check.hpp"
#include "jwks.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string document(reinterpret_cast<const char *>(data), size);
    rws::JwksParse parse = rws::parse_jwks(document);
    if (!parse.keys) {
        FUZZ_CHECK(!parse.error.empty(), "a refusal says why");
        return 0;
    }
    FUZZ_CHECK(parse.keys->size() <= rws::kMaxJwksKeys, "at most kMaxJwksKeys keys");
    FUZZ_CHECK(!parse.keys->describe().empty(), "the set can be described");
    static const std::string kData = "eyJhbGciOiJFUzI1NiJ9.e30";
    for (const rws::Jwk *key : parse.keys->keys()) {
        FUZZ_CHECK(!key->kid().empty() && key->kid().size() <= 256, "a kept key has a kid of 1 to 256 bytes");
        FUZZ_CHECK(parse.keys->find(key->kid()) == key, "a kept key is found by its kid");
        if (key->alg() == rws::JwkAlg::ES256) {
            FUZZ_CHECK(key->bits() == 256, "an ES256 key is a P-256 key");
            FUZZ_CHECK(!key->verify(kData.data(), kData.size(), std::string(64, '\x01')), "no made-up signature");
        } else {
            FUZZ_CHECK(key->bits() >= rws::kMinRsaBits && key->bits() <= rws::kMaxRsaBits, "RSA size in bounds");
            std::string made_up(static_cast<size_t>(key->bits() + 7) / 8, '\x01');
            FUZZ_CHECK(!key->verify(kData.data(), kData.size(), made_up), "no made-up signature");
        }
    }
    return 0;
}
