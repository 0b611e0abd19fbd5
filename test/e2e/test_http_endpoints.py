"""GET / (the chat page) and POST /auth/anonymous (PROTOCOL.md §2) over plain
HTTP: headers, the per-address limit, and the tokens themselves."""
import base64
import hashlib
import http.client
import json
import os
import re
import socket
import time
import uuid

import jwt
import pytest

from conftest import run, running_cluster
from harness import JWT_SECRET, PG_SHAREDIR, TIMEOUT

PER_MINUTE = 5


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(**{
        "resumable_ws.anonymous_sign_in": "on",
        "resumable_ws.anonymous_sign_ins_per_minute": PER_MINUTE,
        "resumable_ws.anonymous_token_ttl": "'2h'",
    })


def request(cluster, method, path, body=None, source="127.0.0.1", headers=None):
    """One HTTP/1.1 request from the given loopback source address."""
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ws_port, timeout=TIMEOUT,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def sign_in(cluster, source):
    return request(cluster, "POST", "/auth/anonymous", source=source)


def test_the_page_is_served_with_a_policy_that_allows_only_its_own_script(cluster):
    status, headers, html = request(cluster, "GET", "/?from=a-link")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache" and headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert [attributes for attributes, _ in scripts] == [' type="module"']
    digest = base64.b64encode(hashlib.sha256(scripts[0][1].encode()).digest()).decode()
    policy = headers["content-security-policy"]
    # Its inline module, and the modules it imports from this server only.
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert 'from "/client.js"' in html and 'from "/vendor/markdown-it.mjs"' in html
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # Only the page's Markdown policy may write markup into the DOM.
    assert "require-trusted-types-for 'script'; trusted-types rws-markdown" in policy
    assert "trustedTypes.createPolicy(\"rws-markdown\"" in html
    # Keep-alive: the next request on the same connection is answered too.
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ws_port, timeout=TIMEOUT)
    for path in ("/", "/healthz", "/"):
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.close()


def test_other_paths_and_methods(cluster):
    assert request(cluster, "GET", "/nope")[0] == 404
    assert request(cluster, "GET", "/index.html")[0] == 404
    status, headers, _ = request(cluster, "GET", "/ws")  # no upgrade asked for
    assert status == 426 and headers["upgrade"] == "websocket"
    status, headers, _ = request(cluster, "POST", "/")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, _ = request(cluster, "GET", "/auth/anonymous")
    assert status == 405 and headers["allow"] == "POST"


def test_the_client_library_is_served_as_a_module_any_page_may_import(cluster):
    status, headers, body = request(cluster, "GET", "/client.js")
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["cache-control"] == "no-cache"
    installed = os.path.join(PG_SHAREDIR, "extension", "resumable_ws", "client.js")
    with open(installed) as f:
        assert body == f.read()
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "clients", "js", "client.js")) as f:
        assert body == f.read(), "the installed library is not this tree's (make install)"
    assert "export class ResumableClient" in body
    # Revalidation: the same entity tag gets 304 and no body; another one
    # gets the whole module.
    etag = headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    status, headers, body = request(cluster, "GET", "/client.js", headers={"If-None-Match": etag})
    assert status == 304 and body == "" and headers["etag"] == etag
    status, _, body = request(cluster, "GET", "/client.js", headers={"If-None-Match": '"0123"'})
    assert status == 200 and body
    status, headers, _ = request(cluster, "POST", "/client.js")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_the_markdown_renderer_is_served_to_the_page_from_npm(cluster):
    status, headers, body = request(cluster, "GET", "/vendor/markdown-it.mjs")
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-cache"
    assert "access-control-allow-origin" not in headers  # for the page only
    root = os.path.join(os.path.dirname(__file__), "..", "..", "web")
    with open(os.path.join(root, "package-lock.json")) as f:
        version = json.load(f)["packages"]["node_modules/markdown-it"]["version"]
    assert body.startswith(f"/*! markdown-it {version} ")  # the version the lock pins
    assert "export {" in body
    etag = headers["etag"]
    status, _, body = request(cluster, "GET", "/vendor/markdown-it.mjs", headers={"If-None-Match": etag})
    assert status == 304 and body == ""
    # Fixed routes, not a directory: nothing else installed is reachable.
    for other in ("/vendor/", "/vendor/markdown-it.mjs.map", "/vendor/chat.html", "/markdown-it.mjs"):
        assert request(cluster, "GET", other)[0] == 404, other


