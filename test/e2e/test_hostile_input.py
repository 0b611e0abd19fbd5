"""Bad input never crashes the worker (a crash would restart the whole
cluster): every case ends in a close or a refusal, and the workers keep
serving with the same pids. The module fixture also fails on any crash."""
import json
import os
import random
import socket

import pytest

from harness import RawClient


@pytest.fixture(scope="module", autouse=True)
def worker_pids_before(cluster):
    return cluster.worker_pids()


def test_invalid_utf8_text_is_closed_1007(cluster):
    client = RawClient.ready(cluster)
    client.send_frame(1, b'{"type":"ping","x":"\xff\xfe"}')
    assert client.close_code() == 1007
    client.close()


def test_oversized_control_frame_is_refused(cluster):
    client = RawClient.ready(cluster)
    client.send_frame(9, b"x" * 200)  # pings may carry at most 125 bytes
    assert client.close_code() in (1002, None)
    client.close()


def test_random_bytes_after_handshake(cluster):
    rng = random.Random(7)
    for _ in range(20):
        client = RawClient.ready(cluster)
        try:
            client.sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))))
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            client.close_code(timeout=5)
        except (OSError, socket.timeout):
            pass
        client.close()


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET /ws?token=" + b"t" * 50_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",  # no key
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 prior knowledge
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS hello
])
def test_malformed_http_is_refused(cluster, request_bytes):
    sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=10)
    try:
        sock.sendall(request_bytes)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.close()
    assert cluster.http("/healthz")[0] == 200


def test_handshakes_dropped_halfway(cluster):
    for n in range(50):
        sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=10)
        sock.sendall(b"GET /ws?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"[: n + 5])
        sock.close()
    assert cluster.http("/healthz")[0] == 200


def test_worker_survived_everything(cluster, worker_pids_before):
    client = RawClient.ready(cluster)
    client.send_frame(1, b'{"type":"ping"}')
    opcode, payload = next(client.frames())
    assert json.loads(payload) == {"type": "pong"}
    client.close()
    assert cluster.worker_pids() == worker_pids_before
    assert not cluster.crash_lines()
