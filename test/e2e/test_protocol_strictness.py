"""What RFC 6455 and RFC 9112 require of a server, checked from raw sockets
(libwebsockets 4.1.6 does none of it by itself): the opening handshake,
masking, close frames, unambiguous request framing, and upgrades that arrive
while the worker shuts down."""
import base64
import json
import os
import socket
import time
import uuid

import pytest

from harness import TIMEOUT, RawClient, make_token


def exchange(cluster, request, timeout=5):
    """Sends raw bytes; returns everything the server sent until it closed
    (or went quiet for timeout seconds: then closed is False)."""
    sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=timeout)
    data, closed = b"", False
    try:
        sock.sendall(request)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        sock.close()
    return data, closed


def status_and_headers(response):
    head = response.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def upgrade_request(token, version="13", key=None, extra=""):
    key = base64.b64encode(os.urandom(16)).decode() if key is None else key
    lines = [f"GET /ws?token={token} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade"]
    if version is not None:
        lines += [f"Sec-WebSocket-Version: {v}" for v in (version if isinstance(version, list) else [version])]
    if key is not False:
        lines += [f"Sec-WebSocket-Key: {k}" for k in (key if isinstance(key, list) else [key])]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# --- the opening handshake ----------------------------------------------------

def test_a_valid_handshake_upgrades(cluster):
    response, _ = exchange(cluster, upgrade_request(make_token(str(uuid.uuid4()))), timeout=1)
    assert status_and_headers(response)[0] == 101


@pytest.mark.parametrize("version", [None, "8", "12", "abc", "", ["13", "13"], "13, 8"])
def test_a_version_other_than_13_gets_426(cluster, version):
    response, closed = exchange(cluster, upgrade_request(make_token(str(uuid.uuid4())), version=version))
    status, headers = status_and_headers(response)
    assert status == 426 and headers.get("sec-websocket-version") == "13", response[:300]
    assert closed


@pytest.mark.parametrize("key", [
    False,                                   # absent
    "",                                      # empty
    "abc",                                   # not 16 bytes
    base64.b64encode(os.urandom(15)).decode(),
    base64.b64encode(os.urandom(17)).decode(),
    "!" * 22 + "==",                         # not base64
    "dGhlIHNhbXBsZSBub25jZR==",              # stray bits in the last character
    [base64.b64encode(os.urandom(16)).decode()] * 2,  # twice
    "k" * 200,
])
def test_a_missing_or_malformed_key_gets_400(cluster, key):
    response, closed = exchange(cluster, upgrade_request(make_token(str(uuid.uuid4())), key=key))
    assert status_and_headers(response)[0] == 400, response[:300]
    assert closed


def test_an_upgrade_with_a_body_gets_400(cluster):
    request = upgrade_request(make_token(str(uuid.uuid4())), extra="Content-Length: 6\r\n") + b"\x81\x80abcd"
    response, closed = exchange(cluster, request)
    assert status_and_headers(response)[0] == 400 and closed


# --- masking ------------------------------------------------------------------

def close_of(client):
    """The server's close frame (code, reason) and whether one came at all."""
    try:
        for opcode, payload in client.frames(timeout=TIMEOUT):
            if opcode == 8:
                return int.from_bytes(payload[:2], "big"), payload[2:]
    except EOFError:
        return None, b""


def test_masked_frames_are_served(cluster):
    client = RawClient.ready(cluster)
    client.send_frame(1, b'{"type":"ping","n":1}')
    assert json.loads(next(client.frames())[1]) == {"type": "pong", "n": 1}
    client.close()


@pytest.mark.parametrize("frames", [
    [(1, b'{"type":"ping"}', False, True)],                   # a whole text frame
    [(1, b"", False, True)],                                  # an empty one
    [(1, b'{"type":', True, False), (0, b'"ping"}', False, True)],  # an unmasked continuation
    [(10, b"hb", False, True)],                               # a pong
    [(8, (1000).to_bytes(2, "big"), False, True)],            # a close
], ids=["text", "empty", "continuation", "pong", "close"])
def test_an_unmasked_client_frame_is_closed_1002(cluster, frames):
    client = RawClient.ready(cluster)
    for opcode, payload, masked, fin in frames:
        client.send_frame(opcode, payload, masked=masked, fin=fin)
    code, _ = close_of(client)
    assert code == 1002
    client.close()


# --- close frames ---------------------------------------------------------------