def test_healthz_says_the_role_of_the_database(cluster):
    status, headers, body = request(cluster, "GET", "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] is True and health["role"] == "primary"
    assert isinstance(health["connections"], int)


@pytest.mark.parametrize("path", ["/", "/client.js", "/vendor/markdown-it.mjs", "/healthz", "/metrics", "/ws", "/nope"])
def test_head_gets_the_headers_of_get_and_no_body(cluster, path):
    get_status, get_headers, get_body = request(cluster, "GET", path)
    # Raw, so that a body sent after the headers would be seen (http.client
    # knows HEAD answers have none and would not read it).
    with socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "closed before the headers ended"
            answer += chunk
        head, rest = answer.split(b"\r\n\r\n", 1)
        # Then a GET on the same connection: its answer must come next, with
        # no stray body bytes of the HEAD answer before it.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(TIMEOUT)
        while b"\r\n\r\n" not in rest:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert status == get_status
    if path != "/metrics":  # its counters move between the two requests
        assert int(headers["content-length"]) == len(get_body.encode())
    else:
        assert int(headers["content-length"]) > 0
    for name in ("content-type", "cache-control", "content-security-policy", "x-content-type-options"):
        assert headers.get(name) == get_headers.get(name), name
    assert rest == b"" or rest.startswith(b"HTTP/1.1 "), rest[:80]


def test_anonymous_sign_in_gives_a_fresh_user_a_working_token(cluster):
    seen = set()
    for n in range(2):
        status, headers, body = sign_in(cluster, "127.0.0.2")
        assert status == 200 and headers["cache-control"] == "no-store"
        answer = json.loads(body)
        assert answer["token_type"] == "bearer" and answer["expires_in"] == 7200
        claims = jwt.decode(answer["access_token"], JWT_SECRET, algorithms=["HS256"],
                            audience="authenticated")
        assert claims["sub"] == answer["user"]["id"] == str(uuid.UUID(claims["sub"]))
        assert claims["exp"] - claims["iat"] == 7200 and abs(claims["iat"] - time.time()) < 60
        assert claims["is_anonymous"] is True and claims["role"] == "authenticated"
        seen.add(claims["sub"])
    assert len(seen) == 2

    @run
    async def connect_with_it():
        client = await cluster.connect(token=answer["access_token"])
        ready = await client.ready()
        owner = cluster.sql("SELECT user_id::text FROM resumable_ws.ws_sessions WHERE id = %s",
                            (ready["session_id"],))
        await client.close()
        return owner

    assert connect_with_it() == [(answer["user"]["id"],)]


def test_sign_ins_are_limited_per_address(cluster):
    # A body is allowed (and ignored); it is read before the answer.
    status, _, _ = request(cluster, "POST", "/auth/anonymous", body=b'{"any":"thing"}', source="127.0.0.3",
                           headers={"content-type": "application/json"})
    assert status == 200
    if cluster.workers == 1:
        statuses = [sign_in(cluster, "127.0.0.3")[0] for _ in range(PER_MINUTE + 2)]
        assert statuses == [200] * (PER_MINUTE - 1) + [429] * 3
        status, headers, body = sign_in(cluster, "127.0.0.3")
        assert status == 429
    else:
        # Each worker allows its share; the kernel picks the worker of each
        # request, so refusals may come a little early, never late: together
        # no more than PER_MINUTE, and refused once the shares are used.
        answers = [sign_in(cluster, "127.0.0.3") for _ in range(3 * PER_MINUTE)]
        statuses = [answer[0] for answer in answers]
        assert set(statuses) == {200, 429} and 1 + statuses.count(200) <= PER_MINUTE, statuses
        status, headers, body = answers[-1 - statuses[::-1].index(429)]
    share = max(1, PER_MINUTE // cluster.workers)
    retry_after = int(headers["retry-after"])
    assert 1 <= retry_after <= 60 // share and json.loads(body) == {"error": "rate_limited",
                                                                    "retry_after": retry_after}
    # Another address is not affected.
    assert sign_in(cluster, "127.0.0.4")[0] == 200


def test_sign_in_refuses_a_huge_body_and_survives_a_slow_one(cluster):
    status, _, _ = request(cluster, "POST", "/auth/anonymous", body=b"x" * 200000, source="127.0.0.5")
    assert status == 413
    # Headers promise a body that never comes: the worker keeps serving.
    sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT)
    sock.sendall(b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    assert request(cluster, "GET", "/healthz")[0] == 200
    sock.close()


def test_sign_in_can_be_switched_off_and_needs_a_secret(cluster):
    cluster.reload(**{"resumable_ws.anonymous_sign_in": "off"})
    try:
        cluster.wait_for(lambda: sign_in(cluster, "127.0.0.6")[0] == 404, what="sign-in off")
        status, _, body = sign_in(cluster, "127.0.0.6")
        assert json.loads(body)["error"] == "not_found"
        assert request(cluster, "GET", "/auth/anonymous")[0] == 404  # nothing there at all
    finally:
        cluster.reload(**{"resumable_ws.anonymous_sign_in": "on"})
    cluster.wait_for(lambda: sign_in(cluster, "127.0.0.6")[0] == 200, what="sign-in on")

    cluster.reload(**{"resumable_ws.jwt_secret": ""})
    try:
        cluster.wait_for(lambda: sign_in(cluster, "127.0.0.7")[0] == 503, what="no secret")
        assert "jwt_secret" in sign_in(cluster, "127.0.0.7")[2]
    finally:
        cluster.reload(**{"resumable_ws.jwt_secret": JWT_SECRET})
    cluster.wait_for(lambda: sign_in(cluster, "127.0.0.7")[0] == 200, what="secret back")
