// JWKS reading and JWS signature checks with OpenSSL 3 (EVP_PKEY_fromdata):
// no Debian C++ JWT library reads a JWK (DESIGN.md "Asymmetric keys").
#include "jwks.hpp"

#include "base64url.hpp"

#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <set>

#include "cpp_only.hpp"  // must be last: no Postgres in this file

namespace rws {

using Json = nlohmann::json;

// A JWKS is a few kilobytes; Supabase's is under one.
constexpr size_t kMaxJwksDocument = 1024 * 1024;
constexpr size_t kMaxKidSize = 256;
constexpr size_t kP256CoordinateSize = 32;
constexpr size_t kEs256SignatureSize = 64;

const char *jwk_alg_name(JwkAlg alg) {
    return alg == JwkAlg::ES256 ? "ES256" : "RS256";
}

Jwk::Jwk(std::string kid, JwkAlg alg, EVP_PKEY *key) : kid_(std::move(kid)), alg_(alg), key_(key) {}

Jwk::~Jwk() {
    EVP_PKEY_free(key_);
}

int Jwk::bits() const {
    return EVP_PKEY_get_bits(key_);
}

namespace {

struct BnFree {
    void operator()(BIGNUM *bn) const { BN_free(bn); }
};
struct SigFree {
    void operator()(ECDSA_SIG *sig) const { ECDSA_SIG_free(sig); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX *ctx) const { EVP_MD_CTX_free(ctx); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX *ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct ParamBldFree {
    void operator()(OSSL_PARAM_BLD *bld) const { OSSL_PARAM_BLD_free(bld); }
};
struct ParamFree {
    void operator()(OSSL_PARAM *params) const { OSSL_PARAM_free(params); }
};
struct PkeyFree {
    void operator()(EVP_PKEY *key) const { EVP_PKEY_free(key); }
};
using Bn = std::unique_ptr<BIGNUM, BnFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

const unsigned char *bytes(const std::string &s) {
    return reinterpret_cast<const unsigned char *>(s.data());
}

// ES256 signatures are r‖s, each 32 big-endian bytes; OpenSSL verifies the
// DER ECDSA-Sig-Value. r and s out of [1, n-1] fail in OpenSSL's check.
// High s (s > n/2) is accepted, as OpenSSL and RFC 7518 do: JOSE does not
// ask for low-S, and Go's crypto/ecdsa (Supabase Auth) does not produce it.
std::string es256_der(const std::string &raw) {
    std::unique_ptr<ECDSA_SIG, SigFree> sig(ECDSA_SIG_new());
    Bn r(BN_bin2bn(bytes(raw), kEs256SignatureSize / 2, nullptr));
    Bn s(BN_bin2bn(bytes(raw) + kEs256SignatureSize / 2, kEs256SignatureSize / 2, nullptr));
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::string();
    (void)r.release();  // owned by sig now
    (void)s.release();
    unsigned char *der = nullptr;
    int length = i2d_ECDSA_SIG(sig.get(), &der);
    if (length <= 0) return std::string();
    std::string out(reinterpret_cast<char *>(der), static_cast<size_t>(length));
    OPENSSL_free(der);
    return out;
}

}  // namespace

bool Jwk::verify(const char *data, size_t size, const std::string &signature) const {
    try {
        std::string der;
        const std::string *checked = &signature;
        if (alg_ == JwkAlg::ES256) {
            if (signature.size() != kEs256SignatureSize) return false;
            der = es256_der(signature);
            if (der.empty()) return false;
            checked = &der;
        } else if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(key_))) {
            return false;
        }
        std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
        // RS256's padding is OpenSSL's default for RSA keys: PKCS #1 v1.5.
        if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_) != 1) return false;
        return EVP_DigestVerify(ctx.get(), bytes(*checked), checked->size(),
                                reinterpret_cast<const unsigned char *>(data), size) == 1;
    } catch (...) {
        return false;
    }
}

const Jwk *KeySet::find(const std::string &kid) const {
    auto it = keys_.find(kid);
    return it == keys_.end() ? nullptr : it->second.get();
}

std::vector<const Jwk *> KeySet::keys() const {
    std::vector<const Jwk *> out;
    for (const auto &entry : keys_) out.push_back(entry.second.get());
    std::sort(out.begin(), out.end(), [](const Jwk *a, const Jwk *b) { return a->kid() < b->kid(); });
    return out;
}

