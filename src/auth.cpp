// HS256 JSON Web Tokens (RFC 7519, RFC 7515), verified strictly with OpenSSL
// and nlohmann/json. Written here rather than with cpp-jwt, which checks
// claims before the signature, matches alg case-insensitively, skips exp when
// it is absent, and converts any JSON number to an integer (undefined
// behaviour for nbf: 1e308) before the signature is known to be good
// (DESIGN.md "Security"). Order here: shape, header, signature, then claims.
#include "auth.hpp"

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

static TokenCheck fail(const char *reason) {
    TokenCheck check;
    check.reason = reason;
    return check;
}

// Strict base64url without padding (RFC 7515 §2): any other character, a
// length that cannot occur, or stray bits in the last character fail.
static bool base64url_decode(const std::string &in, size_t begin, size_t end, std::string &out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '-') return 62;
        if (c == '_') return 63;
        return -1;
    };
    size_t length = end - begin;
    if (length % 4 == 1) return false;
    out.clear();
    out.reserve(length * 3 / 4);
    uint32_t bits = 0;
    int count = 0;
    for (size_t i = begin; i < end; i++) {
        int v = value(in[i]);
        if (v < 0) return false;
        bits = (bits << 6) | static_cast<uint32_t>(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out.push_back(static_cast<char>((bits >> count) & 0xff));
            bits &= (1u << count) - 1;  // keep only the bits not yet output
        }
    }
    return (bits & ((1u << count) - 1)) == 0;  // leftover bits must be zero
}

static std::string base64url_encode(const std::string &in) {
    static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((in.size() * 4 + 2) / 3);
    uint32_t bits = 0;
    int count = 0;
    for (unsigned char c : in) {
        bits = (bits << 8) | c;
        count += 8;
        while (count >= 6) {
            count -= 6;
            out.push_back(kAlphabet[(bits >> count) & 0x3f]);
            bits &= (1u << count) - 1;
        }
    }
    if (count > 0) out.push_back(kAlphabet[(bits << (6 - count)) & 0x3f]);
    return out;
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

TokenCheck verify_token(const std::string &token, const std::string &secret, const std::string &audience, int64_t now) {
    try {
        if (secret.empty()) return fail("resumable_ws.jwt_secret is not set");
        if (token.empty() || token.size() > kMaxTokenSize) return fail("missing or oversized token");
        size_t first = token.find('.');
        size_t second = first == std::string::npos ? first : token.find('.', first + 1);
        if (first == std::string::npos || second == std::string::npos ||
            token.find('.', second + 1) != std::string::npos)
            return fail("malformed token");

        std::string header_json, claims_json, signature;
        if (!base64url_decode(token, 0, first, header_json) ||
            !base64url_decode(token, first + 1, second, claims_json) ||
            !base64url_decode(token, second + 1, token.size(), signature))
            return fail("malformed token");

        Json header = Json::parse(header_json, nullptr, false);
        if (header.is_discarded() || !header.is_object()) return fail("header is not a JSON object");
        auto alg = header.find("alg");
        if (alg == header.end() || !alg->is_string() || alg->get_ref<const std::string &>() != "HS256")
            return fail("alg is not HS256");
        // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
        if (header.contains("crit")) return fail("crit header");

        std::string expected = hmac_sha256(secret, token.data(), second);
        if (signature.size() != kHs256Size || expected.size() != kHs256Size ||
            CRYPTO_memcmp(signature.data(), expected.data(), kHs256Size) != 0)
            return fail("bad signature");

        Json claims = Json::parse(claims_json, nullptr, false);
        if (claims.is_discarded() || !claims.is_object()) return fail("claims are not a JSON object");

        bool has_exp = false, has_nbf = false, has_iat = false;
        int64_t exp = 0, nbf = 0, iat = 0;
        if (!numeric_date(claims, "exp", has_exp, exp) || !numeric_date(claims, "nbf", has_nbf, nbf) ||
            !numeric_date(claims, "iat", has_iat, iat))
            return fail("a numeric date is not a finite number in range");
        if (!has_exp) return fail("no exp");
        if (exp <= now) return fail("expired");
        if (has_nbf && nbf > now + kNotBeforeLeeway) return fail("not yet valid");

        if (!audience_matches(claims, audience)) return fail("audience mismatch");

        auto sub = claims.find("sub");
        TokenCheck check;
        if (sub == claims.end() || !sub->is_string() || !parse_uuid(sub->get_ref<const std::string &>(), check.user_id))
            return fail("sub is not a UUID");

        check.ok = true;
        check.expires_at = exp;
        return check;
    } catch (...) {
        return fail("token could not be read");
    }
}

std::string sign_token(const std::string &user_id, int64_t ttl_seconds, const std::string &secret,
                       const std::string &audience, int64_t now, bool anonymous) {
    Json claims = {{"sub", user_id}, {"role", "authenticated"}, {"iat", now}, {"exp", now + ttl_seconds}};
    if (!audience.empty()) claims["aud"] = audience;
    if (anonymous) claims["is_anonymous"] = true;
    std::string signed_part =
        base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(claims.dump());
    std::string mac = hmac_sha256(secret, signed_part.data(), signed_part.size());
    if (mac.size() != kHs256Size) throw std::runtime_error("HMAC-SHA256 failed");
    return signed_part + "." + base64url_encode(mac);
}

}  // namespace rws
