"""Limits every client meets: heartbeats, the send buffer, connection count,
and settings reloaded without dropping anyone."""
import asyncio
import json
import time
import uuid

import pytest
import websockets

from conftest import run, running_cluster
from harness import RawClient, make_token


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(**{"resumable_ws.heartbeat_interval": "'1s'",
                                  "resumable_ws.max_send_buffer": "'64kB'"})


def test_silent_peer_is_closed_after_three_intervals(cluster):
    raw = RawClient(cluster, make_token(str(uuid.uuid4())))
    # It reads (so pings reach it) but never answers them.
    elapsed = raw.wait_eof(timeout=10)
    raw.close()
    assert 2.5 <= elapsed <= 6, elapsed


@run
async def test_peer_answering_pings_stays(cluster):
    client = await cluster.connect()
    ready = await client.ready()
    assert ready["heartbeat_interval_ms"] == 1000
    # websockets answers the server's pings by itself; stay well past 3s.
    await asyncio.sleep(4.5)
    await client.send({"type": "ping"})
    await client.expect("pong")
    await client.close()


@run
async def test_burst_larger_than_the_send_buffer_is_paced_not_closed(cluster):
    """2 MB published in one transaction to a healthy reader with a 64 kB
    send buffer: everything arrives, in order, and the connection stays."""
    client = await cluster.new_session()
    other = await cluster.connect(user=client.user, session_id=client.session_id)
    await other.ready()
    cluster.sql("SELECT resumable_ws.publish(%s, 'big', jsonb_build_object('pad', repeat('x', 10000))) "
                "FROM generate_series(1, 200)", (client.session_id,))
    for c in (client, other):
        await c.events(0, 200, timeout=30)
        await c.send({"type": "ping"})
        await c.expect("pong")
        await c.close()


def test_client_that_never_reads_its_answers_is_closed_4010(cluster):
    user = str(uuid.uuid4())
    raw = RawClient(cluster, make_token(user), receive_buffer=4096)
    session = json.loads(next(raw.frames())[1])["session_id"]
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{}') FROM generate_series(1, 3)", (session,))
    # 95 pongs of 60 kB (5.7 MB: more than the kernel's socket buffers hold)
    # are owed to a client that reads none of them.
    big_ping = json.dumps({"type": "ping", "pad": "p" * 60000}).encode()
    for _ in range(95):
        raw.send_frame(1, big_ping)
    assert raw.close_code(timeout=15) == 4010
    raw.close()

    async def resume():
        client = await cluster.connect(user=user, session_id=session, last_event_id=0)
        await client.ready()
        await client.events(0, 3)
        assert (await client.expect("replay_done"))["last_event_id"] == 3
        await client.close()
    asyncio.run(resume())


@run
async def test_connection_limit_and_reload_keeps_connections(cluster):
    clients = []
    for _ in range(3):
        c = await cluster.connect()
        await c.ready()
        clients.append(c)
    cluster.reload(**{"resumable_ws.max_connections": 3, "resumable_ws.heartbeat_interval": "2s"})
    # The reload takes effect without dropping anyone; a fourth is refused.
    async def refused():
        try:
            extra = await cluster.connect()
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 503
            return True
        await extra.ready()
        await extra.close()
        return False
    deadline = time.monotonic() + 10
    while not await refused():
        assert time.monotonic() < deadline, "fourth connection still accepted"
        await asyncio.sleep(0.1)
    for c in clients:
        await c.send({"type": "ping"})
        await c.expect("pong")
    await clients[0].close()
    # max_connections counts every worker's connections (the gauge's sum).
    cluster.wait_for(lambda: cluster.metric("rws_connections") == 2, what="a free slot")
    fourth = await cluster.connect()
    assert (await fourth.ready())["heartbeat_interval_ms"] == 2000
    for c in clients[1:] + [fourth]:
        await c.close()
    cluster.sql("ALTER SYSTEM RESET ALL")
    cluster.sql("SELECT pg_reload_conf()")


@run
async def test_last_seen_at_follows_a_live_client(cluster):
    """ws_live_connections.last_seen_at (the seed's column) moves while the
    client answers pings: written every three heartbeat intervals."""
    client = await cluster.new_session()

    def seen():
        rows = cluster.sql("SELECT connected_at, last_seen_at FROM resumable_ws.ws_live_connections "
                           "WHERE session_id = %s", (client.session_id,))
        return rows[0] if rows else None
    connected_at, _ = cluster.wait_for(seen, what="the live connection row")
    cluster.wait_for(lambda: seen()[1] > connected_at, timeout=10, what="last_seen_at to move")
    await client.close()
