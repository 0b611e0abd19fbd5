// Unit tests of JWKS reading, ES256/RS256 verification and the refetch
// policy. Keys and tokens come from PyJWT and python3-cryptography
// (make_jwks_fixtures.py writes jwks_fixtures.hpp), not from the code under test.
#include "auth.hpp"
#include "jwks.hpp"
#include "jwt_keys.hpp"

#include "jwks_fixtures.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace {

using rws::JwtKeys;
using rws::TokenCheck;
using rws::TokenRules;

const nlohmann::json &fixtures() {
    static const nlohmann::json parsed = nlohmann::json::parse(fixtures::kJwks);
    return parsed;
}
std::string fixture(const char *name) {
    return fixtures().at(name).get<std::string>();
}
std::string token(const char *name) {
    return fixtures().at("tokens").at(name).get<std::string>();
}
int64_t now() {
    return fixtures().at("now").get<int64_t>();
}

rws::KeySetPtr keys_of(const std::string &document) {
    rws::JwksParse parse = rws::parse_jwks(document);
    EXPECT_TRUE(parse.keys) << parse.error;
    return parse.keys;
}

const rws::KeySetPtr &main_keys() {
    static const rws::KeySetPtr keys = keys_of(fixture("jwks"));
    return keys;
}

TokenRules rules(const std::string &issuer = std::string()) {
    TokenRules r;
    r.secret = fixture("secret");
    r.audience = "authenticated";
    r.issuer = issuer;
    r.keys[1] = main_keys().get();
    return r;
}

TokenCheck check(const std::string &t, const TokenRules &r = rules()) {
    return rws::verify_token(t, r, now());
}

// --- reading a JWKS ------------------------------------------------------------

TEST(Jwks, ReadsP256AndRsaKeysBoundToTheirAlgorithm) {
    const rws::KeySet &keys = *main_keys();
    EXPECT_EQ(keys.size(), 5u);
    ASSERT_NE(keys.find("es-a"), nullptr);
    EXPECT_EQ(keys.find("es-a")->alg(), rws::JwkAlg::ES256);
    ASSERT_NE(keys.find("es-b"), nullptr);  // alg inferred from kty and crv
    EXPECT_EQ(keys.find("es-b")->alg(), rws::JwkAlg::ES256);
    ASSERT_NE(keys.find("rs-a"), nullptr);
    EXPECT_EQ(keys.find("rs-a")->alg(), rws::JwkAlg::RS256);
    EXPECT_EQ(keys.find("rs-a")->bits(), 2048);
    ASSERT_NE(keys.find("rs-big"), nullptr);
    EXPECT_EQ(keys.find("rs-big")->bits(), 4096);
    // x written in 31 bytes (its leading zero dropped, as PyJWT before 2.8 does).
    ASSERT_NE(keys.find("es-lead-zero"), nullptr);
    EXPECT_EQ(keys.describe(), "es-a (ES256), es-b (ES256), es-lead-zero (ES256), rs-a (RS256), rs-big (RS256)");
}

TEST(Jwks, SkipsEveryKeyItCannotUseAndSaysWhy) {
    rws::JwksParse parse = rws::parse_jwks(fixture("jwks"));
    ASSERT_TRUE(parse.keys);
    for (const char *kid : {"es-384", "es-384-as-256", "rs-short", "es-enc", "es-says-rs", "es-ops-sign",
                            "es-bad-point", "es-short-x", "es-long-x", "hs"})
        EXPECT_EQ(parse.keys->find(kid), nullptr) << kid;
    std::string notes;
    for (const auto &note : parse.notes) notes += note + "\n";
    EXPECT_EQ(parse.notes.size(), 12u) << notes;
    for (const char *expected :
         {"key \"es-384\" skipped: its curve is not P-256", "key \"es-384-as-256\" skipped: its curve is not P-256",
          "key \"rs-short\" skipped: its modulus is shorter than 2048 bits", "key \"es-enc\" skipped: its use",
          "key \"es-says-rs\" skipped: its alg is not ES256", "key \"es-ops-sign\" skipped: its key_ops",
          "skipped: no kid", "key \"es-bad-point\" skipped: its point is not",
          "key \"es-short-x\" skipped: its point is not", "key \"es-long-x\" skipped: x or y is not",
          "key \"hs\" skipped: it holds private key material", "key #17 skipped: not a JSON object"})
        EXPECT_NE(notes.find(expected), std::string::npos) << expected << "\nin:\n" << notes;
    // A symmetric key is secret material too.
    EXPECT_TRUE(parse.private_key);
}

