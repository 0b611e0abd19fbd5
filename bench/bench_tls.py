"""TLS cost benchmark: what native TLS adds to a connection, plain against
TLS with an EC P-256 and an RSA 2048 certificate (TLS 1.3, full handshakes:
the client keeps no session tickets).

    /usr/bin/python3 bench/bench_tls.py [N]   (as root, after `make install`)

For each mode, on a fresh cluster: N sequential connections of each kind,
  - handshake: TCP connect (+ TLS handshake), close;
  - connect to ready: TCP (+ TLS) + WebSocket upgrade + the `ready` frame of
    a new session (what a client waits for; includes the worker's database
    work, the same in every mode);
with the median and 95th percentile latency in ms, and the worker's CPU time
per connection (utime+stime from /proc: the server's cost alone, whatever
the client costs); then handshakes per second with 4 client threads (the
client shares this machine's cores). First of all, the worker's resident
memory per open connection, from 500 idle connections past their ready frame.
"""
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))

from certs import Authority  # noqa: E402
from harness import Cluster, make_token  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HELD = 500  # idle connections for the memory figure


def worker_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_socket(port, ctx):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx:
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    return sock


def connect_to_ready(port, ctx):
    sock = open_socket(port, ctx)
    token = make_token(str(uuid.uuid4()))
    sock.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b'"ready"' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before ready: {data[:200]!r}")
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return sock


def handshake(port, ctx):
    open_socket(port, ctx).close()


def timed(label, fn, n, pid):
    times = []
    cpu = worker_cpu_seconds(pid)
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    # Let the worker finish what the last ones left (closes, session rows).
    time.sleep(0.3)
    cpu_ms = (worker_cpu_seconds(pid) - cpu) * 1000 / n
    times.sort()
    return {"what": label, "median_ms": statistics.median(times), "p95_ms": times[int(0.95 * len(times)) - 1],
            "per_s_sequential": n / (sum(times) / 1000), "server_cpu_ms": cpu_ms}


def threaded_rate(port, ctx, seconds=3.0, threads=4):
    count = [0] * threads
    stop = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < stop:
            handshake(port, ctx)
            count[i] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def run_mode(mode, n, ca):
    settings = {"resumable_ws.llm_provider": "none", "resumable_ws.max_connections": 2000}
    ctx = None
    if mode != "plain":
        cert, key, _, _ = ca.issue(f"bench-{mode}.test", key_type=mode.split("-")[1])
        settings["resumable_ws.ssl_cert_file"] = f"'{ca.write(mode + '.crt', cert)}'"
        settings["resumable_ws.ssl_key_file"] = f"'{ca.write(mode + '.key', key, private=True)}'"
        ctx = ca.client_context()
    cluster = Cluster(client_ssl=ctx, **settings)
    try:
        cluster.start()
        pid = cluster.worker_pid()
        port = cluster.ws_port
        for _ in range(5):  # warm up
            connect_to_ready(port, ctx).close()
        # Memory first, while the worker's heap has not yet grown for the
        # runs below (freed memory it keeps would hide what connections take).
        time.sleep(0.5)
        before = worker_rss_kib(pid)
        held = [connect_to_ready(port, ctx) for _ in range(HELD)]
        time.sleep(0.5)
        per_connection = (worker_rss_kib(pid) - before) / len(held)
        for sock in held:
            sock.close()
        results = [timed("handshake", lambda: handshake(port, ctx), n, pid),
                   timed("connect to ready", lambda: connect_to_ready(port, ctx).close(), n, pid)]
        rate = threaded_rate(port, ctx)
        return results, rate, per_connection
    finally:
        cluster.destroy()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    ca = Authority(tempfile.mkdtemp(prefix="rws-bench-tls-"), owner="postgres" if os.geteuid() == 0 else None)
    print(f"{n} sequential connections per row; {os.cpu_count()} cores, client on the same machine; "
          f"{ssl.OPENSSL_VERSION}")
    print(f"{'mode':10} {'what':17} {'median ms':>10} {'p95 ms':>8} {'seq/s':>7} {'server CPU ms':>14}")
    summary = []
    for mode in ("plain", "tls-ec", "tls-rsa"):
        results, rate, per_connection = run_mode(mode, n, ca)
        for r in results:
            print(f"{mode:10} {r['what']:17} {r['median_ms']:10.2f} {r['p95_ms']:8.2f} "
                  f"{r['per_s_sequential']:7.0f} {r['server_cpu_ms']:14.3f}")
        summary.append((mode, rate, per_connection))
    print()
    for mode, rate, per_connection in summary:
        print(f"{mode:10} {rate:6.0f} handshakes/s with 4 client threads; worker RSS "
              f"{per_connection:5.1f} KiB per open connection")


if __name__ == "__main__":
    main()
