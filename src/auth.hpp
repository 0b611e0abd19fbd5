// HS256 JSON Web Tokens: verifying client tokens and signing new ones.
// Pure C++: no Postgres calls, safe from lws callbacks.
#pragma once

#include <cstdint>
#include <string>

namespace rws {

struct TokenCheck {
    bool ok = false;
    std::string user_id;     // canonical UUID from sub
    int64_t expires_at = 0;  // exp, seconds since the epoch
    std::string reason;      // for the server log only; clients see "unauthorized"
};

// Every failure (bad format, alg other than HS256, bad signature, no or past
// exp, sub not a UUID, aud mismatch, empty secret) gives ok = false.
TokenCheck verify_token(const std::string &token, const std::string &secret, const std::string &audience, int64_t now);

// Anonymous users' tokens also say is_anonymous (as Supabase's do).
std::string sign_token(const std::string &user_id, int64_t ttl_seconds, const std::string &secret,
                       const std::string &audience, int64_t now, bool anonymous = false);

}  // namespace rws
