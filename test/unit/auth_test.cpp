// Unit tests of JWT verification. Tokens are built here by hand with
// OpenSSL's HMAC, independently of the signing code under test.
#include "auth.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

const std::string kSecret = "unit-test-secret-unit-test-secret";
const std::string kUser = "0b6f3c1e-8a4d-4f1b-9c2e-7d5a6b4c3e2f";
const int64_t kNow = time(nullptr);

std::string base64url(const std::string &data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]),
                            reinterpret_cast<const unsigned char *>(data.data()), static_cast<int>(data.size()));
    out.resize(static_cast<size_t>(n));
    for (char &c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    while (!out.empty() && out.back() == '=') out.pop_back();
    return out;
}

std::string hs256(const std::string &key, const std::string &data) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char *>(data.data()),
         data.size(), mac, &length);
    return std::string(reinterpret_cast<char *>(mac), length);
}

nlohmann::json claims() {
    return {{"sub", kUser}, {"exp", kNow + 600}, {"aud", "authenticated"}};
}

std::string signed_token(const std::string &header_json, const std::string &claims_json,
                         const std::string &secret = kSecret) {
    std::string head = base64url(header_json) + "." + base64url(claims_json);
    return head + "." + base64url(hs256(secret, head));
}

std::string token(const nlohmann::json &payload, const std::string &alg = "HS256",
                  const std::string &secret = kSecret) {
    return signed_token(nlohmann::json{{"alg", alg}, {"typ", "JWT"}}.dump(), payload.dump(), secret);
}

rws::TokenCheck check(const std::string &t, const std::string &audience = "authenticated") {
    return rws::verify_token(t, kSecret, audience, kNow);
}

TEST(Auth, AcceptsAValidToken) {
    auto result = check(token(claims()));
    ASSERT_TRUE(result.ok) << result.reason;
    EXPECT_EQ(result.user_id, kUser);
    EXPECT_EQ(result.expires_at, kNow + 600);
}

TEST(Auth, EveryAlteredSignatureCharacterIsRejected) {
    std::string good = token(claims());
    size_t signature = good.rfind('.') + 1;
    for (size_t i = signature; i < good.size(); i++) {
        std::string bad = good;
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        EXPECT_FALSE(check(bad).ok) << "position " << i;
    }
}

TEST(Auth, AlteredClaimsAreRejected) {
    std::string good = token(claims());
    auto other = claims();
    other["sub"] = "11111111-1111-1111-1111-111111111111";
    std::string forged = good.substr(0, good.find('.') + 1) + base64url(other.dump()) + good.substr(good.rfind('.'));
    EXPECT_FALSE(check(forged).ok);
}

TEST(Auth, OnlyExactlyHs256) {
    for (std::string alg : {"none", "None", "NONE", "hs256", "HS384", "HS512", "RS256", ""}) {
        EXPECT_FALSE(check(token(claims(), alg)).ok) << alg;
        // Unsigned variants too.
        std::string t = token(claims(), alg);
        EXPECT_FALSE(check(t.substr(0, t.rfind('.') + 1)).ok) << alg;
    }
}

TEST(Auth, RequiresExpInTheFuture) {
    auto c = claims();
    c.erase("exp");
    EXPECT_FALSE(check(token(c)).ok);
    c["exp"] = kNow;
    EXPECT_FALSE(check(token(c)).ok);
    c["exp"] = "tomorrow";
    EXPECT_FALSE(check(token(c)).ok);
    c["exp"] = kNow + 1;
    EXPECT_TRUE(check(token(c)).ok);
}

TEST(Auth, RequiresAUuidSub) {
    for (nlohmann::json sub : {nlohmann::json("alice"), nlohmann::json(42), nlohmann::json(nullptr),
                               nlohmann::json(kUser + "0"), nlohmann::json(kUser.substr(1))}) {
        auto c = claims();
        c["sub"] = sub;
        EXPECT_FALSE(check(token(c)).ok) << sub.dump();
    }
    auto c = claims();
    c.erase("sub");
    EXPECT_FALSE(check(token(c)).ok);
    c["sub"] = "0B6F3C1E-8A4D-4F1B-9C2E-7D5A6B4C3E2F";
    auto result = check(token(c));
    ASSERT_TRUE(result.ok);
    EXPECT_EQ(result.user_id, kUser);  // canonical lower case
}

