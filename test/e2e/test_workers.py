"""Two workers on one port (resumable_ws.workers = 2, PROTOCOL.md §1):
both accept; connections of one session on different workers get every
event, live, in order; a session's answers run one at a time, in order, in
the worker holding its owner lock; a cancel from the other worker stops an
answer; llm_max_concurrency counts both workers; a terminated worker is
restarted alone while the other keeps its connections and its answer.

Which worker serves a connection is the kernel's choice (SO_REUSEPORT): the
tests connect until resumable_ws.connections() shows it where they need it.
"""
import asyncio
import json
import time
import uuid

import pytest

from answers import GENERATION_EVENTS, answer, check_dense, check_generation
from conftest import run, running_cluster, upstream_settings
from fake_openai import Stream
from harness import TIMEOUT, connect_when_back

WORKERS = 2
MAX_CONCURRENCY = 2


@pytest.fixture(scope="module")
def cluster(upstream):
    yield from running_cluster(**upstream_settings(upstream, **{
        "resumable_ws.workers": WORKERS,
        "resumable_ws.llm_max_concurrency": MAX_CONCURRENCY,
    }))


@pytest.fixture(autouse=True)
def fresh_upstream(upstream):
    upstream.reset()
    yield


async def on_both_workers(cluster):
    """Two connections of one new session, on different workers:
    (first, its worker, second, its worker)."""
    first, first_pid = await cluster.connect_placed()
    other_pid = next(pid for pid in cluster.worker_pids() if pid != first_pid)
    second = await cluster.connect_on(other_pid, user=first.user, session_id=first.session_id)
    return first, first_pid, second, other_pid


async def read_through(client, head, after=0, timeout=2 * TIMEOUT):
    """Every frame until event head has come (events after `after`, the
    client's cursor) and then the pong of a ping sent after it; returns
    (events, acks). replay_done is skipped; anything else fails: an event
    after head (a duplicate) arrives before the pong."""
    events, acks = [], []
    pinged = head <= after
    if pinged:
        await client.send({"type": "ping"})
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "event":
            events.append(frame)
        elif frame["type"] == "ack":
            acks.append(frame)
        elif frame["type"] == "pong" and pinged:
            return events, acks
        elif frame["type"] == "replay_done":
            pass
        else:
            raise AssertionError(f"unexpected frame {frame}")
        if not pinged and frame["type"] == "event" and frame["id"] >= head:
            await client.send({"type": "ping"})
            pinged = True


def stored_events(cluster, session_id):
    rows = cluster.sql(
        "SELECT id, event_type, payload::text, to_char(created_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM resumable_ws.ws_events WHERE session_id = %s ORDER BY id",
        (session_id,))
    return [{"type": "event", "id": r[0], "event_type": r[1], "payload": json.loads(r[2]), "created_at": r[3]}
            for r in rows]


def generations(cluster, session_id):
    return cluster.sql("SELECT reply_to, status FROM resumable_ws.ws_generations WHERE session_id = %s "
                       "ORDER BY reply_to", (session_id,))


def settled(cluster, session_id, messages):
    """The session's head once every one of its messages' answers ended."""
    def done():
        rows = generations(cluster, session_id)
        return len(rows) == messages and all(status not in ("queued", "running") for _, status in rows)
    cluster.wait_for(done, timeout=2 * TIMEOUT, what=f"{messages} answers to end")
    return cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s", (session_id,))[0][0]


def check_answers_in_order(events):
    """Each user message got exactly one answer, started in message order,
    never two streaming at once, each with deltas that add up to its
    content; returns the answers' end events."""
    messages = [e["id"] for e in events if e["event_type"] == "user_message"]
    started = [e["payload"]["reply_to"] for e in events if e["event_type"] == "assistant_started"]
    assert started == messages, (started, messages)
    ends, block = [], None
    for e in events:
        if e["event_type"] not in GENERATION_EVENTS:
            continue
        if e["event_type"] == "assistant_started":
            assert block is None, f"two answers streaming at once: {block[0]} and {e}"
            block = [e]
            continue
        assert block is not None and e["payload"]["message_id"] == block[0]["payload"]["message_id"], e
        block.append(e)
        if e["event_type"] in ("assistant_done", "assistant_error"):
            ends.append(check_generation(block, block[0]["payload"]["reply_to"])[1])
            block = None
    assert block is None and len(ends) == len(messages)
    return ends