TEST(Jwks, RefusesPrivateKeysAndKeepsThePublicOnes) {
    rws::JwksParse parse = rws::parse_jwks(fixture("jwks_private"));
    ASSERT_TRUE(parse.keys);
    EXPECT_TRUE(parse.private_key);
    EXPECT_EQ(parse.keys->find("es-private"), nullptr);
    EXPECT_NE(parse.keys->find("es-a"), nullptr);
    ASSERT_EQ(parse.notes.size(), 1u);
    EXPECT_NE(parse.notes[0].find("private key material"), std::string::npos);
    // The token its private half signed finds no key.
    TokenRules r = rules();
    r.keys[1] = parse.keys.get();
    EXPECT_TRUE(check(token("es256_private_key_kid"), r).unknown_kid);
}

TEST(Jwks, AKidNamingTwoKeysChoosesNeither) {
    rws::JwksParse parse = rws::parse_jwks(fixture("jwks_duplicate"));
    ASSERT_TRUE(parse.keys);
    EXPECT_EQ(parse.keys->find("same"), nullptr);
    EXPECT_NE(parse.keys->find("es-b"), nullptr);
    EXPECT_EQ(parse.keys->size(), 1u);
}

TEST(Jwks, ADocumentThatIsNotAJwksIsAnError) {
    for (const char *document :
         {"", "null", "[]", "{}", "{\"keys\":{}}", "{\"keys\":\"x\"}", "not json", "{\"keys\":[]", "\"keys\""}) {
        rws::JwksParse parse = rws::parse_jwks(document);
        EXPECT_FALSE(parse.keys) << document;
        EXPECT_FALSE(parse.error.empty()) << document;
    }
    std::string huge = "{\"keys\":[],\"pad\":\"" + std::string(1024 * 1024, 'x') + "\"}";
    EXPECT_NE(rws::parse_jwks(huge).error.find("larger than 1 MB"), std::string::npos);
    // An empty set is a JWKS (every key revoked).
    rws::JwksParse empty = rws::parse_jwks("{\"keys\":[]}");
    ASSERT_TRUE(empty.keys);
    EXPECT_EQ(empty.keys->size(), 0u);
}

TEST(Jwks, MalformedMembersAreSkippedNotFatal) {
    const char *documents[] = {
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":7,"y":"AA"}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"A=","y":"AA"}]})",
        R"({"keys":[{"kty":"RSA","kid":"k","n":"","e":"AQAB"}]})",
        R"({"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]})",
        R"({"keys":[{"kty":7,"kid":"k"}]})",
        R"({"keys":[{"kty":"EC","kid":["k"]}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","use":7}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","key_ops":"verify"}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","alg":null}]})",
        R"({"keys":[{"kty":"EC","crv":"P-256","kid":"","x":"","y":""}]})",
    };
    for (const char *document : documents) {
        rws::JwksParse parse = rws::parse_jwks(document);
        ASSERT_TRUE(parse.keys) << document;
        EXPECT_EQ(parse.keys->size(), 0u) << document;
        EXPECT_EQ(parse.notes.size(), 1u) << document;
    }
}

TEST(Jwks, RsaExponentMustPassOpenSslsPublicKeyCheck) {
    // rs-a's modulus with e = 1 and e = 65536 (e must be odd and above 1).
    nlohmann::json doc = nlohmann::json::parse(fixture("jwks_rs"));
    nlohmann::json key = doc["keys"][0];
    for (const char *e : {"AQ", "AQAA"}) {
        key["e"] = e;
        nlohmann::json one = {{"keys", {key}}};
        rws::JwksParse parse = rws::parse_jwks(one.dump());
        ASSERT_TRUE(parse.keys);
        EXPECT_EQ(parse.keys->size(), 0u) << e;
    }
}

// --- verifying tokens ------------------------------------------------------------