std::string KeySet::describe() const {
    std::string out;
    for (const Jwk *key : keys()) {
        if (!out.empty()) out += ", ";
        out += key->kid() + " (" + jwk_alg_name(key->alg()) + ")";
    }
    return out.empty() ? "none" : out;
}

// --- reading ---------------------------------------------------------------

namespace {

// A kid as it may appear in the log: printable ASCII, bounded.
std::string printable(const std::string &text) {
    std::string out;
    for (char c : text.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? c : '?');
    if (text.size() > 64) out += "…";
    return out;
}

// A member that must be a string when present.
const std::string *string_member(const Json &jwk, const char *name) {
    auto it = jwk.find(name);
    return it != jwk.end() && it->is_string() ? &it->get_ref<const std::string &>() : nullptr;
}

// Why a key built from these members is no good, or nullptr when it is fine.
const char *check_usage(const Json &jwk) {
    if (jwk.contains("use")) {
        const std::string *use = string_member(jwk, "use");
        if (use == nullptr || *use != "sig") return "its use is not \"sig\"";
    }
    auto ops = jwk.find("key_ops");
    if (ops != jwk.end()) {
        if (!ops->is_array()) return "key_ops is not an array";
        bool verify = false;
        for (const auto &op : *ops)
            if (op.is_string() && op.get_ref<const std::string &>() == "verify") verify = true;
        if (!verify) return "its key_ops do not include \"verify\"";
    }
    return nullptr;
}

Pkey ec_p256_key(const Json &jwk, const char *&why) {
    const std::string *crv = string_member(jwk, "crv");
    if (crv == nullptr || *crv != "P-256") {
        why = "its curve is not P-256";
        return nullptr;
    }
    const std::string *x_text = string_member(jwk, "x");
    const std::string *y_text = string_member(jwk, "y");
    std::string x, y;
    // RFC 7518 §6.2.1.2 wants each coordinate as the full 32 bytes, but some
    // writers drop leading zero bytes (PyJWT before 2.8 does, for one key in
    // 128): a shorter one is read as the same number, unambiguously; the
    // point is then checked to be on the curve.
    if (x_text == nullptr || y_text == nullptr || !base64url_decode(*x_text, x) || !base64url_decode(*y_text, y) ||
        x.empty() || y.empty() || x.size() > kP256CoordinateSize || y.size() > kP256CoordinateSize) {
        why = "x or y is not a base64url coordinate of 1 to 32 bytes";
        return nullptr;
    }
    x.insert(0, kP256CoordinateSize - x.size(), '\0');
    y.insert(0, kP256CoordinateSize - y.size(), '\0');
    std::string point = std::string(1, '\x04') + x + y;  // uncompressed SEC1 point
    char group[] = "P-256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, &point[0], point.size()),
        OSSL_PARAM_construct_end(),
    };
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY *raw = nullptr;
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        why = "its point is not on P-256";
        return nullptr;
    }
    return Pkey(raw);
}

// An unsigned big-endian integer member (RFC 7518 §6.3.1).
Bn big_number(const Json &jwk, const char *name) {
    const std::string *text = string_member(jwk, name);
    std::string value;
    if (text == nullptr || !base64url_decode(*text, value) || value.empty()) return nullptr;
    return Bn(BN_bin2bn(bytes(value), static_cast<int>(value.size()), nullptr));
}

Pkey rsa_key(const Json &jwk, const char *&why) {
    Bn n = big_number(jwk, "n");
    Bn e = big_number(jwk, "e");
    if (!n || !e) {
        why = "n or e is not a base64url number";
        return nullptr;
    }
    // OpenSSL's public check for RSA (EVP_PKEY_public_check) adds a
    // primality test of n: ~20 ms for 4096 bits, in every backend's check
    // of jwt_jwks at each reload, for no safety gained (whoever serves the
    // JWKS chooses the keys anyway). The cheap checks are done here.
    if (!BN_is_odd(n.get()) || !BN_is_odd(e.get()) || BN_is_one(e.get()) || BN_cmp(e.get(), n.get()) >= 0) {
        why = "n or e is not odd, or e is not between 1 and n";
        return nullptr;
    }
    int bits = BN_num_bits(n.get());
    if (bits < kMinRsaBits) {
        why = "its modulus is shorter than 2048 bits";
        return nullptr;
    }
    if (bits > kMaxRsaBits) {
        why = "its modulus is longer than 8192 bits";
        return nullptr;
    }
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
    if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1) {
        why = "out of memory";
        return nullptr;
    }
    std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
    EVP_PKEY *raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        why = "OpenSSL refused n and e";
        return nullptr;
    }
    return Pkey(raw);
}