TEST(Auth, ChecksAudienceWhenSet) {
    auto c = claims();
    c["aud"] = "other";
    EXPECT_FALSE(check(token(c)).ok);
    c["aud"] = {"other", "authenticated"};
    EXPECT_TRUE(check(token(c)).ok);
    c.erase("aud");
    EXPECT_FALSE(check(token(c)).ok);
    EXPECT_TRUE(check(token(c), "").ok);  // empty setting: not checked
}

TEST(Auth, NotBeforeInTheFutureIsRejected) {
    auto c = claims();
    c["nbf"] = kNow + 3600;
    EXPECT_FALSE(check(token(c)).ok);
    c["nbf"] = kNow - 10;
    EXPECT_TRUE(check(token(c)).ok);
}

TEST(Auth, NumericDatesMustBeFiniteNumbersInRange) {
    // Signed with the right key, so only the claim check can refuse them.
    // 1e308 once went through an out-of-range double -> int64 conversion.
    const std::string sub = "\"sub\":\"" + kUser + "\",\"aud\":\"authenticated\"";
    const std::string exp = "\"exp\":" + std::to_string(kNow + 600);
    for (std::string bad : {"\"nbf\":1e308", "\"nbf\":-1e308", "\"nbf\":-1", "\"iat\":1e308", "\"iat\":\"now\"",
                            "\"nbf\":null", "\"iat\":[1]", "\"nbf\":18446744073709551615", "\"nbf\":253402300800"}) {
        std::string claims = "{" + sub + "," + exp + "," + bad + "}";
        EXPECT_FALSE(check(signed_token(R"({"alg":"HS256"})", claims)).ok) << bad;
    }
    for (std::string bad_exp : {"1e308", "-1e308", "1.8e19", "-5", "true", "\"1\""}) {
        std::string claims = "{" + sub + ",\"exp\":" + bad_exp + "}";
        EXPECT_FALSE(check(signed_token(R"({"alg":"HS256"})", claims)).ok) << bad_exp;
    }
    // Fractions are fine (RFC 7519 §2 allows them); expires_at is the second.
    std::string claims =
        "{" + sub + ",\"exp\":" + std::to_string(kNow + 600) + ".75,\"iat\":" + std::to_string(kNow) + ".5,\"nbf\":0}";
    auto result = check(signed_token(R"({"alg":"HS256"})", claims));
    ASSERT_TRUE(result.ok) << result.reason;
    EXPECT_EQ(result.expires_at, kNow + 600);
}

TEST(Auth, ACritHeaderIsRefused) {
    // RFC 7515 §4.1.11: an extension the recipient does not understand.
    EXPECT_FALSE(check(signed_token(R"({"alg":"HS256","crit":["b64"],"b64":false})", claims().dump())).ok);
    EXPECT_FALSE(check(signed_token(R"({"alg":"HS256","crit":[]})", claims().dump())).ok);
    EXPECT_TRUE(check(signed_token(R"({"alg":"HS256","kid":"k1"})", claims().dump())).ok);
}

TEST(Auth, OnlyStrictBase64url) {
    std::string good = token(claims());
    EXPECT_TRUE(check(good).ok);
    EXPECT_FALSE(check(good + "=").ok);  // padding
    EXPECT_FALSE(check(good + "A").ok);  // a length no encoding has
    std::string plus = good;
    plus[plus.rfind('.') + 1] = '+';  // standard base64, not url-safe
    EXPECT_FALSE(check(plus).ok);
    EXPECT_FALSE(check(" " + good).ok);
    // Stray bits in the last character of the signature (32 bytes leave its
    // two low bits unused): the same bytes, another spelling.
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string stray = good;
    stray.back() = alphabet[alphabet.find(stray.back()) + 1];
    EXPECT_FALSE(check(stray).ok);
}

TEST(Auth, WrongOrEmptySecretRejects) {
    EXPECT_FALSE(rws::verify_token(token(claims()), "another-secret", "authenticated", kNow).ok);
    EXPECT_FALSE(rws::verify_token(token(claims(), "HS256", ""), "", "authenticated", kNow).ok);
}

