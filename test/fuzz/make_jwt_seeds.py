#!/usr/bin/env python3
"""Writes corpus/jwt/: tokens validly signed with jwt_signing.hpp's kSecret
(so mutations start past the signature check), from corpus/jwt_claims/'s
header and claims, plus unsigned and malformed ones. Rerun it if the secret
or those seeds change."""
import base64
import hashlib
import hmac
import os

SECRET = b"fuzz-secret-fuzz-secret-fuzz-secret"  # fuzz::kSecret
HEADER = b'{"alg":"HS256","typ":"JWT"}'
here = os.path.dirname(os.path.abspath(__file__))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(header, claims):
    head = b64(header) + b"." + b64(claims)
    return head + b"." + b64(hmac.new(SECRET, head, hashlib.sha256).digest())


out = os.path.join(here, "corpus", "jwt")
os.makedirs(out, exist_ok=True)
claims_dir = os.path.join(here, "corpus", "jwt_claims")
for name in sorted(os.listdir(claims_dir)):
    data = open(os.path.join(claims_dir, name), "rb").read()
    header, claims = data.split(b"\n", 1) if b"\n" in data else (HEADER, data)
    open(os.path.join(out, name), "wb").write(sign(header, claims))

valid = sign(HEADER, open(os.path.join(claims_dir, "valid"), "rb").read())
extra = {
    "unsigned": valid[: valid.rindex(b".") + 1],
    "padded": valid + b"==",
    "four_parts": valid + b".x",
    "bad_base64": b"%%%." + valid.split(b".", 1)[1],
}
for name, token in extra.items():
    open(os.path.join(out, name), "wb").write(token)