// OpenSSL's public key check of an EC key: the point is on the curve, not
// at infinity, and of the group's order.
bool public_key_is_sound(EVP_PKEY *key) {
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    return ctx && EVP_PKEY_public_check(ctx.get()) == 1;
}

// Members that only a private (or symmetric) key has.
bool has_private_members(const Json &jwk) {
    for (const char *name : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
        if (jwk.contains(name)) return true;
    return false;
}

}  // namespace

struct JwksParser {
    static JwksParse parse(const std::string &document);
};

JwksParse JwksParser::parse(const std::string &document) {
    JwksParse result;
    if (document.size() > kMaxJwksDocument) {
        result.error = "the document is larger than 1 MB";
        return result;
    }
    Json doc = Json::parse(document, nullptr, false);
    if (doc.is_discarded()) {
        result.error = "the document is not JSON";
        return result;
    }
    auto keys = doc.is_object() ? doc.find("keys") : doc.end();
    if (!doc.is_object() || keys == doc.end() || !keys->is_array()) {
        result.error = "the document is not a JWKS (a JSON object with a \"keys\" array)";
        return result;
    }

    auto set = std::make_shared<KeySet>();
    std::set<std::string> duplicated;
    size_t index = 0;
    for (const Json &jwk : *keys) {
        index++;
        std::string label = "key #" + std::to_string(index);
        auto skip = [&](const std::string &why) { result.notes.push_back(label + " skipped: " + why); };
        if (index > kMaxJwksKeys) {
            result.notes.push_back("keys after the first " + std::to_string(kMaxJwksKeys) + " are ignored");
            break;
        }
        if (!jwk.is_object()) {
            skip("not a JSON object");
            continue;
        }
        const std::string *kid = string_member(jwk, "kid");
        if (kid != nullptr) label = "key \"" + printable(*kid) + "\"";
        // Checked first: whatever else is wrong, private material is refused
        // and reported as such.
        if (has_private_members(jwk)) {
            result.private_key = true;
            skip("it holds private key material (only public keys belong in a JWKS)");
            continue;
        }
        if (kid == nullptr || kid->empty() || kid->size() > kMaxKidSize) {
            skip("no kid (a string of 1 to 256 bytes)");
            continue;
        }
        if (const char *why = check_usage(jwk)) {
            skip(why);
            continue;
        }
        const std::string *kty = string_member(jwk, "kty");
        JwkAlg alg;
        if (kty != nullptr && *kty == "EC") {
            const std::string *crv = string_member(jwk, "crv");
            if (crv == nullptr || *crv != "P-256") {
                skip("its curve is not P-256");
                continue;
            }
            alg = JwkAlg::ES256;
        } else if (kty != nullptr && *kty == "RSA") {
            alg = JwkAlg::RS256;
        } else {
            skip("its kty is not EC or RSA");
            continue;
        }
        // A key is bound to one algorithm: alg, when present, must be the one
        // its type implies (RS384, PS256, ES384 … are not supported here).
        if (jwk.contains("alg")) {
            const std::string *named = string_member(jwk, "alg");
            if (named == nullptr || *named != jwk_alg_name(alg)) {
                skip(std::string("its alg is not ") + jwk_alg_name(alg));
                continue;
            }
        }
        const char *why = nullptr;
        Pkey key = alg == JwkAlg::ES256 ? ec_p256_key(jwk, why) : rsa_key(jwk, why);
        if (!key) {
            skip(why != nullptr ? why : "unreadable");
            continue;
        }
        if (alg == JwkAlg::ES256 && !public_key_is_sound(key.get())) {
            skip("its point is not a valid P-256 public key");
            continue;
        }
        if (duplicated.count(*kid) || set->keys_.count(*kid)) {
            // A kid that names two keys chooses neither.
            set->keys_.erase(*kid);
            if (duplicated.insert(*kid).second) skip("its kid names more than one key");
            continue;
        }
        std::unique_ptr<Jwk> entry(new Jwk(*kid, alg, key.get()));
        (void)key.release();  // owned by entry now
        set->keys_.emplace(*kid, std::move(entry));
    }
    result.keys = std::move(set);
    return result;
}

JwksParse parse_jwks(const std::string &document) {
    try {
        return JwksParser::parse(document);
    } catch (...) {
        JwksParse result;
        result.error = "the document could not be read (out of memory?)";
        return result;
    }
}

}  // namespace rws
