"""No event can wedge a session: every event that enters a log fits in a
connection's send buffer (resumable_ws.max_event_size), and one that is larger
all the same (stored before the limit existed, or under a raised limit) is
still delivered, alone, once the connection's queue is empty."""
import uuid

import psycopg2
import pytest

from answers import check_generation, send_and_answer
from conftest import run, running_cluster, upstream_settings
from fake_openai import Stream


EVENT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def cluster(upstream):
    yield from running_cluster(**upstream_settings(upstream, **{
        "resumable_ws.max_event_size": "'64kB'",
        "resumable_ws.max_message_size": "'2MB'",  # above the event limit: that one wins
    }))


@pytest.fixture(autouse=True)
def fresh_upstream(upstream):
    upstream.reset()
    yield


def event_sizes(cluster, session, event_type):
    """Each stored event's size as max_event_size measures it."""
    return [row[0] for row in cluster.sql(
        "SELECT octet_length(payload::text) + octet_length(event_type) FROM resumable_ws.ws_events "
        "WHERE session_id = %s AND event_type = %s ORDER BY id", (session, event_type))]


def test_publish_refuses_an_event_over_the_limit(cluster):
    session = cluster.sql("SELECT resumable_ws.create_session(gen_random_uuid())")[0][0]
    with pytest.raises(psycopg2.errors.ProgramLimitExceeded) as error:
        cluster.sql("SELECT resumable_ws.publish(%s, 'big', jsonb_build_object('data', repeat('x', 5000000)))",
                    (session,))
    assert "larger than the limit of 65536 bytes" in str(error.value)
    assert "max_event_size" in str(error.value)
    # A direct INSERT meets the same check.
    with pytest.raises(psycopg2.errors.ProgramLimitExceeded):
        cluster.sql("INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
                    "VALUES (%s, 1, 'big', jsonb_build_object('data', repeat('x', 70000)))", (session,))
    assert cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s", (session,))[0][0] == 0


@run
async def test_a_message_larger_than_an_event_may_be_is_refused_1009(cluster):
    client = await cluster.new_session()
    await client.user_message("y" * (EVENT_LIMIT + 1))
    code, frames = await client.close_code()
    assert code == 1009, (code, frames)
    assert all(f["type"] != "ack" for f in frames)
    stored = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events WHERE session_id = %s",
                         (client.session_id,))[0][0]
    assert stored == 0


@run
async def test_an_answer_is_cut_off_where_its_final_event_would_grow_too_large(cluster, upstream):
    # Characters that JSON escapes (to 2 and 6 bytes) and multi-byte ones, so
    # the cut must count escaped bytes and land on a character boundary.
    piece = 'abc "quoted" \\ tab\t line\n ctrl\x01 é € 😀 ' * 20
    upstream.script(Stream([piece] * 120))  # ~110 kB of text, ~130 kB escaped
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "write a lot")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_done"
    assert end["payload"]["finish_reason"] == "length"
    full = piece * 120
    assert full.startswith(deltas) and len(deltas) < len(full)
    [done_size] = event_sizes(cluster, client.session_id, "assistant_done")
    assert EVENT_LIMIT - 300 < done_size <= EVENT_LIMIT, done_size
    assert all(size <= EVENT_LIMIT for size in event_sizes(cluster, client.session_id, "assistant_delta"))
    # The session goes on: the next answer is whole.
    upstream.script(Stream(["short ", "answer"]))
    reply_to, events = await send_and_answer(client, "and now briefly")
    deltas, end = check_generation(events, reply_to)
    assert (deltas, end["payload"]["finish_reason"]) == ("short answer", "stop")
    await client.close()


@run
async def test_an_event_larger_than_the_send_buffer_is_delivered_alone(cluster):
    """A 5 MB event already in the log (stored with triggers off, as an older
    version could), between 3 MB of small events, with the default 4 MB send
    buffer: a client replaying the session gets all of it, in order, and its
    connection stays open."""
    user = str(uuid.uuid4())
    session = cluster.sql("SELECT resumable_ws.create_session(%s)", (user,))[0][0]
    cluster.sql("SELECT resumable_ws.publish(%s, 'small', jsonb_build_object('pad', repeat('s', 1000))) "
                "FROM generate_series(1, 3000)", (session,))
    conn = cluster.connect_sql()
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no triggers: no size check
        cur.execute("UPDATE resumable_ws.ws_sessions SET last_event_id = 3001 WHERE id = %s", (session,))
        cur.execute("INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload) "
                    "VALUES (%s, 3001, 'huge', jsonb_build_object('data', repeat('h', 5000000)))", (session,))
    conn.commit()
    conn.close()
    cluster.sql("SELECT resumable_ws.publish(%s, 'small', '{}') FROM generate_series(1, 10)", (session,))

    client = await cluster.connect(user=user, session_id=session, last_event_id=0)
    await client.ready()
    events = await client.events(0, 3011, timeout=60)
    assert events[3000]["event_type"] == "huge" and len(events[3000]["payload"]["data"]) == 5000000
    assert (await client.expect("replay_done"))["last_event_id"] == 3011
    await client.send({"type": "ping"})
    await client.expect("pong")
    # Live too: the next event arrives on the same connection.
    cluster.sql("SELECT resumable_ws.publish(%s, 'small', '{}')", (session,))
    await client.events(3011, 3012)
    await client.close()
    # Two readers at once, one of them replaying from the middle.
    a = await cluster.connect(user=user, session_id=session, last_event_id=2500)
    b = await cluster.connect(user=user, session_id=session, last_event_id=0)
    for c, after in ((a, 2500), (b, 0)):
        await c.ready()
        await c.events(after, 3012, timeout=60)
        await c.close()
