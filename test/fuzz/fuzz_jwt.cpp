// Fuzz target: a token as a client sends it (query string, Authorization
// header or an auth frame), verified with a fixed secret, audience and time.
// Property: an accepted token carries our signature of its first two parts.
// Mutated seed tokens mostly fail at the signature; fuzz_jwt_claims signs
// what it makes, to reach the claim checks.
#include "auth.hpp"
#include "fuzz_check.hpp"
#include "jwt_signing.hpp"
#include "uuid.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string token(reinterpret_cast<const char *>(data), size);
    rws::TokenCheck check = rws::verify_token(token, fuzz::kSecret, fuzz::kAudience, fuzz::kNow);
    if (!check.ok) {
        FUZZ_CHECK(!check.reason.empty(), "a refusal says why");
        return 0;
    }
    size_t last_dot = token.rfind('.');
    FUZZ_CHECK(last_dot != std::string::npos, "accepted token has parts");
    FUZZ_CHECK(token.substr(last_dot + 1) == fuzz::hs256_signature(token.substr(0, last_dot)),
               "accepted token is signed with the secret");
    std::string canonical;
    FUZZ_CHECK(rws::parse_uuid(check.user_id, canonical) && canonical == check.user_id, "user id is a canonical UUID");
    FUZZ_CHECK(check.expires_at > fuzz::kNow, "accepted token has not expired");
    return 0;
}
