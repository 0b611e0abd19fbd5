"""Sessions (PROTOCOL.md §3 "Sessions"): create, resume, 4003, 4004,
close_session, and the ws_live_connections rows behind them."""
import json
import uuid

from conftest import run
from harness import RawClient, make_token


@run
async def test_new_session_ready_frame(cluster):
    client = await cluster.connect()
    ready = await client.ready()
    assert set(ready) == {"type", "session_id", "last_event_id", "resumed", "heartbeat_interval_ms"}
    assert ready["last_event_id"] == 0 and ready["resumed"] is False
    assert ready["heartbeat_interval_ms"] == 10000
    rows = cluster.sql("SELECT user_id::text, status FROM resumable_ws.ws_sessions WHERE id = %s",
                       (ready["session_id"],))
    assert rows == [(client.user, "active")]
    await client.close()


@run
async def test_resume_own_session(cluster):
    first = await cluster.connect()
    session = (await first.ready())["session_id"]
    for n in range(3):
        cluster.sql("SELECT resumable_ws.publish(%s, 'note', %s)", (session, f'{{"n":{n}}}'))
    await first.close()
    again = await cluster.connect(user=first.user, session_id=session)
    ready = await again.ready()
    assert ready["session_id"] == session
    assert ready["resumed"] is True and ready["last_event_id"] == 3
    await again.close()


@run
async def test_session_of_another_user_is_4003(cluster):
    owner = await cluster.connect()
    session = (await owner.ready())["session_id"]
    intruder = await cluster.connect(session_id=session)
    code, frames = await intruder.close_code()
    assert code == 4003 and frames[-1]["code"] == "forbidden"
    # The owner is undisturbed.
    await owner.send({"type": "ping"})
    await owner.expect("pong")
    await owner.close()


@run
async def test_unknown_or_malformed_session_is_4004(cluster):
    for session in (str(uuid.uuid4()), "not-a-uuid", "'%20OR%201=1"):
        client = await cluster.connect(session_id=session)
        code, frames = await client.close_code()
        assert code == 4004, session
        assert frames[-1]["code"] == "session_not_found"


@run
async def test_close_session_reaches_every_connection(cluster):
    a = await cluster.connect()
    session = (await a.ready())["session_id"]
    b = await cluster.connect(user=a.user, session_id=session)
    await b.ready()
    cluster.sql("SELECT resumable_ws.publish(%s, 'last', '{}')", (session,))
    assert cluster.sql("SELECT resumable_ws.close_session(%s)", (session,)) == [(True,)]
    for client in (a, b):
        code, frames = await client.close_code()
        assert code == 4004
        # Events committed before the close arrive before session_closed.
        assert [f["type"] for f in frames] == ["event", "session_closed"]
    # A closed session cannot be resumed.
    c = await cluster.connect(user=a.user, session_id=session)
    code, frames = await c.close_code()
    assert code == 4004 and frames[-1]["code"] == "session_not_found"


@run
async def test_live_connection_rows_follow_connections(cluster):
    def live(session):
        return cluster.sql("SELECT count(*) FROM resumable_ws.ws_live_connections WHERE session_id = %s",
                           (session,))[0][0]

    a = await cluster.connect()
    session = (await a.ready())["session_id"]
    b = await cluster.connect(user=a.user, session_id=session)
    await b.ready()
    assert live(session) == 2
    await a.close()
    cluster.wait_for(lambda: live(session) == 1, what="one live row after a close")
    await b.close()
    cluster.wait_for(lambda: live(session) == 0, what="no live rows after both closed")


@run
async def test_healthz(cluster):
    status, body = cluster.http("/healthz")
    assert status == 200
    assert '"database":true' in body
    assert cluster.http("/nope")[0] == 404
    assert cluster.http("/auth/anonymous", method="POST")[0] == 404


def _frames_until_eof(raw):
    seen = []
    try:
        for opcode, payload in raw.frames():
            seen.append((opcode, payload))
    except EOFError:
        pass
    return seen


def test_close_handshakes_have_exactly_one_close_frame_each_way(cluster):
    """RFC 6455 §5.5.1: the side that receives a close answers it once. A
    second close frame after the peer's answer makes browsers report 1006
    instead of the server's code."""
    user = str(uuid.uuid4())
    raw = RawClient(cluster, make_token(user))
    opcode, payload = next(raw.frames())
    session = json.loads(payload)["session_id"]
    cluster.sql("SELECT resumable_ws.close_session(%s)", (session,))
    frames = raw.frames()
    while True:
        opcode, payload = next(frames)
        if opcode == 8:
            break
    assert int.from_bytes(payload[:2], "big") == 4004
    raw.send_frame(8, payload[:2])  # the answer to the server's close
    assert _frames_until_eof(raw) == []

    # Closed by the client: the server answers with one close frame.
    raw = RawClient(cluster, make_token(user))
    next(raw.frames())
    raw.send_frame(8, (1000).to_bytes(2, "big"))
    assert [opcode for opcode, _ in _frames_until_eof(raw)] == [8]