def listening_sockets(port):
    """TCP sockets listening on port (IPv4 and IPv6), from /proc."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count



async def each_got_the_log_exactly(stored, head, *clients):
    """Each client received exactly the stored events up to head; then it is closed."""
    for client in clients:
        events, _ = await read_through(client, head)
        assert events == stored
        await client.close()

@run
async def test_two_workers_serve_one_port(cluster):
    pids = cluster.worker_pids()
    assert len(pids) == WORKERS
    # Each opened its own listening socket on the port (SO_REUSEPORT).
    assert listening_sockets(cluster.ws_port) == WORKERS
    by_worker, placed = {}, []
    for _ in range(64):
        client, pid = await cluster.connect_placed()
        placed.append((pid, client))
        by_worker.setdefault(pid, client)
        if len(by_worker) == WORKERS:
            break
    assert sorted(by_worker) == pids
    # Both serve: frames answered, a published event delivered.
    for pid, client in by_worker.items():
        await client.send({"type": "ping", "worker": pid})
        assert (await client.expect("pong"))["worker"] == pid
        cluster.sql("SELECT resumable_ws.publish(%s, 'hello', %s)", (client.session_id, json.dumps({"to": pid})))
        event = await client.expect("event")
        assert event["id"] == 1 and event["payload"] == {"to": pid}
    rows = cluster.sql("SELECT worker_pid, session_id::text FROM resumable_ws.connections()")
    assert sorted(rows) == sorted((pid, c.session_id) for pid, c in placed)
    for _, client in placed:
        await client.close()


@run
async def test_one_session_on_both_workers_gets_every_event_live_in_order(cluster, upstream):
    a, pid_a, b, pid_b = await on_both_workers(cluster)
    session = a.session_id
    # User messages through each connection, answers to each, and
    # publish() from SQL, interleaved, none waiting for the others.
    await a.user_message("from a, first")
    await b.user_message("from b, first")
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{\"n\": 1}')", (session,))
    await a.user_message("from a, second")
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{\"n\": 2}')", (session,))
    await b.user_message("from b, second")
    head = settled(cluster, session, 4)

    stored = stored_events(cluster, session)
    assert [e["id"] for e in stored] == list(range(1, head + 1))
    for client, pid in ((a, pid_a), (b, pid_b)):
        events, acks = await read_through(client, head)
        # Exactly the log: dense ids from 1, in order, no duplicate, the
        # same rows whichever worker appended them.
        assert events == stored, f"connection on worker {pid}"
        assert len(acks) == 2 and all(not ack["duplicate"] for ack in acks)
    contents = [e["payload"]["content"] for e in stored if e["event_type"] == "user_message"]
    assert sorted(contents) == sorted(["from a, first", "from b, first", "from a, second", "from b, second"])
    assert contents.index("from a, first") < contents.index("from a, second")
    assert contents.index("from b, first") < contents.index("from b, second")
    assert [e["payload"] for e in stored if e["event_type"] == "note"] == [{"n": 1}, {"n": 2}]
    ends = check_answers_in_order(stored)
    assert all(end["event_type"] == "assistant_done" for end in ends)
    assert cluster.connection_workers(session) == {pid_a: 1, pid_b: 1}
    await a.close()
    await b.close()


@run
async def test_messages_through_both_workers_are_answered_once_each_in_order(cluster, upstream):
    a, pid_a, b, pid_b = await on_both_workers(cluster)
    session = a.session_id
    # Answers slow enough that messages arrive while one streams.
    upstream.script(*[Stream([f"answer{n} ", "in ", "three ", "parts"], delay=0.03) for n in range(6)])
    for n in range(6):
        await (a if n % 2 == 0 else b).user_message(f"message {n}")
    head = settled(cluster, session, 6)
    stored = stored_events(cluster, session)
    # One generation per user message, every one done.
    messages = [e["id"] for e in stored if e["event_type"] == "user_message"]
    assert len(messages) == 6
    assert generations(cluster, session) == [(m, "done") for m in messages]
    ends = check_answers_in_order(stored)
    assert [end["payload"]["finish_reason"] for end in ends] == ["stop"] * 6
    # Upstream was asked in message order, one at a time.
    asked = [r.body["messages"][-1]["content"] for r in upstream.requests]
    assert asked == [e["payload"]["content"] for e in stored if e["event_type"] == "user_message"]
    assert upstream.max_active <= 1
    await each_got_the_log_exactly(stored, head, a, b)


@run
async def test_cancel_from_the_other_worker_stops_the_answer_within_a_second(cluster, upstream):
    a, pid_a, b, pid_b = await on_both_workers(cluster)
    session = a.session_id
    upstream.script(Stream([f"t{n} " for n in range(100)], stall_after=3))
    await a.user_message("stop me from the other worker")
    ack = await a.expect("ack")
    # The answer runs in a's worker: it committed the message and holds the
    # session's owner lock.
    events = []
    while "".join(e["payload"].get("delta", "") for e in events) != "t0 t1 t2 ":
        frame = await b.recv()
        assert frame["type"] == "event", frame
        events.append(frame)
    assert cluster.session_owner(session) == pid_a
    requested = time.monotonic()
    await b.send({"type": "cancel"})
    events += await answer(b, timeout=1.0)
    elapsed = time.monotonic() - requested
    check_dense(events, ack["event_id"])
    deltas, end = check_generation(events, ack["event_id"])
    assert end["event_type"] == "assistant_done" and end["payload"]["finish_reason"] == "cancelled", end
    assert deltas == "t0 t1 t2 " and elapsed < 1.0, elapsed
    assert upstream.requests[0].disconnected.wait(TIMEOUT), "upstream request not aborted"
    # The lock goes with the answer; the next message, sent through b, is
    # answered (by b's worker, or a's if it claims first).
    cluster.wait_for(lambda: cluster.session_owner(session) is None, what="the owner lock released")
    await b.user_message("and now?")
    head = settled(cluster, session, 2)
    stored = stored_events(cluster, session)
    assert generations(cluster, session) == [(ack["event_id"], "done"), (events[-1]["id"] + 1, "done")]
    check_answers_in_order(stored)
    # a read only its ack so far: it gets the whole log; b the rest of it.
    got, acks = await read_through(a, head)
    assert got == stored and acks == []
    got, acks = await read_through(b, head)
    assert got == stored[events[-1]["id"]:] and len(acks) == 1
    await a.close()
    await b.close()


@run
async def test_llm_max_concurrency_counts_both_workers(cluster, upstream):
    pids = cluster.worker_pids()
    # Six sessions, three on each worker, all asking at once.
    clients = [await cluster.connect_on(pid) for pid in pids for _ in range(3)]
    upstream.script(*[Stream([f"s{n}-{k} " for k in range(8)], delay=0.04) for n in range(6)])
    await asyncio.gather(*(c.user_message(f"session {n} asks") for n, c in enumerate(clients)))

    async def one(client):
        ack = await client.expect("ack")
        events = await answer(client, timeout=3 * TIMEOUT)
        check_dense(events, ack["event_id"])
        return check_generation(events, ack["event_id"])

    results = await asyncio.gather(*(one(c) for c in clients))
    assert len(upstream.requests) == 6
    by_question = {r.body["messages"][-1]["content"]: text for r, text in zip(upstream.requests, upstream.sent)}
    for n, (deltas, end) in enumerate(results):
        assert end["event_type"] == "assistant_done" and end["payload"]["finish_reason"] == "stop", end
        assert deltas == by_question[f"session {n} asks"]
    # Never more than the limit across both workers, and the limit used.
    assert upstream.max_active == MAX_CONCURRENCY, upstream.max_active
    for c in clients:
        await c.close()


@run
async def test_an_answer_left_running_by_no_worker_ends_interrupted_when_its_session_is_claimed(cluster, upstream):
    """As if the worker that ran it died without a word: a generation
    'running' whose session's owner lock nobody holds. The worker that
    commits the session's next message claims the session, ends that one
    interrupted, then answers the message; both connections see it."""
    a, pid_a, b, pid_b = await on_both_workers(cluster)
    session = a.session_id
    (note,), = cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{}')", (session,))
    orphan = str(uuid.uuid4())
    cluster.sql("INSERT INTO resumable_ws.ws_generations (session_id, reply_to, message_id, status) "
                "VALUES (%s, %s, %s, 'running')", (session, note, orphan))
    assert cluster.session_owner(session) is None
    await b.user_message("after the orphan")
    head = settled(cluster, session, 2)
    stored = stored_events(cluster, session)
    assert [e["event_type"] for e in stored[:3]] == ["note", "user_message", "assistant_error"], stored
    assert stored[2]["payload"]["message_id"] == orphan and stored[2]["payload"]["code"] == "interrupted"
    message = stored[1]["id"]
    assert generations(cluster, session) == [(note, "error"), (message, "done")]
    started = [e for e in stored if e["event_type"] == "assistant_started"]
    assert [e["payload"]["reply_to"] for e in started] == [message]
    deltas, end = check_generation(stored[3:], message)
    assert end["event_type"] == "assistant_done" and deltas
    await each_got_the_log_exactly(stored, head, a, b)


@run
async def test_a_terminated_worker_is_restarted_alone(cluster, upstream):
    """Both workers serve connections and stream an answer each; one is
    terminated. The other's connections stay open, its answer finishes; the
    terminated one is back with a new pid in seconds; its cut answer ends
    interrupted; its clients resume with no gap and no duplicate."""
    pids = cluster.worker_pids()
    doomed, survivor = pids
    pieces = [f"p{n} " for n in range(80)]
    upstream.script(Stream(pieces, delay=0.03), Stream(pieces, delay=0.03))
    cut = await cluster.connect_on(doomed)          # its answer runs in the doomed worker
    kept = await cluster.connect_on(survivor)       # its answer runs in the survivor
    # A watcher of the cut session on the survivor: it must see that
    # session's end too, without reconnecting.
    watcher = await cluster.connect_on(survivor, user=cut.user, session_id=cut.session_id)
    await cut.user_message("cut me")
    await kept.user_message("keep me")
    cut_ack, kept_ack = await cut.expect("ack"), await kept.expect("ack")

    async def until_deltas(client, count):
        seen = []
        while sum(e["event_type"] == "assistant_delta" for e in seen) < count:
            frame = await client.recv()
            assert frame["type"] == "event", frame
            seen.append(frame)
        return seen

    cut_seen = await until_deltas(cut, 3)
    kept_seen = await until_deltas(kept, 3)
    assert cluster.session_owner(cut.session_id) == doomed
    assert cluster.session_owner(kept.session_id) == survivor

    terminated = time.monotonic()
    cluster.terminate_workers([doomed])
    # The doomed worker's client is told to come back ...
    code, frames = await cut.close_code(timeout=TIMEOUT)
    assert code == 1012 and frames[-1]["type"] == "server_restarting", (code, frames[-3:])
    cut_seen += [f for f in frames if f["type"] == "event"]
    # ... while the survivor's connections stay and its answer finishes.
    kept_seen += await answer(kept, timeout=3 * TIMEOUT)
    check_dense(kept_seen, kept_ack["event_id"])
    deltas, end = check_generation(kept_seen, kept_ack["event_id"])
    assert end["event_type"] == "assistant_done" and end["payload"]["finish_reason"] == "stop", end
    assert deltas == "".join(pieces)

    # The doomed worker is back alone; the survivor kept its pid.
    back_pids = cluster.wait_workers_replaced([doomed], timeout=15)
    restarted_in = time.monotonic() - terminated
    assert survivor in back_pids and restarted_in < 10, (back_pids, restarted_in)

    # The cut client resumes from what it saw: the rest of the log, no gap,
    # no duplicate, and the cut answer ends interrupted (written by the
    # worker as it shut down, or by whichever claims the session next).
    head = settled(cluster, cut.session_id, 1)
    resumed = await connect_when_back(cluster, user=cut.user, session_id=cut.session_id,
                                      last_event_id=cut_seen[-1]["id"])
    rest, _ = await read_through(resumed, head, after=cut_seen[-1]["id"])
    cut_events = cut_seen + rest
    check_dense(cut_events, cut_ack["event_id"])
    deltas, end = check_generation(cut_events, cut_ack["event_id"])
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "interrupted", end
    assert "".join(pieces).startswith(deltas)
    # The watcher on the survivor saw the same, live, without a reconnect.
    watched, _ = await read_through(watcher, cut_events[-1]["id"])
    assert watched == cut_events
    assert generations(cluster, cut.session_id) == [(cut_ack["event_id"], "error")]
    assert generations(cluster, kept.session_id) == [(kept_ack["event_id"], "done")]

    # Both sessions go on: a new message each is answered (no owner lock or
    # concurrency slot left behind by the terminated worker).
    for client in (resumed, kept):
        await client.user_message("still there?")
    for client in (resumed, kept):
        while (frame := await client.recv())["type"] != "ack":
            assert frame["type"] in ("event", "replay_done"), frame
        events = await answer(client, timeout=2 * TIMEOUT)
        check_dense(events, frame["event_id"])
        assert check_generation(events, frame["event_id"])[1]["event_type"] == "assistant_done"
    for client in (resumed, kept, watcher):
        await client.close()


def test_metrics_count_both_workers(cluster):
    cluster.worker_pids()
    assert cluster.metric("rws_workers") == WORKERS
    assert cluster.sql("SELECT workers FROM resumable_ws.stats") == [(WORKERS,)]
