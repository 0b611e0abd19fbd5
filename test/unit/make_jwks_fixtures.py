#!/usr/bin/python3
"""Writes test/unit/jwks_fixtures.hpp: JWKS documents and tokens made with
PyJWT and python3-cryptography (Debian's), independently of the code under
test, for test/unit/jwks_test.cpp; and seeds for the JWKS fuzz target in
test/fuzz/corpus/jwks/. Tokens expire in 2100; the tests verify them at a
fixed NOW. Keys are new on every run: rerun it only to change the fixtures,
and commit what it writes.

    /usr/bin/python3 test/unit/make_jwks_fixtures.py
"""
import base64
import hashlib
import hmac
import json
import os

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOW = 1764000000  # 2025-11-24, the tests' clock
EXP = 4102444800  # 2100-01-01
ISSUER = "https://abcdefghijklmnopqrst.supabase.co/auth/v1"
SECRET = "unit-test-secret-unit-test-secret"  # jwks_test.cpp's HS256 secret
USER = "5b1d2c3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key, kid, **members):
    """The public JWK of a key, as PyJWT writes it, with kid and members."""
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) \
        else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    jwk.update(members)
    return {k: v for k, v in jwk.items() if v is not None}


def private_jwk(key, kid, **members):
    algorithm = jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) \
        else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key))
    jwk["kid"] = kid
    jwk.update(members)
    return jwk


def supabase_claims(**overrides):
    """Claims as Supabase Auth puts them in an access token."""
    claims = {
        "iss": ISSUER,
        "sub": USER,
        "aud": "authenticated",
        "exp": EXP,
        "iat": NOW - 60,
        "email": "user@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email_verified": True},
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": NOW - 60}],
        "session_id": "0c8e3a4b-1d2f-4e5a-9b6c-7d8e9f0a1b2c",
        "is_anonymous": False,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key, alg, kid, claims, extra_headers=None):
    headers = {"kid": kid} if kid is not None else {}
    headers.update(extra_headers or {})
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def with_signature(token, signature):
    return token[: token.rindex(".") + 1] + b64(signature)


def raw_es256(token):
    sig = unb64(token[token.rindex(".") + 1:])
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def es256_raw(r, s):
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def hs256_token(header, claims, secret):
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + b64(mac)