TEST(Auth, GarbageNeverThrows) {
    const std::vector<std::string> garbage = {"",
                                              ".",
                                              "..",
                                              "...",
                                              "a.b.c",
                                              "a.b",
                                              "%%%.%%%.%%%",
                                              std::string(9000, 'a'),
                                              base64url("{") + "." + base64url("{}") + ".x",
                                              base64url("[]") + "." + base64url("[]") + ".x"};
    for (const std::string &t : garbage) {
        EXPECT_FALSE(check(t).ok) << t.substr(0, 40);
    }
}

// Found by fuzzing (test/fuzz), NOT FIXED YET (auth.cpp is being rewritten).
// Each runs verify_token in a child process (a death test): today these
// inputs abort (a cpp-jwt assert) or hit undefined behaviour, and that must
// fail this test, not end the whole run. In the worker an abort is a crash of
// Postgres. (Not named *DeathTest, which gtest runs first: the tests above
// compare kNow + 1 with cpp-jwt's clock and must run within a second.)
// cases: what each token is (for the failure message), and the token.
void expect_all_refused(const std::vector<std::pair<std::string, std::string>> &cases) {
    EXPECT_EXIT(
        {
            bool any = false;
            for (const auto &c : cases)
                if (check(c.second).ok) {
                    fprintf(stderr, "accepted: %s\n", c.first.c_str());
                    any = true;
                }
            _exit(any ? 1 : 0);
        },
        ::testing::ExitedWithCode(0), "");
}

// cpp-jwt's base64 decoder indexes its table with a plain (signed) char:
// any byte >= 0x80 in the header or claims trips an assert (abort) in builds
// without NDEBUG, such as the PGXS build of the extension; with NDEBUG it
// reads before the table. Other characters outside base64url inside a group
// of four (& % = space) left-shift -1: undefined behaviour (UBSan). Reached
// before the signature is checked, from ?token= or Authorization: Bearer, so
// without any valid token.
TEST(Auth, CharactersOutsideBase64urlAreRefusedWithoutAborting) {
    const std::string good = token(claims());
    const size_t payload = good.find('.') + 1, signature = good.rfind('.') + 1;
    std::vector<std::pair<std::string, std::string>> cases;
    for (size_t at : {size_t{1}, payload + 1, payload + 6, signature + 1})
        for (char c : {'\x80', '\xc3', '\xff', '&', '%', '=', ' '}) {
            std::string bad = good;
            bad.insert(at, 1, c);
            cases.emplace_back("byte " + std::to_string(static_cast<unsigned char>(c)) + " at " + std::to_string(at),
                               bad);
        }
    expect_all_refused(cases);
}

// exp, nbf and iat must be finite numbers within int64 range. Today cpp-jwt
// converts exp and nbf to uint64_t and auth.cpp exp and nbf to int64_t
// (nlohmann's get<>() is a static_cast): out-of-range doubles are undefined
// behaviour, in cpp-jwt before the signature is checked. In practice
// nbf: 1e308 is accepted, as if it were no nbf at all. (iat is not read at
// all today: its cases are the rule the rewrite adds, not a fuzzer finding.)
TEST(Auth, TimeClaimsOutsideInt64AreRefused) {
    std::vector<std::pair<std::string, std::string>> cases;
    for (const char *name : {"exp", "nbf", "iat"})
        for (double value : {1e308, -1e308, 1e19, 9.3e18, -1.5}) {
            auto c = claims();
            c[name] = value;
            cases.emplace_back(std::string(name) + ": " + nlohmann::json(value).dump(), token(c));
        }
    expect_all_refused(cases);
}

TEST(Auth, SignedTokensVerify) {
    std::string t = rws::sign_token(kUser, 600, kSecret, "authenticated", kNow);
    auto result = check(t);
    ASSERT_TRUE(result.ok) << result.reason;
    EXPECT_EQ(result.user_id, kUser);
    EXPECT_EQ(result.expires_at, kNow + 600);
    // And our own HMAC agrees with its signature.
    std::string head = t.substr(0, t.rfind('.'));
    EXPECT_EQ(t.substr(t.rfind('.') + 1), base64url(hs256(kSecret, head)));
}

}  // namespace
