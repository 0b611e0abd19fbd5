"""Native TLS (resumable_ws.ssl_cert_file / ssl_key_file): HTTPS and WSS with
a certificate from a CA the test makes, trusted alone by every client; the
chat page in Chromium; certificate reloads on SIGHUP that leave open
connections alone; broken files that keep the certificate in force; plain
text, TLS 1.1, weak ciphers and h2 refused; TLS switched off and on; and a
start with unusable files that serves nothing rather than plain text."""
import asyncio
import socket
import ssl
import tempfile
import time
import uuid

import pytest
import websockets

from answers import check_generation, send_and_answer
from browser import Browser
from certs import Authority, peer_certificate
from conftest import run, running_cluster
from harness import Cluster, TIMEOUT, connect_when_back

ECHO_TEXT = ("You said: \"{}\". This answer comes from the echo provider; set "
             "resumable_ws.llm_provider = openai to talk to a model.")


@pytest.fixture(scope="module")
def ca():
    directory = tempfile.mkdtemp(prefix="rws-tls-")
    authority = Authority(directory, owner="postgres" if __import__("os").geteuid() == 0 else None)
    authority.pins = {}  # serial -> SPKI pin of each certificate issued
    return authority


def install(ca, cn):
    """Issues a new certificate with a new key and writes both files."""
    cert, key, serial, pin = ca.issue(cn)
    ca.pins[serial] = pin
    return ca.write("server.crt", cert), ca.write("server.key", key, private=True), serial


@pytest.fixture(scope="module")
def cluster(ca):
    cert_file, key_file, _ = install(ca, "first.test")
    yield from running_cluster(client_ssl=ca.client_context(), **{
        # Two listening sockets, each with its own TLS context: a reload
        # must reach both.
        "resumable_ws.listen_addresses": "'127.0.0.1,127.0.0.2'",
        "resumable_ws.ssl_cert_file": f"'{cert_file}'",
        "resumable_ws.ssl_key_file": f"'{key_file}'",
        "resumable_ws.llm_provider": "echo",
        "resumable_ws.anonymous_sign_in": "on",
    })


def log_count(cluster, text):
    return cluster.log().count(text)


def wait_log(cluster, text, before):
    """Waits until text appears in the server log more than `before` times."""
    cluster.wait_for(lambda: log_count(cluster, text) > before, what=f"log line {text!r}")


def reload_and_wait(cluster, text):
    """A reload, then text logged once more by every worker (each serves
    with its own TLS context)."""
    before = log_count(cluster, text)
    cluster.sql("SELECT pg_reload_conf()")
    wait_log(cluster, text, before + cluster.workers - 1)


