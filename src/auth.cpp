// JSON Web Tokens (RFC 7519, RFC 7515): HS256, ES256 and RS256, verified
// strictly with OpenSSL and nlohmann/json. Written here rather than with cpp-jwt, which checks
// claims before the signature, matches alg case-insensitively, skips exp when
// it is absent, and converts any JSON number to an integer (undefined
// behaviour for nbf: 1e308) before the signature is known to be good
// (DESIGN.md "Security"). Order here: shape, header, key, signature, then
// claims. The key follows from alg and kid together: HS256 is always the
// shared secret, ES256/RS256 always the kid's key of that same algorithm, so
// an asymmetric key is never used as an HMAC secret, nor a key for another
// algorithm than its own.
#include "auth.hpp"

#include "base64url.hpp"
#include "jwks.hpp"
#include "uuid.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cmath>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using Json = nlohmann::json;

constexpr size_t kMaxTokenSize = 8192;
constexpr size_t kHs256Size = 32;
// Numeric dates (RFC 7519 §2) beyond the year 9999 are refused, as are
// negative ones: whatever the JSON says, the value then fits an int64 exactly.
constexpr double kMaxNumericDate = 253402300799.0;
// A token that becomes valid within this many seconds is accepted (clock skew).
constexpr int64_t kNotBeforeLeeway = 60;

static TokenCheck fail(TokenFailure failure, const char *reason) {
    TokenCheck check;
    check.failure = failure;
    check.reason = reason;
    return check;
}

static std::string hmac_sha256(const std::string &key, const char *data, size_t size) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char *>(data),
             size, mac, &length) == nullptr)
        return std::string();
    return std::string(reinterpret_cast<char *>(mac), length);
}

// A numeric date claim: absent (present = false), or a finite number in
// [0, year 9999], returned as whole seconds. Anything else fails.
static bool numeric_date(const Json &claims, const char *name, bool &present, int64_t &seconds) {
    auto it = claims.find(name);
    present = it != claims.end();
    if (!present) return true;
    if (it->is_number_unsigned()) {
        uint64_t value = it->get<uint64_t>();
        if (value > static_cast<uint64_t>(kMaxNumericDate)) return false;
        seconds = static_cast<int64_t>(value);
        return true;
    }
    if (it->is_number_integer()) {
        int64_t value = it->get<int64_t>();
        if (value < 0 || value > static_cast<int64_t>(kMaxNumericDate)) return false;
        seconds = value;
        return true;
    }
    if (it->is_number_float()) {
        double value = it->get<double>();
        if (!std::isfinite(value) || value < 0 || value > kMaxNumericDate) return false;
        seconds = static_cast<int64_t>(std::floor(value));
        return true;
    }
    return false;
}

static bool audience_matches(const Json &claims, const std::string &audience) {
    if (audience.empty()) return true;
    auto aud = claims.find("aud");
    if (aud == claims.end()) return false;
    if (aud->is_string()) return aud->get_ref<const std::string &>() == audience;
    if (aud->is_array())
        for (const auto &item : *aud)
            if (item.is_string() && item.get_ref<const std::string &>() == audience) return true;
    return false;
}

static bool issuer_matches(const Json &claims, const std::string &issuer) {
    if (issuer.empty()) return true;
    auto iss = claims.find("iss");
    return iss != claims.end() && iss->is_string() && iss->get_ref<const std::string &>() == issuer;
}

// The key a JWKS holds for kid, from the first set that has one.
static const Jwk *find_key(const TokenRules &rules, const std::string &kid) {
    for (const KeySet *set : rules.keys)
        if (set != nullptr)
            if (const Jwk *key = set->find(kid)) return key;
    return nullptr;
}