TEST(JwksTokens, SupabaseStyleTokensAreAccepted) {
    for (const char *name : {"es256", "es256_inferred_alg", "es256_short_coordinate_key", "rs256", "rs256_4096",
                             "hs256", "es256_anonymous_user", "hs256_real_secret_unknown_kid"}) {
        TokenCheck result = check(token(name), rules(fixture("issuer")));
        ASSERT_TRUE(result.ok) << name << ": " << result.reason;
        EXPECT_EQ(result.user_id, fixture("user")) << name;
        EXPECT_EQ(result.expires_at, fixtures().at("exp").get<int64_t>()) << name;
    }
}

// OpenSSL accepts s > n/2, and so do we: RFC 7518 does not ask for low-S, and
// signers that do not normalise s (Go's crypto/ecdsa) produce it half the time.
TEST(JwksTokens, HighAndLowSAreBothAccepted) {
    EXPECT_TRUE(check(token("es256_low_s")).ok);
    EXPECT_TRUE(check(token("es256_high_s")).ok);
    EXPECT_NE(token("es256_low_s"), token("es256_high_s"));
}

struct Refusal {
    const char *token;
    const char *reason;
    bool unknown_kid;
};

TEST(JwksTokens, EveryFailureModeIsRefused) {
    const Refusal refusals[] = {
        {"es256_unknown_kid", "unknown kid", true},
        {"es256_no_kid", "no kid", false},
        {"es256_kid_not_a_string", "kid is not a string", false},
        {"es256_on_rs_kid", "alg is not the algorithm of the kid's key", false},
        {"rs256_on_es_kid", "alg is not the algorithm of the kid's key", false},
        {"ps256_on_rs_kid", "alg is not HS256, ES256 or RS256", false},
        {"rs512_on_rs_kid", "alg is not HS256, ES256 or RS256", false},
        {"es384_on_p384_kid", "alg is not HS256, ES256 or RS256", false},
        {"es256_on_skipped_p384_kid", "unknown kid", true},
        {"rs256_short_key", "unknown kid", true},
        {"hs256_keyed_with_public_pem", "alg HS256 on the kid of an asymmetric key", false},
        {"hs256_real_secret_on_es_kid", "alg HS256 on the kid of an asymmetric key", false},
        {"none_on_es_kid", "alg is not HS256, ES256 or RS256", false},
        {"es256_crit", "crit header", false},
        {"es256_tampered_signature", "bad signature", false},
        {"es256_tampered_claims", "bad signature", false},
        {"es256_other_key_same_kid", "bad signature", false},
        {"es256_der_signature", "bad signature", false},
        {"es256_63_bytes", "bad signature", false},
        {"es256_65_bytes", "bad signature", false},
        {"es256_65_bytes_leading_zero", "bad signature", false},
        {"es256_s_plus_order", "bad signature", false},
        {"es256_r_zero", "bad signature", false},
        {"rs256_short_signature", "bad signature", false},
        {"rs256_long_signature", "bad signature", false},
        {"rs256_pss_signature", "bad signature", false},
        {"es256_expired", "expired", false},
        {"es256_wrong_audience", "audience mismatch", false},
        {"es256_anon_key", "audience mismatch", false},  // it has no aud
    };
    for (const Refusal &refusal : refusals) {
        TokenCheck result = check(token(refusal.token));
        EXPECT_FALSE(result.ok) << refusal.token;
        EXPECT_EQ(result.reason, refusal.reason) << refusal.token;
        EXPECT_EQ(result.unknown_kid, refusal.unknown_kid) << refusal.token;
    }
}

// Supabase's anon key is a signed token without sub (role anon): it names no user.
TEST(JwksTokens, TheAnonKeyIsRefusedEvenWithoutAudienceCheck) {
    TokenRules r = rules();
    r.audience.clear();
    EXPECT_EQ(check(token("es256_anon_key"), r).reason, "sub is not a UUID");
}

