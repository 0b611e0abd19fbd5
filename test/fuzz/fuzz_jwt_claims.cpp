// Fuzz target: the claim checks of verify_token, reached by signing what the
// fuzzer makes. Input: the claims JSON, or a header JSON line, "\n", then the
// claims JSON (without a newline the header is {"alg":"HS256","typ":"JWT"}).
// Property: an accepted token says what auth.hpp promises, checked here
// independently with nlohmann-json: alg exactly HS256, exp in the future,
// nbf (if any) not in the future, aud matching, sub a UUID.
#include "auth.hpp"
#include "fuzz_check.hpp"
#include "jwt_signing.hpp"
#include "uuid.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>

using json = nlohmann::json;

// A JSON number as the whole seconds it names, if it is finite and fits an
// int64 (compared as double first, so that this check itself has no UB).
static bool whole_seconds(const json &value, int64_t &out) {
    if (value.is_number_integer() && !value.is_number_unsigned()) {
        out = value.get<int64_t>();
        return true;
    }
    if (value.is_number_unsigned()) {
        uint64_t u = value.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) return false;
        out = static_cast<int64_t>(u);
        return true;
    }
    if (!value.is_number_float()) return false;
    double d = value.get<double>();
    if (!std::isfinite(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0) return false;
    out = static_cast<int64_t>(d);
    return true;
}

static void check_accepted(const std::string &header_text, const std::string &claims_text,
                           const rws::TokenCheck &check) {
    json header = json::parse(header_text, nullptr, false);
    json claims = json::parse(claims_text, nullptr, false);
    FUZZ_CHECK(header.is_object() && header.contains("alg") && header["alg"] == "HS256",
               "accepted token says alg HS256");
    FUZZ_CHECK(claims.is_object(), "accepted token has a claims object");

    int64_t exp = 0;
    FUZZ_CHECK(claims.contains("exp") && whole_seconds(claims["exp"], exp), "exp is a number in range");
    FUZZ_CHECK(exp > fuzz::kNow, "exp is in the future");
    FUZZ_CHECK(check.expires_at == exp, "expires_at is exp");

    if (claims.contains("nbf")) {
        int64_t nbf = 0;
        FUZZ_CHECK(whole_seconds(claims["nbf"], nbf), "nbf is a number in range");
        FUZZ_CHECK(nbf <= fuzz::kNow + 60, "nbf is not in the future");
    }

    bool audience = false;
    if (claims.contains("aud")) {
        const json &aud = claims["aud"];
        audience = aud == fuzz::kAudience;
        if (aud.is_array())
            for (const json &item : aud) audience = audience || item == fuzz::kAudience;
    }
    FUZZ_CHECK(audience, "aud names the audience");

    std::string canonical;
    FUZZ_CHECK(claims.contains("sub") && claims["sub"].is_string() &&
                   rws::parse_uuid(claims["sub"].get<std::string>(), canonical),
               "sub is a UUID");
    FUZZ_CHECK(check.user_id == canonical, "user_id is sub, canonical");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string input(reinterpret_cast<const char *>(data), size);
    std::string header = R"({"alg":"HS256","typ":"JWT"})", claims = input;
    size_t newline = input.find('\n');
    if (newline != std::string::npos) {
        header = input.substr(0, newline);
        claims = input.substr(newline + 1);
    }
    const std::string token = fuzz::sign(header, claims);
    rws::TokenCheck check = rws::verify_token(token, fuzz::kSecret, fuzz::kAudience, fuzz::kNow);
    if (check.ok)
        check_accepted(header, claims, check);
    else
        FUZZ_CHECK(!check.reason.empty(), "a refusal says why");
    return 0;
}
