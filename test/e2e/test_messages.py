"""Client messages (PROTOCOL.md §3 "Client messages") and the limits on
them: idempotent user messages, bad frames, message size, rate."""
import asyncio
import json
import uuid

import websockets

from conftest import run



@run
async def test_ping_echoes_fields(cluster):
    client = await cluster.new_session()
    await client.send({"type": "ping", "t": 12345, "nested": {"a": [1, 2]}})
    assert await client.expect("pong") == {"type": "pong", "t": 12345, "nested": {"a": [1, 2]}}
    await client.close()


@run
async def test_user_message_ack_then_event(cluster):
    client = await cluster.new_session()
    key = await client.user_message("hello, world ✓")
    ack = await client.expect("ack")
    assert ack == {"type": "ack", "idempotency_key": key, "event_id": 1, "duplicate": False}
    event = await client.expect("event")
    assert event["id"] == 1 and event["event_type"] == "user_message"
    assert event["payload"] == {"content": "hello, world ✓", "idempotency_key": key}
    await client.close()


@run
async def test_idempotency_across_reconnects(cluster):
    client = await cluster.new_session()
    key = str(uuid.uuid4())
    await client.user_message("once", key)
    assert (await client.expect("ack"))["event_id"] == 1
    await client.close()
    # The same key from a new connection (and in upper case): no new event.
    for attempt in (key, key.upper()):
        again = await cluster.connect(user=client.user, session_id=client.session_id)
        await again.ready()
        await again.user_message("once", attempt)
        assert await again.expect("ack") == {"type": "ack", "idempotency_key": key, "event_id": 1,
                                             "duplicate": True}
        await again.user_message("different", key)
        assert (await again.expect("error"))["code"] == "idempotency_conflict"
        await again.close()
    rows = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events WHERE session_id = %s",
                       (client.session_id,))
    assert rows == [(1,)]


@run
async def test_same_key_in_one_burst_makes_one_event(cluster):
    client = await cluster.new_session()
    key = str(uuid.uuid4())
    for _ in range(5):
        await client.user_message("burst", key)
    frames = [await client.recv() for _ in range(6)]
    acks = [f for f in frames if f["type"] == "ack"]
    assert [f["id"] for f in frames if f["type"] == "event"] == [1]
    assert {a["event_id"] for a in acks} == {1}
    assert [a["duplicate"] for a in acks] == [False, True, True, True, True]
    await client.close()


@run
async def test_messages_sent_before_ready_are_kept_in_order(cluster):
    import websockets as ws_lib
    from harness import make_token
    user = str(uuid.uuid4())
    ws = await ws_lib.connect(cluster.ws_url(make_token(user)), open_timeout=10)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    for n, key in enumerate(keys):
        await ws.send(json.dumps({"type": "user_message", "content": f"m{n}", "idempotency_key": key}))
    frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(7)]
    assert frames[0]["type"] == "ready"
    acks = [f for f in frames if f["type"] == "ack"]
    assert [(a["idempotency_key"], a["event_id"]) for a in acks] == list(zip(keys, [1, 2, 3]))
    await ws.close()


BAD_FRAMES = [
    "not json",
    "[1, 2, 3]",
    "42",
    json.dumps({"no": "type"}),
    json.dumps({"type": 7}),
    json.dumps({"type": "fly"}),
    json.dumps({"type": "user_message", "idempotency_key": str(uuid.uuid4())}),
    json.dumps({"type": "user_message", "content": "", "idempotency_key": str(uuid.uuid4())}),
    json.dumps({"type": "user_message", "content": 5, "idempotency_key": str(uuid.uuid4())}),
    json.dumps({"type": "user_message", "content": "x", "idempotency_key": "not-a-uuid"}),
    json.dumps({"type": "user_message", "content": "x"}),
    json.dumps({"type": "user_message", "content": "nul\u0000inside", "idempotency_key": str(uuid.uuid4())}),
    json.dumps({"type": "resume"}),
    json.dumps({"type": "resume", "last_event_id": "3"}),
    json.dumps({"type": "resume", "last_event_id": 1.5}),
    json.dumps({"type": "auth"}),
    b"\x00\x01binary",
]


@run
async def test_bad_frames_get_bad_request_and_connection_stays(cluster):
    client = await cluster.new_session()
    for frame in BAD_FRAMES:
        await client.send(frame)
        error = await client.expect("error")
        assert error["code"] == "bad_request", frame
        # Still open: a good frame works between bad ones.
        await client.send({"type": "ping"})
        await client.expect("pong")
    # Unknown fields are ignored.
    await client.send({"type": "ping", "extra": True, "type2": "x"})
    await client.expect("pong")
    assert cluster.sql("SELECT count(*) FROM resumable_ws.ws_events WHERE session_id = %s",
                       (client.session_id,)) == [(0,)]
    await client.close()


@run
async def test_repeated_bad_frames_close_1008(cluster):
    client = await cluster.new_session()
    for _ in range(10):
        await client.send("nope")
    code, frames = await client.close_code()
    assert code == 1008
    assert all(f["code"] == "bad_request" for f in frames)


@run
async def test_message_size_limit_1009(cluster):
    client = await cluster.new_session()
    # Just under the limit is fine.
    content = "x" * (64 * 1024 - 200)
    await client.user_message(content)
    assert (await client.expect("ack"))["event_id"] == 1
    # Over it: 1009, and nothing stored.
    await client.user_message("y" * (64 * 1024 + 1))
    code, _ = await client.close_code()
    assert code == 1009
    assert cluster.sql("SELECT count(*) FROM resumable_ws.ws_events WHERE session_id = %s",
                       (client.session_id,)) == [(2 - 1,)]


@run
async def test_message_size_limit_counts_fragments(cluster):
    client = await cluster.new_session()
    # 100 fragments of 1 kB each: each is small, the message is not.
    fragments = ['{"type":"ping","pad":"'] + ["z" * 1024] * 100 + ['"}']
    await client.ws.send(iter(fragments))
    code, _ = await client.close_code()
    assert code == 1009


@run
async def test_rate_limit_1008(cluster):
    client = await cluster.new_session()
    code = None
    for _ in range(500):
        try:
            await client.send({"type": "ping"})
        except websockets.ConnectionClosed as e:
            code = e.code
            break
    if code is None:
        code, _ = await client.close_code()
    assert code == 1008


@run
async def test_user_message_waits_for_a_locked_session_without_blocking_others(cluster):
    """A transaction that holds a session's row lock delays that session's
    user messages, never the worker: other sessions are served meanwhile."""
    locked = await cluster.new_session()
    other = await cluster.new_session()
    holder = cluster.connect_sql()
    holder.cursor().execute("SELECT resumable_ws.publish(%s, 'held', '{}')", (locked.session_id,))
    key = await locked.user_message("waits")
    await other.user_message("goes through")
    assert (await other.expect("ack"))["event_id"] == 1
    await locked.send({"type": "ping"})
    assert (await locked.expect("pong"))  # no ack yet: it waits for the lock
    holder.commit()
    holder.close()
    frames = [await locked.recv() for _ in range(3)]
    acks = [f for f in frames if f["type"] == "ack"]
    assert acks == [{"type": "ack", "idempotency_key": key, "event_id": 2, "duplicate": False}]
    assert [f["id"] for f in frames if f["type"] == "event"] == [1, 2]
    await locked.close()
    await other.close()


@run
async def test_cancel_is_accepted(cluster):
    client = await cluster.new_session()
    await client.send({"type": "cancel"})
    await client.send({"type": "ping"})
    # No error for cancel: the next frame is the pong.
    await client.expect("pong")
    await client.close()