TEST(JwksTokens, IssuerIsCheckedWhenSet) {
    EXPECT_TRUE(check(token("es256_wrong_issuer")).ok);  // not checked
    EXPECT_EQ(check(token("es256_wrong_issuer"), rules(fixture("issuer"))).reason, "issuer mismatch");
    EXPECT_EQ(check(token("es256_no_issuer"), rules(fixture("issuer"))).reason, "issuer mismatch");
    EXPECT_EQ(check(token("hs256"), rules("https://elsewhere")).reason, "issuer mismatch");
}

TEST(JwksTokens, EveryAlteredSignatureCharacterIsRejected) {
    for (const char *name : {"es256", "rs256"}) {
        std::string good = token(name);
        size_t signature = good.rfind('.') + 1;
        for (size_t i = signature; i < good.size(); i++) {
            std::string bad = good;
            bad[i] = bad[i] == 'A' ? 'B' : 'A';
            EXPECT_FALSE(check(bad).ok) << name << " position " << i;
        }
    }
}

TEST(JwksTokens, KeysOfEitherSetVerifyAndNoSetMeansUnknownKid) {
    rws::KeySetPtr inline_keys = keys_of(fixture("jwks_es_a"));
    TokenRules r = rules();
    r.keys[0] = inline_keys.get();
    r.keys[1] = nullptr;
    EXPECT_TRUE(check(token("es256"), r).ok);
    EXPECT_TRUE(check(token("rs256"), r).unknown_kid);
    r.keys[0] = nullptr;
    EXPECT_TRUE(check(token("es256"), r).unknown_kid);
    EXPECT_TRUE(check(token("hs256"), r).ok);  // HS256 needs no key set
}

TEST(JwksTokens, EmptySecretRefusesHs256Only) {
    TokenRules r = rules();
    r.secret.clear();
    EXPECT_EQ(check(token("hs256"), r).reason, "resumable_ws.jwt_secret is not set");
    EXPECT_TRUE(check(token("es256"), r).ok);
}

// --- the refetch policy ----------------------------------------------------------

struct FakeFetcher {
    std::vector<std::pair<std::string, uint64_t>> requests;
    JwtKeys::StartFetch start() {
        return [this](const std::string &url, uint64_t generation) { requests.emplace_back(url, generation); };
    }
    rws::JwksFetchResult answer(const std::string &document) const {
        rws::JwksFetchResult result;
        result.generation = requests.back().second;
        result.parse = rws::parse_jwks(document);
        if (!result.parse.keys) result.error = result.parse.error;
        return result;
    }
    rws::JwksFetchResult failure(const std::string &error = "Could not connect to server") const {
        rws::JwksFetchResult result;
        result.generation = requests.back().second;
        result.error = error;
        return result;
    }
};

const std::string kUrl = "https://abcdefghijklmnopqrst.supabase.co/auth/v1/.well-known/jwks.json";

size_t warnings(const rws::KeysLog &log) {
    size_t count = 0;
    for (const auto &line : log) count += line.warning ? 1 : 0;
    return count;
}

TEST(JwtKeys, ReadsTheUrlAtStartAndEveryReload) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t0 = rws::Clock::now();
    keys.configure("", kUrl, t0, log);
    ASSERT_EQ(fetcher.requests.size(), 1u);
    EXPECT_EQ(fetcher.requests[0].first, kUrl);
    EXPECT_TRUE(keys.fetching());
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_es_a")), t0, log));
    EXPECT_EQ(keys.fetched_key_count(), 1u);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log[0].text.find("keys of the JWKS at " + kUrl + ": es-a (ES256)"), std::string::npos) << log[0].text;
    keys.configure("", kUrl, t0, log);  // a reload: read again
    EXPECT_EQ(fetcher.requests.size(), 2u);
}

TEST(JwtKeys, LoopbackIsJudgedByTheHostItself) {
    auto warned = [](const std::string &url) {
        FakeFetcher fetcher;
        JwtKeys keys(fetcher.start());
        rws::KeysLog log;
        keys.configure("", url, rws::Clock::now(), log);
        for (const auto &line : log)
            if (line.text.find("is not https") != std::string::npos) return true;
        return false;
    };
    EXPECT_FALSE(warned("https://ref.supabase.co/auth/v1/.well-known/jwks.json"));
    EXPECT_FALSE(warned("http://127.0.0.1:9999/jwks.json"));
    EXPECT_FALSE(warned("HTTP://LOCALHOST/jwks.json"));
    EXPECT_FALSE(warned("http://[::1]:80/jwks.json"));
    EXPECT_TRUE(warned("http://auth.internal/jwks.json"));
    EXPECT_TRUE(warned("http://127.evil.example/jwks.json"));  // a name, not 127.0.0.0/8
    EXPECT_TRUE(warned("http://localhost.example/jwks.json"));
    EXPECT_TRUE(warned("http://127.0.0.1@evil.example/jwks.json"));  // user info, then the host
}

