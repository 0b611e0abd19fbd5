// cpp-jwt checks claims before the signature, matches alg case-insensitively
// and skips exp when it is absent (DESIGN.md "Security"). So: the algorithm
// list is pinned to HS256, the raw header must say exactly "HS256", and exp and
// sub are required here. cpp-jwt defines non-inline functions in its headers:
// include it from this file only.
#include "auth.hpp"

#include "uuid.hpp"

#include <jwt/jwt.hpp>
#include <nlohmann/json.hpp>

namespace rws {

static TokenCheck fail(const char *reason) {
    TokenCheck check;
    check.reason = reason;
    return check;
}

static bool header_says_hs256(const std::string &token) {
    auto dot = token.find('.');
    if (dot == std::string::npos || dot == 0) return false;
    std::string header_json = jwt::base64_uri_decode(token.data(), dot);
    auto header = nlohmann::json::parse(header_json, nullptr, false);
    if (header.is_discarded() || !header.is_object()) return false;
    auto alg = header.find("alg");
    return alg != header.end() && alg->is_string() && alg->get<std::string>() == "HS256";
}

static bool audience_matches(const nlohmann::json &claims, const std::string &audience) {
    if (audience.empty()) return true;
    auto aud = claims.find("aud");
    if (aud == claims.end()) return false;
    if (aud->is_string()) return aud->get<std::string>() == audience;
    if (aud->is_array())
        for (const auto &item : *aud)
            if (item.is_string() && item.get<std::string>() == audience) return true;
    return false;
}

TokenCheck verify_token(const std::string &token, const std::string &secret,
                        const std::string &audience, int64_t now) {
    try {
        if (secret.empty()) return fail("resumable_ws.jwt_secret is not set");
        if (token.empty() || token.size() > 8192) return fail("missing or oversized token");
        if (std::count(token.begin(), token.end(), '.') != 2) return fail("malformed token");
        if (!header_says_hs256(token)) return fail("alg is not HS256");

        std::error_code ec;
        // exp, aud and sub are checked below, where their absence is an error.
        auto decoded = jwt::decode(token, jwt::params::algorithms({"HS256"}), ec,
                                   jwt::params::secret(secret), jwt::params::verify(true));
        if (ec) return fail("signature or format rejected");

        const nlohmann::json &claims = decoded.payload().create_json_obj();
        if (!claims.is_object()) return fail("claims are not an object");

        auto exp = claims.find("exp");
        if (exp == claims.end() || !exp->is_number()) return fail("no exp");
        int64_t expires_at = exp->get<int64_t>();
        if (expires_at <= now) return fail("expired");

        auto nbf = claims.find("nbf");
        if (nbf != claims.end() && (!nbf->is_number() || nbf->get<int64_t>() > now + 60))
            return fail("not yet valid");

        if (!audience_matches(claims, audience)) return fail("audience mismatch");

        auto sub = claims.find("sub");
        TokenCheck check;
        if (sub == claims.end() || !sub->is_string() ||
            !parse_uuid(sub->get<std::string>(), check.user_id))
            return fail("sub is not a UUID");

        check.ok = true;
        check.expires_at = expires_at;
        return check;
    } catch (...) {
        return fail("token could not be parsed");
    }
}

std::string sign_token(const std::string &user_id, int64_t ttl_seconds,
                       const std::string &secret, const std::string &audience, int64_t now,
                       bool anonymous) {
    jwt::jwt_object obj{jwt::params::algorithm("HS256"), jwt::params::secret(secret)};
    obj.add_claim("sub", user_id);
    obj.add_claim("role", "authenticated");
    obj.add_claim("iat", now);
    obj.add_claim("exp", now + ttl_seconds);
    if (!audience.empty()) obj.add_claim("aud", audience);
    if (anonymous) obj.add_claim("is_anonymous", true);
    return obj.signature();
}

}  // namespace rws
