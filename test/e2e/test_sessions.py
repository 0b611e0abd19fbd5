"""Sessions (PROTOCOL.md §3 "Sessions"): create, resume, 4003, 4004,
close_session, and the ws_live_connections rows behind them."""
import uuid

from conftest import run


@run
async def test_new_session_ready_frame(cluster):
    client = await cluster.connect()
    ready = await client.ready()
    assert set(ready) == {"type", "session_id", "last_event_id", "resumed", "heartbeat_interval_ms"}
    assert ready["last_event_id"] == 0 and ready["resumed"] is False
    assert ready["heartbeat_interval_ms"] == 10000
    rows = cluster.sql("SELECT user_id::text, status FROM resumable_ws.ws_sessions WHERE session_id = %s",
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
