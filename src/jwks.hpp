// JSON Web Key Sets (RFC 7517, RFC 7518 §6): the public keys that verify
// ES256 and RS256 tokens, chosen by kid (Supabase's asymmetric signing keys).
// Pure C++ with OpenSSL 3: no Postgres calls, used on the worker's thread and
// on the JWKS fetch thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

typedef struct evp_pkey_st EVP_PKEY;

namespace rws {

// The asymmetric algorithms a JWK may carry; each key verifies exactly one.
enum class JwkAlg { ES256, RS256 };

const char *jwk_alg_name(JwkAlg alg);

// One public key, bound to its algorithm. Holds no private material.
class Jwk {
  public:
    Jwk(std::string kid, JwkAlg alg, EVP_PKEY *key);  // takes ownership of key
    ~Jwk();
    Jwk(const Jwk &) = delete;
    Jwk &operator=(const Jwk &) = delete;

    const std::string &kid() const { return kid_; }
    JwkAlg alg() const { return alg_; }
    int bits() const;
    // Checks a JWS signature (RFC 7515 §5.2) made with this key's algorithm
    // over data: ES256 takes raw r‖s (exactly 64 bytes, RFC 7518 §3.4),
    // RS256 RSASSA-PKCS1-v1_5 of exactly the modulus' size. Never throws.
    bool verify(const char *data, size_t size, const std::string &signature) const;

  private:
    std::string kid_;
    JwkAlg alg_;
    EVP_PKEY *key_;
};

// The keys of one document, by kid. Immutable once built: the worker swaps
// a whole set (shared_ptr<const KeySet>) when a newer document is read.
class KeySet {
  public:
    const Jwk *find(const std::string &kid) const;
    size_t size() const { return keys_.size(); }
    std::vector<const Jwk *> keys() const;  // in kid order
    // "kid (ES256), …" in kid order, for the log (kids are public).
    std::string describe() const;

  private:
    friend struct JwksParser;
    std::unordered_map<std::string, std::unique_ptr<Jwk>> keys_;
};

using KeySetPtr = std::shared_ptr<const KeySet>;

struct JwksParse {
    KeySetPtr keys;                  // set when the document is a JWKS (possibly with no usable key)
    std::string error;               // otherwise, why not
    std::vector<std::string> notes;  // keys skipped, and why (for the log; no key material)
    bool private_key = false;        // some key carried private members (d, p, q, …)
};

// Reads a JWKS: a JSON object whose "keys" is an array of JWKs. Keys that
// cannot verify ES256 or RS256 here are skipped with a note: use other than
// "sig", key_ops without "verify", no kid, an alg that disagrees with kty/crv
// (or any other alg), private members, curves other than P-256, RSA keys
// under 2048 bits, points not on the curve, a kid used twice. Never throws.
JwksParse parse_jwks(const std::string &document);

// Limits on what is read.
constexpr size_t kMaxJwksKeys = 64;
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;  // bounds the cost of one verification

}  // namespace rws
