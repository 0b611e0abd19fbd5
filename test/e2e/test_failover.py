"""Streaming replication (PROTOCOL.md §2 /healthz, issue "beyond one machine"):
a hot standby serves nothing and writes nothing; promoted with pg_ctl promote
it serves as primary without a restart, ending the answers the old primary
left running as interrupted; and with a synchronous standby, a primary killed
with SIGKILL mid-answer loses no event a client was sent or acknowledged."""
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import websockets

from conftest import run, upstream_settings
from fake_openai import Stream
from harness import TIMEOUT, Closed, Cluster, connect_when_back, free_port


def replayed_up_to(standby, lsn):
    return standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]


def port_refuses(port):
    with socket.socket() as s:
        s.settimeout(TIMEOUT)
        return s.connect_ex(("127.0.0.1", port)) != 0


def stored_events(cluster, session_id):
    rows = cluster.sql("SELECT id, event_type, payload FROM resumable_ws.ws_events WHERE session_id = %s ORDER BY id",
                       (session_id,))
    return [{"id": r[0], "event_type": r[1], "payload": r[2]} for r in rows]


class Through(Cluster):
    """Where clients connect when they go through a proxy: only its port."""

    def __init__(self, port):  # no cluster of its own
        self.ws_port = port
        self.client_ssl = None


# deploy/haproxy/haproxy.cfg's choices, with checks ten times as frequent.
HAPROXY_CONFIG = """
global
    stats socket {directory}/admin.sock
    log stdout format iso local0 info
defaults
    mode http
    log global
    option httplog
    option log-health-checks
    # HAProxy starts with every server up until its first check says
    # otherwise, and a primary it has not yet marked down refuses: a refused
    # connection is tried on another server at once, not answered 503.
    option redispatch 1
    retries 3
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout tunnel 60s
    timeout check 2s
frontend websockets
    bind 127.0.0.1:{port}
    default_backend primary
backend primary
    # Only the node whose worker answers /healthz with 200 (role primary).
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""


def haproxy_servers(directory):
    """{server: (status, last check)} from HAProxy's stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(TIMEOUT)
        s.connect(os.path.join(directory, "admin.sock"))
        s.sendall(b"show stat\n")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    lines = text.decode().splitlines()
    columns = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(columns, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: (r["status"], r["check_status"]) for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}