def raw_exchange(port, data, timeout=5):
    """Sends bytes in plain text; returns (everything the server wrote until
    it closed, seconds until it closed)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    return received, time.monotonic() - started


# --- serving over TLS ----------------------------------------------------------------

@run
async def test_wss_gets_ready_events_and_an_echo_answer(cluster, ca):
    assert cluster.ws_url().startswith("wss://")
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "over TLS")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_done" and deltas == ECHO_TEXT.format("over TLS")
    await client.close()
    assert "resumable_ws: serving wss://127.0.0.1" in cluster.log()


@run
async def test_large_events_and_replays_go_through_tls_writes_whole(cluster):
    """Frames larger than a TLS record and than the socket's buffer, live and
    replayed, arrive whole and in order (lws keeps what a partial SSL_write
    leaves)."""
    client = await cluster.new_session()
    cluster.sql("SELECT resumable_ws.publish(%s, 'big', jsonb_build_object('n', n, 'data', repeat(chr(65 + n), "
                "900000))) FROM generate_series(1, 3) AS n", (client.session_id,))
    events = await client.events(0, 3)
    assert [len(e["payload"]["data"]) for e in events] == [900000] * 3
    assert [e["payload"]["data"][:1] for e in events] == ["B", "C", "D"]
    await client.close()
    again = await cluster.connect(user=client.user, session_id=client.session_id, last_event_id=0)
    await again.ready()
    assert [e["payload"]["n"] for e in await again.events(0, 3, allow=("replay_done",))] == [1, 2, 3]
    await again.close()


def test_https_endpoints(cluster):
    status, body = cluster.http("/healthz")
    assert status == 200 and '"database":true' in body
    status, body = cluster.http("/")
    assert status == 200 and "<html" in body.lower()
    status, body = cluster.http("/auth/anonymous", method="POST")
    assert status == 200 and "access_token" in body


def test_only_tls_1_2_and_later_with_strong_ciphers(cluster, ca):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ca.client_context(minimum_version=version, maximum_version=version)
        with socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT) as sock:
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                name, _, bits = tls.cipher()
                assert bits >= 128 and ("GCM" in name or "CHACHA20" in name), name

    # A client that could speak TLS 1.1 (its own floor lowered) is refused by
    # the server's alert, not by its own configuration.
    old = ca.client_context(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    # A CBC suite without forward-secret AEAD, which TLS 1.2 clients may still offer.
    weak = ca.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA")
    for ctx, alert in ((old, "PROTOCOL_VERSION"), (weak, "HANDSHAKE_FAILURE")):
        with socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT) as sock:
            with pytest.raises(ssl.SSLError) as refused:
                ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        assert alert in str(refused.value), refused.value


def test_alpn_is_http_1_1_never_h2(cluster, ca):
    for offered, expected in ((["h2", "http/1.1"], "http/1.1"), (["h2"], None), (["http/1.1"], "http/1.1")):
        ctx = ca.client_context()
        ctx.set_alpn_protocols(offered)
        with socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT) as sock:
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                assert tls.selected_alpn_protocol() == expected, offered


H2C = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
ODD_UPGRADE = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"


def exchange(port, data, ctx=None, timeout=5):
    """Sends bytes (over TLS with ctx); returns everything the server wrote
    until it closed, and the seconds that took."""
    if ctx is None:
        return raw_exchange(port, data, timeout)
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(data)
            try:
                while chunk := tls.recv(4096):
                    received += chunk
            except (ConnectionResetError, ssl.SSLError):
                pass
    return received, time.monotonic() - started


def check_no_http2_by_upgrade(port, ctx, refusal):
    """Upgrade: h2c would switch lws 4.1.6 to HTTP/2 (and its HPACK decoder),
    whatever ALPN says: it is refused, and so are an unknown upgrade and the
    HTTP/2 preface."""
    answer, seconds = exchange(port, H2C, ctx)
    assert answer.startswith(b"HTTP/1.1 400 ") and refusal in answer, answer
    assert seconds < 2
    answer, seconds = exchange(port, ODD_UPGRADE, ctx)
    assert answer.split(b"\r\n")[0].split(b" ")[1] in (b"400", b"403"), answer
    assert seconds < 2
    # Nor does HTTP/2 with prior knowledge (its connection preface) get in.
    answer, seconds = exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ctx)
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.0 4") or answer == b"", answer
    assert seconds < 2


def test_http2_by_upgrade_is_refused(cluster, ca):
    check_no_http2_by_upgrade(cluster.ws_port, ca.client_context(), b"only Upgrade: websocket")
    check_no_http2_by_upgrade(cluster.ws_port, None, b"speaks HTTPS only")
    assert cluster.http("/healthz")[0] == 200


@run
async def test_plain_text_clients_are_refused_at_once(cluster):
    port = cluster.ws_port
    answer, seconds = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"speaks HTTPS only" in answer, answer
    assert seconds < 2
    answer, seconds = raw_exchange(port, (
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 400 ") and b"101" not in answer.split(b"\r\n")[0]
    assert seconds < 2
    # Neither HTTP nor TLS: dropped without an answer.
    answer, seconds = raw_exchange(port, bytes(range(1, 32)) * 4)
    assert answer == b"" and seconds < 2
    # A WebSocket client given ws:// by mistake.
    with pytest.raises(websockets.InvalidStatusCode) as refused:
        await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT)
    assert refused.value.status_code == 400
    # And the server is fine.
    assert cluster.http("/healthz")[0] == 200


def test_hostile_tls_input_leaves_the_server_serving(cluster, ca):
    """Records with random contents and lengths, handshakes cut off halfway,
    and garbage after a finished handshake: nothing crashes (the fixture
    checks the log), and the server keeps answering while they are open."""
    import os
    import random
    rng = random.Random(10)
    held = []
    try:
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=TIMEOUT)
            if i % 4 == 0:  # a TLS record header, then random bytes
                sock.sendall(b"\x16\x03" + bytes([rng.randrange(0, 5)]) + os.urandom(rng.randrange(1, 600)))
            elif i % 4 == 1:  # the first bytes of a real ClientHello, then silence
                hello = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = ca.client_context().wrap_bio(*hello, server_hostname="127.0.0.1")
                with pytest.raises(ssl.SSLWantReadError):
                    tls.do_handshake()
                data = hello[1].read()
                sock.sendall(data[: rng.randrange(1, len(data))])
            elif i % 4 == 2:  # a finished handshake, then bytes that are no TLS record
                sock = ca.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
                raw = socket.socket(fileno=os.dup(sock.fileno()))  # the same connection, past TLS
                raw.sendall(os.urandom(rng.randrange(1, 300)))
                held.append(raw)
            else:  # random bytes from the start
                sock.sendall(os.urandom(rng.randrange(1, 300)))
            held.append(sock)
        assert cluster.http("/healthz")[0] == 200
        answer, _ = exchange(cluster.ws_port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
                             ca.client_context())
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_the_chat_page_works_over_https_in_chromium(cluster, ca):
    current = peer_certificate(cluster.ws_port, ca)
    url = f"https://127.0.0.1:{cluster.ws_port}/"
    # Without the certificate's pin Chromium refuses the page: the pin, not a
    # blanket "ignore certificate errors", is what makes it trusted below.
    stranger = Browser()
    try:
        stranger.call("open", width=800, height=600)
        with pytest.raises(AssertionError, match="ERR_CERT_AUTHORITY_INVALID"):
            stranger.call("goto", url=url)
    finally:
        stranger.close()

    browser = Browser([f"--ignore-certificate-errors-spki-list={ca.pins[current.serial_number]}"])
    try:
        assert browser.open(url) == url
        browser.wait("document.getElementById('status').dataset.state === 'live'")
        browser.call("fill", selector="#input", text="hello from Chromium")
        browser.call("press", selector="#input", key="Enter")
        browser.wait("document.querySelector('.msg.assistant[data-state=done]')")
        answers = browser.eval("Array.from(document.querySelectorAll('.msg.assistant .bubble'))"
                               ".map(e => e.textContent)")
        assert answers == [ECHO_TEXT.format("hello from Chromium")]
        assert browser.eval("location.protocol") == "https:"
        assert browser.problems() == []
    finally:
        browser.close()


# --- reloading the certificate ---------------------------------------------------

@run
async def test_a_new_certificate_on_reload_leaves_open_connections_alone(cluster, ca):
    pids = cluster.worker_pids()
    old_serial = peer_certificate(cluster.ws_port, ca).serial_number
    client = await cluster.new_session()
    _, events = await send_and_answer(client, "before")

    cn = f"renewed-{uuid.uuid4().hex[:8]}.test"
    _, _, serial = install(ca, cn)
    reload_and_wait(cluster, f"TLS certificate reloaded: CN={cn}, serial ")

    # New handshakes see the new certificate; the open connection goes on
    # (messages, answers and events) on the session it had.
    fresh = peer_certificate(cluster.ws_port, ca)
    assert fresh.serial_number == serial != old_serial
    assert peer_certificate(cluster.ws_port, ca, host="127.0.0.2").serial_number == serial
    assert fresh.subject.rfc4514_string() == f"CN={cn}"
    first = events[-1]["id"] + 1
    reply_to, events = await send_and_answer(client, "after")
    assert reply_to == first
    assert check_generation(events, reply_to)[0] == ECHO_TEXT.format("after")
    other = await cluster.new_session()
    await other.close()
    await client.close()
    assert cluster.worker_pids() == pids


@pytest.mark.parametrize("breakage", ["garbage certificate", "key of another certificate", "missing key",
                                      "encrypted key", "truncated chain", "key readable by others"])
@run
async def test_unusable_files_on_reload_keep_the_certificate_in_force(cluster, ca, breakage):
    in_force = peer_certificate(cluster.ws_port, ca).serial_number
    client = await cluster.new_session()
    good_cert, good_key = open(ca.dir + "/server.crt", "rb").read(), open(ca.dir + "/server.key", "rb").read()
    other_cert, other_key, _, _ = ca.issue("other.test")
    if breakage == "garbage certificate":
        ca.write("server.crt", b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    elif breakage == "key of another certificate":
        ca.write("server.key", other_key, private=True)
    elif breakage == "missing key":
        __import__("os").unlink(ca.dir + "/server.key")
    elif breakage == "encrypted key":
        from cryptography.hazmat.primitives import serialization
        key = serialization.load_pem_private_key(good_key, None)
        ca.write("server.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.BestAvailableEncryption(b"secret")), private=True)
    elif breakage == "key readable by others":
        ca.write("server.key", good_key)
    elif breakage == "truncated chain":
        ca.write("server.crt", other_cert + good_cert[: len(good_cert) // 2])
    try:
        reload_and_wait(cluster, "WARNING:  resumable_ws: the TLS certificate in force stays: ")
        assert peer_certificate(cluster.ws_port, ca).serial_number == in_force
        assert peer_certificate(cluster.ws_port, ca, host="127.0.0.2").serial_number == in_force
        await client.user_message("still here")
        assert (await client.expect("ack"))["duplicate"] is False
        # One line per reload, and no key material in it.
        warnings = [line for line in cluster.log().splitlines() if "certificate in force stays" in line]
        assert "PRIVATE KEY" not in warnings[-1] and len(warnings[-1]) < 600, warnings[-1]
    finally:
        ca.write("server.crt", good_cert)
        ca.write("server.key", good_key, private=True)
        await client.close()
    # Fixed files, reloaded: the same certificate, so nothing to say.
    cluster.sql("SELECT pg_reload_conf()")
    assert peer_certificate(cluster.ws_port, ca).serial_number == in_force


# --- switching TLS off and on (last: the worker restarts) --------------------------

@run
async def test_switching_tls_off_and_on_restarts_the_worker_gracefully(cluster, ca):
    pids = cluster.worker_pids()
    client = await cluster.new_session()
    cert_file, key_file = ca.dir + "/server.crt", ca.dir + "/server.key"

    cluster.reload(**{"resumable_ws.ssl_cert_file": "", "resumable_ws.ssl_key_file": ""})
    code, frames = await client.close_code()
    assert code == 1012 and frames[-1]["type"] == "server_restarting"
    assert "TLS switched off: the worker restarts" in cluster.log()
    client_ssl, cluster.client_ssl = cluster.client_ssl, None
    # Every worker restarts: only then does every connection get plain text.
    pids = cluster.wait_workers_replaced(pids)
    plain = await connect_when_back(cluster)
    assert cluster.http("/healthz")[0] == 200
    check_no_http2_by_upgrade(cluster.ws_port, None, b"only Upgrade: websocket")

    # Half a pair: TLS stays off, and says why.
    before = log_count(cluster, "TLS stays off: ")
    cluster.reload(**{"resumable_ws.ssl_cert_file": cert_file})
    wait_log(cluster, "TLS stays off: ", before)
    assert cluster.http("/healthz")[0] == 200

    cluster.reload(**{"resumable_ws.ssl_key_file": key_file})
    code, frames = await plain.close_code()
    assert code == 1012 and frames[-1]["type"] == "server_restarting"
    cluster.client_ssl = client_ssl
    cluster.wait_workers_replaced(pids)
    again = await connect_when_back(cluster)
    await again.close()
    # Each worker said so at the start and once more now.
    cluster.wait_for(lambda: cluster.log().count("resumable_ws: serving wss://") == 2 * cluster.workers,
                     what="every worker serving wss:// again")


# --- a start with unusable TLS settings serves nothing -------------------------------

def port_refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_a_start_with_unusable_tls_settings_serves_nothing_until_fixed(ca):
    cert, key, _, _ = ca.issue("late.test")
    cert_file = ca.write("late.crt", cert)
    key_file = ca.write("late.key", key, private=True)
    wrong_key = ca.write("wrong.key", ca.issue("other.test")[1], private=True)
    c = Cluster(client_ssl=ca.client_context(), **{"resumable_ws.ssl_cert_file": f"'{cert_file}'"})
    try:
        c.start(wait_healthy=False)
        c.sql("CREATE EXTENSION resumable_ws")
        wait_log(c, "resumable_ws: not serving: TLS needs both resumable_ws.ssl_cert_file and "
                    "resumable_ws.ssl_key_file; only ssl_cert_file is set", 0)
        assert port_refuses(c.ws_port)

        c.reload(**{"resumable_ws.ssl_key_file": wrong_key})
        wait_log(c, "does not belong to the certificate", 0)
        assert port_refuses(c.ws_port)

        c.reload(**{"resumable_ws.ssl_key_file": key_file})
        c.wait_healthy()
        assert "serving ws://" not in c.log()
        assert peer_certificate(c.ws_port, ca).subject.rfc4514_string() == "CN=late.test"
        assert c.crash_lines() == []
    finally:
        c.destroy()