TEST(JwtKeys, UnknownKidRefetchesAtMostOncePerInterval) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t0 = rws::Clock::now();
    keys.configure("", kUrl, t0, log);
    // During the first read, unknown kids wait for it: no second request.
    EXPECT_EQ(keys.refetch_for_unknown_kid(t0), JwtKeys::Refetch::Waiting);
    EXPECT_EQ(fetcher.requests.size(), 1u);
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_es_a")), t0, log));
    // One refetch, then none for kKidRefetchInterval, however many ask.
    EXPECT_EQ(keys.refetch_for_unknown_kid(t0), JwtKeys::Refetch::Waiting);
    EXPECT_EQ(fetcher.requests.size(), 2u);
    for (int i = 0; i < 50; i++) EXPECT_EQ(keys.refetch_for_unknown_kid(t0), JwtKeys::Refetch::Waiting);
    EXPECT_EQ(fetcher.requests.size(), 2u);
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_es_a")), t0, log));
    for (int i = 0; i < 50; i++)
        EXPECT_EQ(keys.refetch_for_unknown_kid(t0 + std::chrono::seconds(4)), JwtKeys::Refetch::Refused);
    EXPECT_EQ(fetcher.requests.size(), 2u);
    EXPECT_EQ(keys.refetch_for_unknown_kid(t0 + rws::kKidRefetchInterval), JwtKeys::Refetch::Waiting);
    EXPECT_EQ(fetcher.requests.size(), 3u);
}

TEST(JwtKeys, AFailedReadKeepsTheKeysAndIsLoggedOncePerStreak) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t = rws::Clock::now();
    keys.configure("", kUrl + "?apikey=secret-value", t, log);
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_es_a")), t, log));
    log.clear();
    for (int i = 0; i < 5; i++) {
        t += std::chrono::seconds(10);
        ASSERT_EQ(keys.refetch_for_unknown_kid(t), JwtKeys::Refetch::Waiting);
        EXPECT_TRUE(keys.fetched(fetcher.failure(), t, log));
        EXPECT_EQ(keys.fetched_key_count(), 1u);
    }
    ASSERT_EQ(log.size(), 1u);
    EXPECT_TRUE(log[0].warning);
    EXPECT_NE(log[0].text.find("cannot read the JWKS at " + kUrl + ": Could not connect to server; the 1 keys"),
              std::string::npos)
        << log[0].text;
    EXPECT_EQ(log[0].text.find("secret-value"), std::string::npos);  // the query may hold credentials
    // A document that is not a JWKS is a failure too.
    t += std::chrono::seconds(10);
    keys.refetch_for_unknown_kid(t);
    EXPECT_TRUE(keys.fetched(fetcher.answer("<html>"), t, log));
    EXPECT_EQ(log.size(), 1u);
    EXPECT_EQ(keys.fetched_key_count(), 1u);
    TokenRules r = rules();
    keys.fill(r);
    EXPECT_TRUE(check(token("es256"), r).ok);
    // Read again: one line says so; a new key list is logged.
    t += std::chrono::seconds(10);
    keys.refetch_for_unknown_kid(t);
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_rs")), t, log));
    ASSERT_EQ(log.size(), 3u);
    EXPECT_NE(log[1].text.find("is read again"), std::string::npos);
    EXPECT_NE(log[2].text.find("rs-a (RS256), rs-big (RS256)"), std::string::npos);
    keys.fill(r);
    EXPECT_TRUE(check(token("es256"), r).unknown_kid);  // es-a was removed: revoked
    EXPECT_TRUE(check(token("rs256"), r).ok);
}