@pytest.mark.parametrize("payload, expected", [
    (b"\x03", 1002),                                       # one byte: no room for a code
    ((5000).to_bytes(2, "big"), 1002),                     # not a code anyone may send
    ((999).to_bytes(2, "big"), 1002),
    ((1005).to_bytes(2, "big"), 1002),
    ((1000).to_bytes(2, "big") + b"bye \xe2\x82", 1007),   # a reason cut inside a character
    ((1000).to_bytes(2, "big") + b"bye", 1000),            # valid: echoed
    ((4321).to_bytes(2, "big"), 4321),
    (b"", None),                                           # no code: echoed empty
])
def test_close_frames_are_answered_per_rfc_6455(cluster, payload, expected):
    client = RawClient.ready(cluster)
    client.send_frame(8, payload)
    answer = None
    try:
        for opcode, data in client.frames(timeout=TIMEOUT):
            if opcode == 8:
                answer = data
                break
    except EOFError:
        pytest.fail("closed without a close frame")
    code = int.from_bytes(answer[:2], "big") if len(answer) >= 2 else None
    assert code == expected, answer
    assert len(answer) != 1
    client.close()


# --- request framing (RFC 9112 §6) ------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("request_head", [
    b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 30\r\n\r\n",
    b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 7\r\n\r\n",
    b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
])
def test_ambiguous_framing_gets_400_and_the_rest_is_never_served(cluster, request_head):
    response, closed = exchange(cluster, request_head + b"0\r\n\r\n" + SMUGGLED)
    assert status_and_headers(response)[0] == 400, response[:300]
    assert response.count(b"HTTP/1.1 ") == 1 and closed, response


def test_a_body_where_none_belongs_is_refused_and_the_server_keeps_serving(cluster):
    """A request body followed by a pipelined request once sent lws 4.1.6
    into an endless loop inside the worker: no request was answered again."""
    for request in (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + SMUGGLED,
                    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + SMUGGLED,
                    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + SMUGGLED):
        response, closed = exchange(cluster, request)
        assert closed and b"/smuggled" not in response and response.count(b"HTTP/1.1 ") <= 2, response
        assert b"HTTP/1.1 200" not in response
        status, _ = cluster.http("/healthz")
        assert status == 200


def test_a_post_without_content_length_is_answered_then_closed(cluster):
    """lws would read whatever follows as that request's body (for up to
    100 MB), swallowing the next request: the connection closes instead."""
    response, closed = exchange(cluster, b"POST /auth/anonymous HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED)
    assert response.count(b"HTTP/1.1 ") == 1 and status_and_headers(response)[0] == 404  # sign-in is off
    assert closed


# --- shutdown -------------------------------------------------------------------

def attempt_upgrade(cluster, token):
    """One upgrade during shutdown: 'refused' (no listener), 'told' (503, or
    101 then server_restarting and close 1012), or what went wrong."""
    try:
        sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    try:
        sock.sendall(upgrade_request(token))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return "refused" if not data else f"closed after {data[:40]!r}"
            data += chunk
        status = status_and_headers(data)[0]
        if status == 503:
            return "told"
        if status != 101:
            return f"status {status}"
        rest = data.split(b"\r\n\r\n", 1)[1]
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
            chunk = sock.recv(4096)
            if not chunk:
                return "101 then EOF"
            rest += chunk
        frame = json.loads(rest[2:2 + (rest[1] & 0x7F)])
        return "told" if frame.get("type") == "server_restarting" else f"101 then {frame}"
    except socket.timeout:
        return "101 then silence"
    except ConnectionResetError:
        return "refused"
    finally:
        sock.close()


def test_upgrades_during_shutdown_are_told_to_come_back(cluster):
    """A client that never answers the close keeps the worker in its shutdown
    grace period; every upgrade meanwhile is refused or told to come back."""
    # A stuck client on every worker, and every worker terminated: an
    # upgrade can reach none that serves normally.
    pids = cluster.worker_pids()
    stuck, users, reached = [], [], set()
    for _ in range(64):
        users.append(str(uuid.uuid4()))
        stuck.append(RawClient(cluster, make_token(users[-1])))
        reached = cluster.wait_for(lambda: (lambda rows: len(rows) == len(users) and {r[0] for r in rows})(
            cluster.sql("SELECT worker_pid FROM resumable_ws.connections() WHERE user_id::text = ANY(%s)",
                        (users,))), what="the stuck clients in connections()")
        if reached == set(pids):
            break
    assert reached == set(pids), "no stuck client on every worker"
    token = make_token(str(uuid.uuid4()))
    cluster.terminate_workers(pids)
    outcomes = []
    deadline = time.monotonic() + 10
    # Until a worker is back: the old ones shut down, or none runs.
    while set(cluster.running_worker_pids()) <= set(pids) and time.monotonic() < deadline:
        outcomes.append(attempt_upgrade(cluster, token))
    for client in stuck:
        client.close()
    assert outcomes and set(outcomes) <= {"refused", "told"}, outcomes
    cluster.wait_healthy()