static TokenCheck verify(const std::string &token, const TokenRules &rules, int64_t now) {
    if (token.empty()) return fail(TokenFailure::Missing, "missing token");
    if (token.size() > kMaxTokenSize) return fail(TokenFailure::Malformed, "oversized token");
    size_t first = token.find('.');
    size_t second = first == std::string::npos ? first : token.find('.', first + 1);
    if (first == std::string::npos || second == std::string::npos || token.find('.', second + 1) != std::string::npos)
        return fail(TokenFailure::Malformed, "malformed token");

    std::string header_json, claims_json, signature;
    if (!base64url_decode(token.data(), first, header_json) ||
        !base64url_decode(token.data() + first + 1, second - first - 1, claims_json) ||
        !base64url_decode(token.data() + second + 1, token.size() - second - 1, signature))
        return fail(TokenFailure::Malformed, "malformed token");

    Json header = Json::parse(header_json, nullptr, false);
    if (header.is_discarded() || !header.is_object())
        return fail(TokenFailure::Malformed, "header is not a JSON object");
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if (header.contains("crit")) return fail(TokenFailure::Malformed, "crit header");
    auto alg_member = header.find("alg");
    if (alg_member == header.end() || !alg_member->is_string()) return fail(TokenFailure::Malformed, "no alg");
    const std::string &alg = alg_member->get_ref<const std::string &>();
    auto kid_member = header.find("kid");
    if (kid_member != header.end() && !kid_member->is_string())
        return fail(TokenFailure::Malformed, "kid is not a string");
    const std::string *kid = kid_member == header.end() ? nullptr : &kid_member->get_ref<const std::string &>();
    const Jwk *key = kid == nullptr ? nullptr : find_key(rules, *kid);

    if (alg == "HS256") {
        // A kid of a JWKS key on an HS256 token is an attempt to have that
        // key's public bytes taken for a secret: refused, whatever else.
        if (key != nullptr) return fail(TokenFailure::Malformed, "alg HS256 on the kid of an asymmetric key");
        if (rules.secret.empty()) return fail(TokenFailure::NotConfigured, "resumable_ws.jwt_secret is not set");
        std::string expected = hmac_sha256(rules.secret, token.data(), second);
        if (signature.size() != kHs256Size || expected.size() != kHs256Size ||
            CRYPTO_memcmp(signature.data(), expected.data(), kHs256Size) != 0)
            return fail(TokenFailure::BadSignature, "bad signature");
    } else if (alg == "ES256" || alg == "RS256") {
        if (kid == nullptr) return fail(TokenFailure::Malformed, "no kid");
        if (key == nullptr) {
            TokenCheck check = fail(TokenFailure::UnknownKey, "unknown kid");
            check.unknown_kid = true;
            return check;
        }
        if (alg != jwk_alg_name(key->alg()))
            return fail(TokenFailure::Malformed, "alg is not the algorithm of the kid's key");
        if (!key->verify(token.data(), second, signature)) return fail(TokenFailure::BadSignature, "bad signature");
    } else {
        return fail(TokenFailure::Malformed, "alg is not HS256, ES256 or RS256");
    }

    Json claims = Json::parse(claims_json, nullptr, false);
    if (claims.is_discarded() || !claims.is_object())
        return fail(TokenFailure::Malformed, "claims are not a JSON object");

    bool has_exp = false, has_nbf = false, has_iat = false;
    int64_t exp = 0, nbf = 0, iat = 0;
    if (!numeric_date(claims, "exp", has_exp, exp) || !numeric_date(claims, "nbf", has_nbf, nbf) ||
        !numeric_date(claims, "iat", has_iat, iat))
        return fail(TokenFailure::Malformed, "a numeric date is not a finite number in range");
    if (!has_exp) return fail(TokenFailure::Claims, "no exp");
    if (exp <= now) return fail(TokenFailure::Expired, "expired");
    if (has_nbf && nbf > now + kNotBeforeLeeway) return fail(TokenFailure::Expired, "not yet valid");

    if (!audience_matches(claims, rules.audience)) return fail(TokenFailure::Claims, "audience mismatch");
    if (!issuer_matches(claims, rules.issuer)) return fail(TokenFailure::Claims, "issuer mismatch");

    // Supabase's anon key (role anon) has no sub: it names no user.
    auto sub = claims.find("sub");
    TokenCheck check;
    if (sub == claims.end() || !sub->is_string() || !parse_uuid(sub->get_ref<const std::string &>(), check.user_id))
        return fail(TokenFailure::Claims, "sub is not a UUID");

    check.ok = true;
    check.expires_at = exp;
    return check;
}

TokenCheck verify_token(const std::string &token, const TokenRules &rules, int64_t now) {
    try {
        return verify(token, rules, now);
    } catch (...) {
        return fail(TokenFailure::Malformed, "token could not be read");
    }
}

TokenCheck verify_token(const std::string &token, const std::string &secret, const std::string &audience, int64_t now) {
    TokenRules rules;
    rules.secret = secret;
    rules.audience = audience;
    return verify_token(token, rules, now);
}

std::string sign_token(const std::string &user_id, int64_t ttl_seconds, const std::string &secret,
                       const std::string &audience, int64_t now, bool anonymous, const std::string &issuer) {
    Json claims = {{"sub", user_id}, {"role", "authenticated"}, {"iat", now}, {"exp", now + ttl_seconds}};
    if (!audience.empty()) claims["aud"] = audience;
    if (!issuer.empty()) claims["iss"] = issuer;
    if (anonymous) claims["is_anonymous"] = true;
    std::string signed_part =
        base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(claims.dump());
    std::string mac = hmac_sha256(secret, signed_part.data(), signed_part.size());
    if (mac.size() != kHs256Size) throw std::runtime_error("HMAC-SHA256 failed");
    return signed_part + "." + base64url_encode(mac);
}

}  // namespace rws