def es256_token(header, claims, key):
    """An ES256 token with a header PyJWT would not write."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(head.encode(), ec.ECDSA(hashes.SHA256())))
    return head + "." + b64(es256_raw(r, s))


def main():
    es_a = ec.generate_private_key(ec.SECP256R1())
    es_b = ec.generate_private_key(ec.SECP256R1())
    es_other = ec.generate_private_key(ec.SECP256R1())
    es_private = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    rs_a = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_big = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    rs_short = rsa.generate_private_key(public_exponent=65537, key_size=1024)

    bad_point = public_jwk(es_other, "es-bad-point", alg="ES256", use="sig")
    y = int.from_bytes(unb64(bad_point["y"]), "big")
    bad_point["y"] = b64(((y + 1) % (2 ** 256)).to_bytes(32, "big"))  # off the curve
    short_x = public_jwk(es_other, "es-short-x", alg="ES256")
    short_x["x"] = b64(unb64(short_x["x"])[1:])  # another number: off the curve
    long_x = public_jwk(es_other, "es-long-x", alg="ES256")
    long_x["x"] = b64(b"\0" + unb64(long_x["x"]).rjust(32, b"\0"))  # 33 bytes
    # A key whose x has a leading zero byte, written without it (as PyJWT
    # before 2.8 does): the same number, accepted.
    while True:
        es_lead = ec.generate_private_key(ec.SECP256R1())
        if es_lead.public_key().public_numbers().x < 2 ** 248:
            break
    lead_zero = public_jwk(es_lead, "es-lead-zero", alg="ES256")
    lead_zero["x"] = b64(es_lead.public_key().public_numbers().x.to_bytes(31, "big"))

    jwks = {"keys": [
        public_jwk(es_a, "es-a", alg="ES256", use="sig"),
        public_jwk(es_b, "es-b"),  # no alg, no use: ES256 from kty and crv
        public_jwk(rs_a, "rs-a", alg="RS256", use="sig"),
        public_jwk(rs_big, "rs-big", alg="RS256", use="sig", key_ops=["verify"]),
        public_jwk(p384, "es-384", alg="ES384"),  # another curve
        public_jwk(p384, "es-384-as-256", alg="ES256"),  # its alg disagrees with its curve
        public_jwk(rs_short, "rs-short", alg="RS256"),  # 1024 bits
        public_jwk(es_other, "es-enc", use="enc"),
        public_jwk(es_other, "es-says-rs", alg="RS256"),
        public_jwk(es_other, "es-ops-sign", key_ops=["sign"]),
        public_jwk(es_other, None),  # no kid
        bad_point,
        short_x,
        long_x,
        lead_zero,
        {"kty": "oct", "kid": "hs", "k": b64(SECRET.encode())},  # a symmetric key: never used
        "not an object",
    ]}
    jwks_private = {"keys": [
        public_jwk(es_a, "es-a", alg="ES256", use="sig"),
        private_jwk(es_private, "es-private", alg="ES256", use="sig"),
    ]}
    jwks_duplicate = {"keys": [
        public_jwk(es_a, "same", alg="ES256"),
        public_jwk(rs_a, "same", alg="RS256"),
        public_jwk(es_b, "es-b"),
    ]}

    claims = supabase_claims()
    tokens = {}
    tokens["es256"] = sign(es_a, "ES256", "es-a", claims)
    tokens["es256_inferred_alg"] = sign(es_b, "ES256", "es-b", claims)
    tokens["es256_short_coordinate_key"] = sign(es_lead, "ES256", "es-lead-zero", claims)
    tokens["rs256"] = sign(rs_a, "RS256", "rs-a", claims)
    tokens["rs256_4096"] = sign(rs_big, "RS256", "rs-big", claims)
    tokens["hs256"] = jwt.encode(claims, SECRET, algorithm="HS256")

    # Low-S and high-S forms of one valid signature: OpenSSL and JOSE accept
    # both (ECDSA signatures are malleable; a token's signature is no id).
    r, s = raw_es256(tokens["es256"])
    low, high = min(s, P256_ORDER - s), max(s, P256_ORDER - s)
    tokens["es256_low_s"] = with_signature(tokens["es256"], es256_raw(r, low))
    tokens["es256_high_s"] = with_signature(tokens["es256"], es256_raw(r, high))
    tokens["es256_s_plus_order"] = with_signature(tokens["es256"], es256_raw(r, s + P256_ORDER)) \
        if s + P256_ORDER < 2 ** 256 else with_signature(tokens["es256"], es256_raw(r, 0))
    tokens["es256_r_zero"] = with_signature(tokens["es256"], es256_raw(0, s))
    tokens["es256_der_signature"] = with_signature(tokens["es256"], encode_dss_signature(r, s))
    sig = unb64(tokens["es256"][tokens["es256"].rindex(".") + 1:])
    tokens["es256_63_bytes"] = with_signature(tokens["es256"], sig[:63])
    tokens["es256_65_bytes"] = with_signature(tokens["es256"], sig + b"\0")
    tokens["es256_65_bytes_leading_zero"] = with_signature(tokens["es256"], b"\0" + sig)
    tampered = bytearray(sig)
    tampered[10] ^= 1
    tokens["es256_tampered_signature"] = with_signature(tokens["es256"], bytes(tampered))
    head, _, signature = tokens["es256"].rpartition(".")
    other_claims = b64(json.dumps(supabase_claims(sub="6c2e3d4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f")).encode())
    tokens["es256_tampered_claims"] = head.split(".")[0] + "." + other_claims + "." + signature
    tokens["es256_other_key_same_kid"] = sign(es_other, "ES256", "es-a", claims)

    tokens["es256_unknown_kid"] = sign(es_a, "ES256", "no-such-kid", claims)
    tokens["es256_no_kid"] = sign(es_a, "ES256", None, claims)
    tokens["es256_on_rs_kid"] = sign(es_a, "ES256", "rs-a", claims)
    tokens["rs256_on_es_kid"] = sign(rs_a, "RS256", "es-a", claims)
    tokens["ps256_on_rs_kid"] = sign(rs_a, "PS256", "rs-a", claims)
    tokens["rs512_on_rs_kid"] = sign(rs_a, "RS512", "rs-a", claims)
    tokens["es384_on_p384_kid"] = sign(p384, "ES384", "es-384", claims)
    tokens["es256_on_skipped_p384_kid"] = sign(es_a, "ES256", "es-384-as-256", claims)
    tokens["rs256_short_key"] = sign(rs_short, "RS256", "rs-short", claims)
    tokens["es256_private_key_kid"] = sign(es_private, "ES256", "es-private", claims)
    rs_sig = unb64(tokens["rs256"][tokens["rs256"].rindex(".") + 1:])
    tokens["rs256_short_signature"] = with_signature(tokens["rs256"], rs_sig[1:])
    tokens["rs256_long_signature"] = with_signature(tokens["rs256"], b"\0" + rs_sig)
    tokens["rs256_pss_signature"] = with_signature(tokens["rs256"], rs_a.sign(
        tokens["rs256"][: tokens["rs256"].rindex(".")].encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()))

    # alg confusion: HMAC keyed with the ES key's public bytes, on its kid.
    pem = es_a.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    tokens["hs256_keyed_with_public_pem"] = hs256_token(
        {"alg": "HS256", "typ": "JWT", "kid": "es-a"}, claims, pem)
    tokens["hs256_real_secret_on_es_kid"] = hs256_token(
        {"alg": "HS256", "typ": "JWT", "kid": "es-a"}, claims, SECRET.encode())
    tokens["hs256_real_secret_unknown_kid"] = hs256_token(
        {"alg": "HS256", "typ": "JWT", "kid": "legacy-hs"}, claims, SECRET.encode())
    none_head = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "es-a"}).encode())
    tokens["none_on_es_kid"] = none_head + "." + b64(json.dumps(claims).encode()) + "."
    tokens["es256_crit"] = sign(es_a, "ES256", "es-a", claims, {"crit": ["exp"]})
    tokens["es256_kid_not_a_string"] = es256_token({"alg": "ES256", "kid": 7}, claims, es_a)

    tokens["es256_expired"] = sign(es_a, "ES256", "es-a", supabase_claims(exp=NOW - 10))
    tokens["es256_wrong_issuer"] = sign(es_a, "ES256", "es-a",
                                        supabase_claims(iss="https://other.supabase.co/auth/v1"))
    tokens["es256_no_issuer"] = sign(es_a, "ES256", "es-a", supabase_claims(iss=None))
    tokens["es256_wrong_audience"] = sign(es_a, "ES256", "es-a", supabase_claims(aud="anon"))
    tokens["es256_anon_key"] = sign(es_a, "ES256", "es-a", {
        "iss": "supabase", "ref": "abcdefghijklmnopqrst", "role": "anon", "iat": NOW - 60, "exp": EXP})
    tokens["es256_anonymous_user"] = sign(es_a, "ES256", "es-a", supabase_claims(
        is_anonymous=True, email="", amr=[{"method": "anonymous", "timestamp": NOW}]))
    tokens["es256_inline_only"] = tokens["es256_inferred_alg"]

    fixtures = {
        "now": NOW, "exp": EXP, "issuer": ISSUER, "secret": SECRET, "user": USER,
        "jwks": json.dumps(jwks), "jwks_private": json.dumps(jwks_private),
        "jwks_duplicate": json.dumps(jwks_duplicate),
        "jwks_es_a": json.dumps({"keys": [jwks["keys"][0]]}),
        "jwks_rs": json.dumps({"keys": [jwks["keys"][2], jwks["keys"][3]]}),
        "tokens": tokens,
    }
    text = json.dumps(fixtures, indent=1, sort_keys=True)
    assert ")FIXTURES\"" not in text
    with open(os.path.join(HERE, "jwks_fixtures.hpp"), "w") as f:
        f.write("// Generated by test/unit/make_jwks_fixtures.py (PyJWT, python3-cryptography): do not edit.\n"
                "#pragma once\n\nnamespace fixtures {\n\n"
                f"constexpr const char *kJwks = R\"FIXTURES({text})FIXTURES\";\n\n}}  // namespace fixtures\n")

    corpus = os.path.join(ROOT, "test", "fuzz", "corpus", "jwks")
    os.makedirs(corpus, exist_ok=True)
    seeds = {
        "full": jwks, "private": jwks_private, "duplicate": jwks_duplicate,
        "es": {"keys": [jwks["keys"][0]]}, "rs": {"keys": [jwks["keys"][2]]},
        "empty": {"keys": []}, "not_jwks": {"key": []},
    }
    for name, document in seeds.items():
        with open(os.path.join(corpus, name), "w") as f:
            json.dump(document, f)


if __name__ == "__main__":
    main()
