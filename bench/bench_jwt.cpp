// Cost of verifying one token, per algorithm, and of reading a JWKS: the
// fixtures of test/unit/jwks_fixtures.hpp (PyJWT-made), verified in a loop.
// Prints figures; asserts nothing.
//   cmake -S . -B build && cmake --build build --target bench_jwt && build/bench_jwt
#include "auth.hpp"
#include "jwks.hpp"

#include "../test/unit/jwks_fixtures.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <string>

using BenchClock = std::chrono::steady_clock;

template <typename Fn>
static double micros_per_call(Fn &&fn, int calls) {
    fn();  // warm up
    auto start = BenchClock::now();
    for (int i = 0; i < calls; i++) fn();
    return std::chrono::duration<double, std::micro>(BenchClock::now() - start).count() / calls;
}

int main() {
    nlohmann::json fixtures = nlohmann::json::parse(fixtures::kJwks);
    int64_t now = fixtures["now"].get<int64_t>();
    std::string jwks = fixtures["jwks"].get<std::string>();
    std::string one_es = fixtures["jwks_es_a"].get<std::string>();
    std::string rsa = fixtures["jwks_rs"].get<std::string>();

    rws::JwksParse parse = rws::parse_jwks(jwks);
    rws::TokenRules rules;
    rules.secret = fixtures["secret"].get<std::string>();
    rules.audience = "authenticated";
    rules.issuer = fixtures["issuer"].get<std::string>();
    rules.keys[1] = parse.keys.get();

    std::printf("verify, one token (claims of a Supabase access token):\n");
    for (const char *name :
         {"hs256", "es256", "rs256", "rs256_4096", "es256_unknown_kid", "es256_tampered_signature"}) {
        std::string token = fixtures["tokens"][name].get<std::string>();
        bool ok = rws::verify_token(token, rules, now).ok;
        int calls = std::string(name).find("rs256_4096") == 0 ? 2000 : 20000;
        double us = micros_per_call([&]() { (void)rws::verify_token(token, rules, now); }, calls);
        std::printf("  %-26s %8.1f us  (%s)\n", name, us, ok ? "accepted" : "refused");
    }
    std::printf("parse_jwks (EVP_PKEY_fromdata; EVP_PKEY_public_check for EC points):\n");
    std::printf("  %-26s %8.1f us  (%zu bytes)\n", "one P-256 key (Supabase)",
                micros_per_call([&]() { (void)rws::parse_jwks(one_es); }, 2000), one_es.size());
    std::printf("  %-26s %8.1f us  (%zu bytes)\n", "RSA 2048 + RSA 4096",
                micros_per_call([&]() { (void)rws::parse_jwks(rsa); }, 200), rsa.size());
    std::printf("  %-26s %8.1f us  (%zu bytes, 5 keys kept of 17)\n", "the unit tests' JWKS",
                micros_per_call([&]() { (void)rws::parse_jwks(jwks); }, 200), jwks.size());
    return 0;
}
