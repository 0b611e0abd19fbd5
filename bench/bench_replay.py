"""Replay benchmark: how fast the worker replays a long session to a client
that is not the bottleneck. A raw socket reads the upgrade, then only counts
bytes until the replay_done frame (no frame parsing, no JSON), so the figure
is the worker's: events/s and MB/s from the connection's request to
replay_done, and the worker's CPU seconds for it (from /proc).

    /usr/bin/python3 bench/bench_replay.py [EVENTS] [--baseline REF] [--rounds N]

EVENTS (default 100,000) events of ~200 bytes of payload are published into
one session (written to ws_events directly); each measurement is the best of 3 replays from event 0.
With --baseline REF, REF is built and measured in the same run
(bench/baseline.py)."""
import os
import socket
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))

from baseline import side_by_side  # noqa: E402
from harness import Cluster, make_token  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def replay_once(cluster, user, session, events):
    sock = socket.create_connection(("127.0.0.1", cluster.ws_port), timeout=120)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    pid = cluster.worker_pid()
    cpu_before = cpu_seconds(pid)
    start = time.perf_counter()
    sock.sendall(f"GET /ws?token={make_token(user)}&session_id={session}&last_event_id=0 HTTP/1.1\r\n"
                 "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    received, tail = 0, b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise EOFError("closed before replay_done")
        received += len(chunk)
        window = tail + chunk
        if b'"replay_done"' in window:
            break
        tail = window[-32:]
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu_before
    sock.close()
    return elapsed, received, cpu


def main():
    args = sys.argv[1:]

    def measure(label):
        count = int(args[0]) if args else 100_000
        cluster = Cluster(**{"resumable_ws.heartbeat_interval": "'60s'"})
        try:
            cluster.start()
            # A session of our own user, filled from SQL.
            user = str(uuid.uuid4())
            session = cluster.sql("INSERT INTO resumable_ws.ws_sessions (user_id) VALUES (%s) RETURNING id::text",
                                  (user,))[0][0]
            # Written directly (publish() row by row takes minutes): dense ids, head updated.
            cluster.sql("INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
                        "SELECT %s, g, 'tick', pg_catalog.jsonb_build_object('n', g, 'text', pg_catalog.repeat('x', 180)) "
                        "FROM pg_catalog.generate_series(1, %s) g", (session, count))
            cluster.sql("UPDATE resumable_ws.ws_sessions SET last_event_id = %s WHERE id = %s", (count, session))
            runs = [replay_once(cluster, user, session, count) for _ in range(3)]
            elapsed, received, cpu = min(runs)
            print(f"{label}: replay of {count:,} events: {count / elapsed:,.0f} events/s, "
                  f"{received / elapsed / 1e6:,.0f} MB/s, worker CPU {cpu:.2f} s "
                  f"({count / max(cpu, 1e-9):,.0f} events per CPU-second)", flush=True)
        finally:
            cluster.destroy()

    side_by_side(args, measure)


if __name__ == "__main__":
    main()