TEST(JwtKeys, PeriodicReadsAndRetries) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t0 = rws::Clock::now();
    keys.configure("", kUrl, t0, log);
    keys.fetched(fetcher.failure(), t0, log);
    keys.tick(t0 + rws::kRetryInterval - std::chrono::seconds(1));
    EXPECT_EQ(fetcher.requests.size(), 1u);
    keys.tick(t0 + rws::kRetryInterval);
    EXPECT_EQ(fetcher.requests.size(), 2u);
    auto t1 = t0 + rws::kRetryInterval;
    keys.fetched(fetcher.answer(fixture("jwks_es_a")), t1, log);
    keys.tick(t1 + rws::kRefreshInterval - std::chrono::seconds(1));
    EXPECT_EQ(fetcher.requests.size(), 2u);
    keys.tick(t1 + rws::kRefreshInterval);
    EXPECT_EQ(fetcher.requests.size(), 3u);
    keys.tick(t1 + 2 * rws::kRefreshInterval);  // still under way: no second request
    EXPECT_EQ(fetcher.requests.size(), 3u);
}

TEST(JwtKeys, ResultsOfReplacedRequestsAreIgnored) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t = rws::Clock::now();
    keys.configure("", kUrl, t, log);
    rws::JwksFetchResult old = fetcher.answer(fixture("jwks_es_a"));
    keys.configure("", kUrl, t, log);  // a reload replaced the request
    EXPECT_FALSE(keys.fetched(std::move(old), t, log));
    EXPECT_TRUE(keys.fetching());
    EXPECT_EQ(keys.fetched_key_count(), 0u);
    EXPECT_TRUE(keys.fetched(fetcher.answer(fixture("jwks_rs")), t, log));
    EXPECT_EQ(keys.fetched_key_count(), 2u);
}

TEST(JwtKeys, InlineAndUrlKeysAreBothInForce) {
    FakeFetcher fetcher;
    JwtKeys keys(fetcher.start());
    rws::KeysLog log;
    auto t = rws::Clock::now();
    keys.configure(fixture("jwks_es_a"), kUrl, t, log);
    EXPECT_EQ(keys.inline_key_count(), 1u);
    keys.fetched(fetcher.answer(fixture("jwks_rs")), t, log);
    TokenRules r = rules();
    keys.fill(r);
    EXPECT_TRUE(check(token("es256"), r).ok);
    EXPECT_TRUE(check(token("rs256"), r).ok);
    // Clearing the URL drops its keys and abandons reads; no refetch then.
    keys.configure(fixture("jwks_es_a"), "", t, log);
    EXPECT_EQ(fetcher.requests.back().first, "");
    EXPECT_FALSE(keys.fetching());
    keys.fill(r);
    EXPECT_TRUE(check(token("es256"), r).ok);
    EXPECT_TRUE(check(token("rs256"), r).unknown_kid);
    EXPECT_EQ(keys.refetch_for_unknown_kid(t), JwtKeys::Refetch::Refused);
    // Inline only, no URL: nothing is fetched.
    FakeFetcher none;
    JwtKeys inline_only(none.start());
    inline_only.configure(fixture("jwks_es_a"), "", t, log);
    EXPECT_TRUE(none.requests.empty());
}

TEST(JwtKeys, PlainHttpBeyondLoopbackIsWarnedAbout) {
    FakeFetcher fetcher;
    rws::KeysLog log;
    JwtKeys(fetcher.start()).configure("", "http://keys.example.com/jwks.json", rws::Clock::now(), log);
    EXPECT_EQ(warnings(log), 1u);
    log.clear();
    JwtKeys(fetcher.start()).configure("", "http://127.0.0.1:9999/jwks.json", rws::Clock::now(), log);
    EXPECT_EQ(warnings(log), 0u);
}

TEST(JwtKeys, UrlForLogDropsCredentials) {
    EXPECT_EQ(rws::url_for_log("https://user:pw@host.example/a/b?key=v#f"), "https://host.example/a/b");
    EXPECT_EQ(rws::url_for_log("https://host.example/a@b"), "https://host.example/a@b");
    EXPECT_EQ(rws::url_for_log("http://127.0.0.1:8080/jwks.json"), "http://127.0.0.1:8080/jwks.json");
}

}  // namespace
