"""The log and its delivery (PROTOCOL.md §3 "Events"): replay then live with
dense ids, writers committing during replay, rollbacks, fan-out, cursors."""
import json
import random
import threading


from conftest import run


def publish_many(cluster, session, count, marker="bulk"):
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', jsonb_build_object('marker', %s, 'i', i)) "
                "FROM generate_series(1, %s) i", (session, marker, count))



@run
async def test_replay_then_live(cluster):
    owner = await cluster.new_session()
    session = owner.session_id
    publish_many(cluster, session, 1200)
    await owner.events(0, 1200)  # live delivery to the first connection

    client = await cluster.connect(user=owner.user, session_id=session, last_event_id=17)
    ready = await client.ready()
    assert ready["last_event_id"] == 1200
    replayed = await client.events(17, 1200)
    assert [e["payload"]["i"] for e in replayed] == list(range(18, 1201))
    assert await client.expect("replay_done") == {"type": "replay_done", "last_event_id": 1200}
    # Then live.
    cluster.sql("SELECT resumable_ws.publish(%s, 'live', '{\"x\": 1}')", (session,))
    live = await client.expect("event")
    assert live["id"] == 1201 and live["event_type"] == "live" and live["payload"] == {"x": 1}
    assert live["created_at"].endswith("Z") and "T" in live["created_at"]
    await client.close()
    await owner.close()


@run
async def test_no_cursor_means_only_newer_events(cluster):
    owner = await cluster.new_session()
    publish_many(cluster, owner.session_id, 5)
    client = await cluster.connect(user=owner.user, session_id=owner.session_id)
    ready = await client.ready()
    assert ready["last_event_id"] == 5
    cluster.sql("SELECT resumable_ws.publish(%s, 'after', '{}')", (owner.session_id,))
    assert (await client.expect("event"))["id"] == 6
    await client.close()


@run
async def test_resume_frame_and_invalid_cursor(cluster):
    client = await cluster.new_session()
    publish_many(cluster, client.session_id, 10)
    await client.events(0, 10)
    await client.send({"type": "resume", "last_event_id": 7})
    await client.events(7, 10)
    assert (await client.expect("replay_done"))["last_event_id"] == 10
    await client.send({"type": "resume", "last_event_id": 11})
    error = await client.expect("error")
    assert error["code"] == "invalid_cursor"
    await client.send({"type": "resume", "last_event_id": -1})
    assert (await client.expect("error"))["code"] == "bad_request"
    # Still open and live.
    cluster.sql("SELECT resumable_ws.publish(%s, 'n', '{}')", (client.session_id,))
    assert (await client.expect("event"))["id"] == 11

    beyond = await cluster.connect(user=client.user, session_id=client.session_id, last_event_id=99)
    await beyond.ready()
    assert (await beyond.expect("error"))["code"] == "invalid_cursor"
    cluster.sql("SELECT resumable_ws.publish(%s, 'n', '{}')", (client.session_id,))
    assert (await beyond.expect("event"))["id"] == 12
    await beyond.close()
    await client.close()


@run
async def test_rolled_back_events_are_never_delivered(cluster):
    client = await cluster.new_session()
    conn = cluster.connect_sql()
    with conn.cursor() as cur:
        cur.execute("SELECT resumable_ws.publish(%s, 'note', '{\"rolled\": true}')", (client.session_id,))
    conn.rollback()
    conn.close()
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{\"rolled\": false}')", (client.session_id,))
    event = await client.expect("event")
    assert event["id"] == 1 and event["payload"] == {"rolled": False}
    await client.close()


@run
async def test_uncommitted_event_is_delivered_only_at_commit(cluster):
    client = await cluster.new_session()
    conn = cluster.connect_sql()
    with conn.cursor() as cur:
        cur.execute("SELECT resumable_ws.publish(%s, 'note', '{}')", (client.session_id,))
    # Nothing arrives while the transaction is open; a ping round trip
    # proves the connection is being served meanwhile.
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    conn.commit()
    conn.close()
    assert (await client.expect("event"))["id"] == 1
    await client.close()


@run
async def test_fan_out_to_every_connection(cluster):
    first = await cluster.new_session()
    others = []
    for _ in range(3):
        other = await cluster.connect(user=first.user, session_id=first.session_id)
        await other.ready()
        others.append(other)
    publish_many(cluster, first.session_id, 50)
    await first.user_message("hello")
    for client in [first] + others:
        frames = await client.events(0, 51, allow=("ack",))
        assert frames[-1]["event_type"] == "user_message"
        await client.close()


@run
async def test_replay_while_writers_commit_out_of_order(cluster):
    """Two SQL writers in overlapping transactions (the second blocks on the
    session lock, and commits after the first) plus a steady stream of
    writers, while a client reconnects and replays over and over: it sees
    every id exactly once, in order."""
    owner = await cluster.new_session()
    session = owner.session_id
    await owner.close()
    publish_many(cluster, session, 300)

    stop = threading.Event()
    errors = []

    def writer(seed):
        rng = random.Random(seed)
        conn = cluster.connect_sql()
        try:
            while not stop.is_set():
                with conn.cursor() as cur:
                    for _ in range(rng.randint(1, 5)):
                        cur.execute("SELECT resumable_ws.publish(%s, 'w', %s)",
                                    (session, json.dumps({"writer": seed})))
                if rng.random() < 0.2:
                    conn.rollback()
                else:
                    conn.commit()
        except Exception as e:  # surfaced below
            errors.append(e)
        finally:
            conn.close()

    # The overlapping pair: t1 takes the lock, t2 waits for it.
    t1 = cluster.connect_sql()
    t2 = cluster.connect_sql()
    t1.cursor().execute("SELECT resumable_ws.publish(%s, 'pair', '{\"t\": 1}')", (session,))
    blocked = threading.Thread(target=lambda: (
        t2.cursor().execute("SELECT resumable_ws.publish(%s, 'pair', '{\"t\": 2}')", (session,)),
        t2.commit()))
    blocked.start()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(2)]
    for t in threads:
        t.start()

    cursor = 0
    try:
        for round_number in range(8):
            client = await cluster.connect(user=owner.user, session_id=session, last_event_id=cursor)
            await client.ready()
            # Read a random number of frames (or up to replay_done: while t1
            # holds the lock, the writers wait), then drop the connection.
            for _ in range(random.randint(50, 400)):
                frame = await client.recv()
                if frame["type"] == "replay_done":
                    assert frame["last_event_id"] == cursor
                    break
                assert frame["type"] == "event"
                assert frame["id"] == cursor + 1, f"round {round_number}: {frame['id']} after {cursor}"
                cursor = frame["id"]
            await client.close()
            if round_number == 2:
                t1.commit()  # the pair commits: t1, then t2
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        blocked.join(10)
        t1.close()
        t2.close()
    assert not errors, errors

    # Finally everything committed arrives, once, in order.
    head = cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s",
                       (session,))[0][0]
    assert head > 302, "the writers committed nothing concurrently"
    client = await cluster.connect(user=owner.user, session_id=session, last_event_id=cursor)
    await client.ready()
    await client.events(cursor, head)
    assert (await client.expect("replay_done"))["last_event_id"] == head
    pair = cluster.sql("SELECT payload->>'t' FROM resumable_ws.ws_events WHERE session_id = %s "
                       "AND event_type = 'pair' ORDER BY id", (session,))
    assert pair == [("1",), ("2",)]
    await client.close()
