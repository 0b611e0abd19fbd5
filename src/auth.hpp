// JSON Web Tokens: verifying client tokens (HS256 with the shared secret,
// ES256/RS256 with the keys of a JWKS) and signing HS256 ones.
// Pure C++: no Postgres calls, safe from lws callbacks.
#pragma once

#include <cstdint>
#include <string>

namespace rws {

class KeySet;

// Why a token was refused, for the auth failure counters (metrics.hpp).
enum class TokenFailure {
    None,
    Missing,        // no token
    Malformed,      // not a JWS we read: encoding, JSON, header, alg, numeric dates
    BadSignature,   // the signature does not verify
    UnknownKey,     // a kid no key set holds (after a refetch, if one was allowed)
    Expired,        // exp passed, or nbf ahead
    Claims,         // exp, aud, iss or sub missing or wrong
    NotConfigured,  // no key for the token's algorithm (jwt_secret empty)
};

struct TokenCheck {
    bool ok = false;
    TokenFailure failure = TokenFailure::None;
    std::string user_id;     // canonical UUID from sub
    int64_t expires_at = 0;  // exp, seconds since the epoch
    std::string reason;      // for the server log only; clients see "unauthorized"
    // ES256/RS256 with a kid that no key set holds: the caller may re-read
    // the JWKS (rate-limited) and verify again.
    bool unknown_kid = false;
};

// What a token is verified against.
struct TokenRules {
    std::string secret;    // HS256 key; empty: HS256 tokens fail
    std::string audience;  // required aud; empty: not checked
    std::string issuer;    // required iss; empty: not checked
    // ES256/RS256 keys by kid: the inline jwt_jwks, then the fetched jwt_jwks_url.
    const KeySet *keys[2] = {nullptr, nullptr};
};

// Every failure (bad format, alg other than HS256/ES256/RS256, an alg that
// is not the one of the kid's key, bad signature, no or past exp, sub not a
// UUID, aud or iss mismatch, no key) gives ok = false.
TokenCheck verify_token(const std::string &token, const TokenRules &rules, int64_t now);

// HS256 only (no key sets, issuer not checked).
TokenCheck verify_token(const std::string &token, const std::string &secret, const std::string &audience, int64_t now);

// Anonymous users' tokens also say is_anonymous (as Supabase's do); iss is
// set when issuer is not empty (so that jwt_issuer accepts our own tokens).
std::string sign_token(const std::string &user_id, int64_t ttl_seconds, const std::string &secret,
                       const std::string &audience, int64_t now, bool anonymous = false,
                       const std::string &issuer = std::string());

}  // namespace rws
