"""A fake JWKS endpoint (Supabase's /auth/v1/.well-known/jwks.json) on
loopback, and signing keys made with python3-cryptography, for the JWKS
tests. The server counts the requests it gets, serves whatever document it is
given, and can go down (its port refuses connections) and come back on the
same port.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import free_port

PATH = "/auth/v1/.well-known/jwks.json"


class SigningKey:
    """A private key with its kid; its public JWK goes into a JWKS."""

    def __init__(self, kid, alg="ES256", bits=2048):
        self.kid = kid
        self.alg = alg
        if alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.jwk_class = jwt.algorithms.ECAlgorithm
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            self.jwk_class = jwt.algorithms.RSAAlgorithm

    def jwk(self):
        jwk = json.loads(self.jwk_class.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    def token(self, claims, kid=None):
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": kid or self.kid})


def jwks(*keys):
    return json.dumps({"keys": [k.jwk() for k in keys]})


class FakeJwks:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.document = '{"keys":[]}'
        self.status = 200
        self.requests = []  # monotonic times of the GETs of PATH
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def serve(self, document, status=200):
        with self._lock:
            self.document = document
            self.status = status

    @property
    def count(self):
        with self._lock:
            return len(self.requests)

    def last_request(self):
        with self._lock:
            return self.requests[-1] if self.requests else None

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with fake._lock:
                    if self.path == PATH:
                        fake.requests.append(time.monotonic())
                    body, status = fake.document.encode(), fake.status
                if self.path != PATH:
                    body, status = b"not found", 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        """Down: the port refuses connections until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