@pytest.fixture
def haproxy():
    """start(clusters): HAProxy on loopback in front of them, returned once
    its first checks ran; stopped after (its log printed, for failures)."""
    running = []

    def start(clusters):
        # Not a port a node will listen on later (a standby's is free until
        # it is promoted).
        port = free_port()
        while port in [c.ws_port for c in clusters]:
            port = free_port()
        servers = "\n".join(f"    server node{i} 127.0.0.1:{c.ws_port} check" for i, c in enumerate(clusters))
        directory = tempfile.mkdtemp(prefix="rws-haproxy-")
        config = os.path.join(directory, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(HAPROXY_CONFIG.format(port=port, servers=servers, directory=directory))
        log = open(os.path.join(directory, "haproxy.log"), "w")
        running.append((subprocess.Popen(["haproxy", "-f", config, "-db", "-q"], stdout=log, stderr=log), directory))

        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                states = haproxy_servers(directory)
                if len(states) == len(clusters) and all(check not in ("", "INI") for _, check in states.values()):
                    return Through(port)
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "HAProxy's first health checks did not run"
            time.sleep(0.02)
    yield start
    for proc, directory in running:
        proc.kill()
        proc.wait()
        with open(os.path.join(directory, "haproxy.log")) as f:
            print("HAProxy's log:\n" + f.read()[-4000:])
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pair():
    """make(settings, standby_settings, synchronous): a primary and its hot
    standby; both destroyed after the test."""
    made = []

    def make(primary_settings, standby_settings=None, synchronous=False):
        primary = Cluster(**primary_settings)
        made.append(primary)
        primary.start()
        # A standby whose primary died waits wal_retrieve_retry_interval
        # (5 s by default) before it tries again to read WAL, and a promote
        # request that comes in meanwhile waits for it too.
        standby = Cluster.standby_of(primary, wal_retrieve_retry_interval="'1s'", **(standby_settings or {}))
        made.append(standby)
        standby.start(wait_healthy=False)
        if synchronous:
            # Only now: with no standby connected, every commit would wait.
            primary.reload(synchronous_standby_names="*", synchronous_commit="on")
            primary.wait_for(
                lambda: primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")[0][0],
                TIMEOUT, "the standby to be synchronous")
        return primary, standby
    yield make
    for cluster in made:
        cluster.destroy()


@run
async def test_a_standby_serves_and_writes_nothing_until_promoted(pair):
    primary, standby = pair({})
    client = await primary.new_session()
    for n in range(3):
        await client.user_message(f"before failover {n}")
        while (frame := await client.recv())["type"] == "event":
            pass
        assert frame["type"] == "ack" and frame["event_id"] == n + 1, frame
    session = client.session_id
    # An answer the old primary left running (as if it died mid-answer).
    primary.sql("INSERT INTO resumable_ws.ws_generations (session_id, reply_to, message_id, status) "
                "VALUES (%s, 3, gen_random_uuid(), 'running')", (session,))
    lsn = primary.sql("SELECT pg_current_wal_lsn()")[0][0]
    standby.wait_for(lambda: replayed_up_to(standby, lsn), TIMEOUT, "the standby to replay the primary's WAL")

    # On the standby no worker runs: no port, nothing written.
    assert standby.sql("SELECT pg_is_in_recovery()")[0][0]
    assert standby.worker_pid() is None
    assert port_refuses(standby.ws_port)
    await client.close()
    primary.kill_hard()

    standby.promote()
    health = standby.wait_healthy()
    assert health["role"] == "primary"
    back = await standby.connect(user=client.user, session_id=session, last_event_id=0)
    assert (await back.ready())["resumed"]
    # The interrupted end is written by the new primary's first pass.
    events = await back.events(0, 4, allow=("replay_done",))
    assert [e["event_type"] for e in events] == ["user_message"] * 3 + ["assistant_error"]
    assert events[3]["payload"]["code"] == "interrupted"
    assert standby.sql("SELECT status FROM resumable_ws.ws_generations WHERE session_id = %s",
                       (session,)) == [("error",)]
    await back.user_message("after failover")
    frame = await back.recv()
    while frame["type"] == "replay_done":
        frame = await back.recv()
    assert frame["type"] == "ack" and frame["event_id"] == 5
    await back.close()


async def chat(client, questions, seen, acked, stop):
    """Sends questions one after another and reads every frame; records each
    event (in arrival order) and each ack. Returns when stop is set or the
    connection drops."""
    try:
        for question in questions:
            if stop.is_set():
                return
            key = await client.user_message(question)
            while not stop.is_set():
                frame = await client.recv(timeout=30)
                if frame["type"] == "event":
                    seen.append(frame)
                    if frame["event_type"] in ("assistant_done", "assistant_error"):
                        break
                elif frame["type"] == "ack":
                    assert frame["idempotency_key"] == key
                    acked.append((key, frame["event_id"]))
    except (Closed, OSError, asyncio.TimeoutError, websockets.ConnectionClosed):
        return  # the primary died under it


@pytest.mark.parametrize("route", ["to each node", "through haproxy"])
@run
async def test_sigkill_of_a_synchronous_primary_mid_answer_loses_nothing_acknowledged(pair, upstream, haproxy, route):
    """Clients are given both nodes' addresses, or one HAProxy that sends them
    to whichever node's /healthz says primary."""
    if route == "through haproxy" and not shutil.which("haproxy"):
        pytest.skip("haproxy is not installed (scripts/install-deps.sh --test installs it)")
    primary, standby = pair(upstream_settings(upstream), synchronous=True)
    before, after = primary, standby
    if route == "through haproxy":
        before = after = haproxy([primary, standby])
    upstream.reset()
    # Slow answers, so that the kill lands mid-answer for every session.
    upstream.script(*[Stream([f"piece{i} " for i in range(60)], delay=0.05) for _ in range(30)])
    clients = [await before.new_session() for _ in range(3)]
    seen = {c.session_id: [] for c in clients}
    acked = {c.session_id: [] for c in clients}
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(chat(c, [f"q{n} of {c.session_id[:8]}" for n in range(5)],
                                        seen[c.session_id], acked[c.session_id], stop)) for c in clients]
    # Mid-answer: every session has an answer streaming.
    deadline = time.monotonic() + TIMEOUT
    while not all(sum(e["event_type"] == "assistant_delta" for e in seen[s]) >= 3 for s in seen):
        assert time.monotonic() < deadline, "answers did not stream"
        await asyncio.sleep(0.02)
    primary.kill_hard()
    killed_at = time.monotonic()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)

    standby.promote()
    resumed_after = []

    async def reconnect(c):
        last = seen[c.session_id][-1]["id"] if seen[c.session_id] else 0
        back = await connect_when_back(after, timeout=30, user=c.user, session_id=c.session_id,
                                       last_event_id=last)
        resumed_after.append(time.monotonic() - killed_at)
        return back
    backs = await asyncio.gather(*(reconnect(c) for c in clients))
    for c, back in zip(clients, backs):
        session = c.session_id
        last = seen[session][-1]["id"] if seen[session] else 0
        # Every event sent before the kill is stored, as it was sent (a
        # synchronous standby had it before the worker sent it).
        stored = stored_events(standby, session)
        assert [e["id"] for e in stored] == list(range(1, len(stored) + 1)), "ids dense"
        by_id = {e["id"]: e for e in stored}
        for event in seen[session]:
            assert by_id[event["id"]]["event_type"] == event["event_type"]
            assert by_id[event["id"]]["payload"] == event["payload"]
        for key, event_id in acked[session]:
            assert by_id[event_id]["payload"]["idempotency_key"] == key
        # The answer cut off ends interrupted; nothing is delivered twice or
        # out of order across the failover.
        deadline = time.monotonic() + TIMEOUT
        while stored[-1]["event_type"] not in ("assistant_error", "assistant_done"):
            assert time.monotonic() < deadline, "the cut answer did not end"
            await asyncio.sleep(0.02)
            stored = stored_events(standby, session)
        head = stored[-1]["id"]
        after = await back.events(last, head, allow=("replay_done",))
        ids = [e["id"] for e in seen[session]] + [e["id"] for e in after]
        assert ids == list(range(1, head + 1)), "each event once, in order, on this client"
        cut = [e for e in stored if e["event_type"] == "assistant_error"]
        assert [e["payload"]["code"] for e in cut] == ["interrupted"]
        # The next message is answered by the new primary.
        await back.user_message("after the failover")
        events = []
        while not events or events[-1]["event_type"] not in ("assistant_done", "assistant_error"):
            frame = await back.recv(timeout=30)
            if frame["type"] == "event":
                events.append(frame)
        assert events[-1]["event_type"] == "assistant_done"
        assert [e["id"] for e in events] == list(range(head + 1, head + 1 + len(events)))
        await back.close()
    print(f"failover seen by clients ({route}): ready again {min(resumed_after):.2f}-{max(resumed_after):.2f} s "
          "after the SIGKILL (pg_ctl promote included)")
