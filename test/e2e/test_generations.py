"""AI generations against a fake OpenAI-compatible server on loopback:
events and their order, exact text however the stream is chunked, the
request sent upstream, resume mid-answer, idempotency, cancel, failures,
retries, stalls, restarts, and many sessions at once."""
import asyncio
import json
import time
import uuid

import pytest

from conftest import run, running_cluster, upstream_settings
from fake_openai import Raw, Status, Stream
from answers import GENERATION_EVENTS, answer, check_dense, check_generation, send_and_answer
from harness import TIMEOUT, connect_when_back

API_KEY = "sk-test-0123456789abcdef-never-shown"


@pytest.fixture(scope="module")
def cluster(upstream):
    yield from running_cluster(**upstream_settings(upstream, **{
        "resumable_ws.llm_api_key": f"'{API_KEY}'",
        "resumable_ws.llm_system_prompt": "'Be brief.'",
        "resumable_ws.llm_context_messages": 4,
        "resumable_ws.llm_idle_timeout": "'1s'",
        "resumable_ws.llm_connect_timeout": "'1s'",
        "resumable_ws.llm_max_retries": 2,
        "resumable_ws.llm_max_concurrency": 20,
    }))


@pytest.fixture(autouse=True)
def fresh_upstream(upstream):
    upstream.reset()
    yield


async def start_stalled_answer(cluster, upstream, pieces, stall_after, content):
    """A new session whose message's answer stalls upstream after
    stall_after pieces; returns the client and the message's ack."""
    upstream.script(Stream(pieces, stall_after=stall_after))
    client = await cluster.new_session()
    await client.user_message(content)
    ack = await client.expect("ack")
    upstream.wait_requests(1)
    return client, ack


def stored_generations(cluster, session_id):
    return cluster.sql("SELECT reply_to, status FROM resumable_ws.ws_generations "
                       "WHERE session_id = %s ORDER BY reply_to", (session_id,))


@run
async def test_answer_streams_in_order_and_equals_what_upstream_sent(cluster, upstream):
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "hello there")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_done"
    assert end["payload"]["finish_reason"] == "stop"
    assert deltas == upstream.sent[0] and deltas
    assert stored_generations(cluster, client.session_id) == [(reply_to, "done")]
    # Stored events are what was streamed.
    stored = cluster.sql("SELECT string_agg(payload->>'delta', '' ORDER BY id) FROM resumable_ws.ws_events "
                         "WHERE session_id = %s AND event_type = 'assistant_delta'", (client.session_id,))
    assert stored[0][0] == deltas
    await client.close()


@run
async def test_request_carries_model_key_stream_and_bounded_context(cluster, upstream):
    client = await cluster.new_session()
    answers = []
    for n in range(4):
        reply_to, events = await send_and_answer(client, f"question {n}")
        answers.append(check_generation(events, reply_to)[0])
    requests = upstream.wait_requests(4)
    first, last = requests[0], requests[3]
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.headers["content-type"] == "application/json"
    assert first.body["model"] == "fake-model" and first.body["stream"] is True
    assert first.body["messages"] == [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "question 0"}]
    # llm_context_messages = 4: the four newest earlier messages, then the new one.
    assert last.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question 1"}, {"role": "assistant", "content": answers[1]},
        {"role": "user", "content": "question 2"}, {"role": "assistant", "content": answers[2]},
        {"role": "user", "content": "question 3"},
    ]
    await client.close()


@pytest.mark.parametrize("shape", [
    dict(chunking="split"),                        # every event split across 3-byte reads
    dict(chunking="batch"),                        # every event in one read
    dict(chunking="split", crlf=True, keepalives=True),
    dict(chunking="event", garbage_lines=True),    # malformed lines are skipped
    dict(chunking="batch", done=False),            # the stream just ends after finish_reason
    dict(chunking="event", finish_reason=None, done=False),  # ends with neither
])
@run
async def test_any_chunking_gives_the_exact_text(cluster, upstream, shape):
    pieces = ["Hé", "llo", " wörld", " — ", "🙂", " \"quoted\"", "\\n", " line\nbreak", ""]
    upstream.script(Stream(pieces, **{"finish_reason": "stop", **shape}))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "chunking")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_done", end
    assert deltas == "".join(pieces)
    await client.close()


@run
async def test_length_finish_reason_is_passed_on(cluster, upstream):
    upstream.script(Stream(["cut ", "short"], finish_reason="length"))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "long please")
    deltas, end = check_generation(events, reply_to)
    assert end["payload"]["finish_reason"] == "length" and deltas == "cut short"
    await client.close()


@run
async def test_disconnect_mid_answer_then_resume_loses_nothing(cluster, upstream):
    pieces = [f"w{n} " for n in range(60)]
    upstream.script(Stream(pieces, delay=0.02))
    client = await cluster.new_session()
    key = await client.user_message("long answer")
    ack = await client.expect("ack")
    seen = []
    while len([e for e in seen if e["event_type"] == "assistant_delta"]) < 3:
        frame = await client.recv()
        if frame["type"] == "event":
            seen.append(frame)
    await client.close()

    back = await cluster.connect(user=client.user, session_id=client.session_id,
                                 last_event_id=seen[-1]["id"])
    await back.ready()
    rest = await answer(back)
    events = seen + rest
    check_dense(events, ack["event_id"])
    deltas, end = check_generation(events, ack["event_id"])
    assert end["event_type"] == "assistant_done" and deltas == "".join(pieces)
    assert key
    await back.close()


@run
async def test_one_generation_per_message_however_often_it_is_resent(cluster, upstream):
    client = await cluster.new_session()
    key = str(uuid.uuid4())
    await client.user_message("only once", key)
    ack = await client.expect("ack")
    await client.close()
    for _ in range(2):
        again = await cluster.connect(user=client.user, session_id=client.session_id)
        await again.ready()
        await again.user_message("only once", key)
        dup = None
        while dup is None:
            frame = await again.recv()
            if frame["type"] == "ack":
                dup = frame
        assert dup["duplicate"] is True and dup["event_id"] == ack["event_id"]
        await again.close()
    watcher = await cluster.connect(user=client.user, session_id=client.session_id, last_event_id=0)
    await watcher.ready()
    events = await answer(watcher)
    check_generation(events, ack["event_id"])
    assert stored_generations(cluster, client.session_id) == [(ack["event_id"], "done")]
    assert sum(1 for r in upstream.requests if r.body["messages"][-1]["content"] == "only once") == 1
    started = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events WHERE session_id = %s "
                          "AND event_type = 'assistant_started'", (client.session_id,))
    assert started == [(1,)]
    await watcher.close()


@run
async def test_a_sessions_generations_run_one_at_a_time_in_order(cluster, upstream):
    upstream.script(*[Stream([f"a{n} ", "b ", "c"], delay=0.02) for n in range(3)])
    client = await cluster.new_session()
    acks = []
    for n in range(3):
        await client.user_message(f"m{n}")
    events = []
    ends = 0
    while ends < 3:
        frame = await client.recv()
        if frame["type"] == "ack":
            acks.append(frame["event_id"])
        elif frame["type"] == "event":
            events.append(frame)
            ends += frame["event_type"] in ("assistant_done", "assistant_error")
    check_dense(events, 1)
    generation_events = [e for e in events if e["event_type"] in GENERATION_EVENTS]
    # Each generation is contiguous: started, deltas, done, then the next.
    for n in range(3):
        start = next(i for i, e in enumerate(generation_events)
                     if e["event_type"] == "assistant_started" and e["payload"]["reply_to"] == acks[n])
        block = []
        for e in generation_events[start:]:
            block.append(e)
            if e["event_type"] in ("assistant_done", "assistant_error"):
                break
        deltas, end = check_generation(block, acks[n])
        assert deltas == f"a{n} b c"
    assert [r.body["messages"][-1]["content"] for r in upstream.requests] == ["m0", "m1", "m2"]
    await client.close()


@run
async def test_cancel_stops_the_answer_within_a_second(cluster, upstream):
    upstream.script(Stream([f"t{n} " for n in range(100)], stall_after=3))
    client = await cluster.new_session()
    other = await cluster.connect(user=client.user, session_id=client.session_id)
    await other.ready()
    await client.user_message("stop me")
    ack = await client.expect("ack")
    events = []
    while len([e for e in events if e["event_type"] == "assistant_delta"]) == 0 or \
            "".join(e["payload"].get("delta", "") for e in events) != "t0 t1 t2 ":
        frame = await client.recv()
        if frame["type"] == "event":
            events.append(frame)
    requested = time.monotonic()
    await other.send({"type": "cancel"})  # from another connection of the session
    events += await answer(client, timeout=1.0)
    elapsed = time.monotonic() - requested
    deltas, end = check_generation(events, ack["event_id"])
    assert end["event_type"] == "assistant_done" and end["payload"]["finish_reason"] == "cancelled"
    assert deltas == "t0 t1 t2 " and elapsed < 1.0
    assert upstream.requests[0].disconnected.wait(TIMEOUT), "upstream request not aborted"
    # The session goes on.
    reply_to, events = await send_and_answer(client, "after cancel")
    assert check_generation(events, reply_to)[1]["event_type"] == "assistant_done"
    await client.close()
    await other.close()


@run
async def test_429_then_success_is_retried(cluster, upstream):
    upstream.script(Status(429, retry_after=0), Status(503), Stream(["fine ", "now"]))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "retry me")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_done" and deltas == "fine now"
    assert len(upstream.requests) == 3
    await client.close()


@run
async def test_500_becomes_an_error_without_the_key_and_the_next_message_works(cluster, upstream):
    upstream.script(Status(500), Status(500), Status(500))  # llm_max_retries = 2: three tries
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "fail me")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "upstream_error"
    assert deltas == ""
    text = json.dumps(end)
    assert API_KEY not in text and "sk-" not in text and "127.0.0.1" not in text
    assert len(upstream.requests) == 3
    assert stored_generations(cluster, client.session_id) == [(reply_to, "error")]

    reply_to, events = await send_and_answer(client, "and now?")
    assert check_generation(events, reply_to)[1]["event_type"] == "assistant_done"
    assert API_KEY not in cluster.log()
    await client.close()


@run
async def test_client_errors_are_not_retried(cluster, upstream):
    upstream.script(Status(401))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "bad key")
    _, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "upstream_error"
    assert len(upstream.requests) == 1
    await client.close()


@run
async def test_a_break_after_the_first_token_is_an_error_and_not_retried(cluster, upstream):
    upstream.script(Stream(["partial ", "answer ", "then", " nothing"], drop_after=2))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "break")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "unavailable"
    assert deltas == "partial answer "
    assert len(upstream.requests) == 1
    await client.close()


@run
async def test_an_error_event_in_the_stream_ends_the_answer(cluster, upstream):
    upstream.script(Raw(b'data: {"choices":[{"delta":{"content":"so far"}}]}\n\n'
                        b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "error event")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "upstream_error"
    assert deltas == "so far"
    await client.close()


@pytest.mark.parametrize("body", [
    b"\x00\xffnot an event stream at all\n\ndata: <html>\n\n",
    b'{"choices":[{"message":{"role":"assistant","content":"not streamed"}}]}',  # ignored stream: true
])
@run
async def test_garbage_is_a_bad_response(cluster, upstream, body):
    upstream.script(Raw(body))
    client = await cluster.new_session()
    reply_to, events = await send_and_answer(client, "garbage")
    _, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "bad_response"
    await client.close()


@run
async def test_a_stalled_upstream_times_out(cluster, upstream):
    upstream.script(Stream(["slow ", "and ", "then"], stall_after=2))
    client = await cluster.new_session()
    started = time.monotonic()
    reply_to, events = await send_and_answer(client, "stall")
    deltas, end = check_generation(events, reply_to)
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "timeout"
    assert deltas == "slow and "
    assert time.monotonic() - started < 5  # llm_idle_timeout = 1s
    assert upstream.requests[0].disconnected.wait(TIMEOUT)
    await client.close()


@run
async def test_closing_the_session_cancels_its_generation(cluster, upstream):
    client, ack = await start_stalled_answer(cluster, upstream, ["a ", "b ", "c"], 1, "close me")
    cluster.sql("SELECT resumable_ws.close_session(%s)", (client.session_id,))
    code, _ = await client.close_code()
    assert code == 4004
    cluster.wait_for(lambda: stored_generations(cluster, client.session_id) == [(ack["event_id"], "done")],
                     what="the generation to end")
    end = cluster.sql("SELECT payload FROM resumable_ws.ws_events WHERE session_id = %s "
                      "ORDER BY id DESC LIMIT 1", (client.session_id,))[0][0]
    assert end["finish_reason"] == "cancelled"
    assert upstream.requests[0].disconnected.wait(TIMEOUT)


@run
async def test_fifty_sessions_stream_at_once_each_exact(cluster, upstream):
    clients = [await cluster.new_session() for _ in range(50)]

    async def one(n, client):
        return await send_and_answer(client, f"session {n} asks")

    results = await asyncio.gather(*(one(n, c) for n, c in enumerate(clients)))
    by_question = {r.body["messages"][-1]["content"]: text for r, text in zip(upstream.requests, upstream.sent)}
    for n, (reply_to, events) in enumerate(results):
        deltas, end = check_generation(events, reply_to)
        assert end["event_type"] == "assistant_done"
        assert deltas == by_question[f"session {n} asks"]
    assert upstream.max_active <= 20  # llm_max_concurrency
    for client in clients:
        await client.close()


@run
async def test_restart_during_a_stalled_generation_is_quick_and_ends_interrupted(cluster, upstream):
    client, ack = await start_stalled_answer(cluster, upstream, ["before ", "restart"], 1, "restart me")
    began = time.monotonic()
    cluster.restart("fast")
    assert time.monotonic() - began < 10
    back = await connect_when_back(cluster, user=client.user, session_id=client.session_id,
                                   last_event_id=ack["event_id"])
    events = [e for e in await answer(back)]
    check_dense(events, ack["event_id"] + 1)
    _, end = check_generation(events, ack["event_id"])
    assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "interrupted"
    assert stored_generations(cluster, client.session_id) == [(ack["event_id"], "error")]
    # A new message is answered after the restart.
    reply_to, events = await send_and_answer(back, "after restart")
    assert check_generation(events, reply_to)[1]["event_type"] == "assistant_done"
    await back.close()


@run
async def test_a_crash_mid_answer_ends_interrupted_when_the_worker_is_back(cluster, upstream):
    client, ack = await start_stalled_answer(cluster, upstream, ["lost ", "in ", "crash"], 2, "crash me")
    cluster.stop("immediate")
    cluster.start()
    back = await connect_when_back(cluster, user=client.user, session_id=client.session_id,
                                   last_event_id=ack["event_id"])
    events = await answer(back)
    check_dense(events, ack["event_id"] + 1)
    deltas, end = check_generation(events, ack["event_id"])
    assert end["payload"]["code"] == "interrupted"
    assert "lost in ".startswith(deltas)
    await back.close()


@run
async def test_every_connection_gets_exactly_the_log_whether_sent_from_memory_or_read(cluster, upstream):
    """The worker sends the events it appends (messages, answers) from memory
    after its commit, to connections whose cursor is at their start; a
    connection replaying or behind reads the log. Either way each connection
    must get exactly the stored rows: ids, types, payloads and created_at."""
    upstream.script(Stream(["Hel", "lo", ", wor", "ld \u00e9\u00e8 \"quoted\" \\ \n tab\t"]))
    asker = await cluster.new_session()
    watcher = await cluster.connect(user=asker.user, session_id=asker.session_id)
    await watcher.ready()
    seen_by_asker = []
    for n in range(3):
        seen_by_asker += (await send_and_answer(asker, f"question {n} \u00fc\u2603"))[1]
    # A third connection replays everything while a fourth answer streams.
    replayer = await cluster.connect(user=asker.user, session_id=asker.session_id, last_event_id=0)
    await replayer.ready()
    seen_by_asker += (await send_and_answer(asker, "last question"))[1]
    head = seen_by_asker[-1]["id"]

    rows = cluster.sql(
        "SELECT id, event_type, payload::text, to_char(created_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM resumable_ws.ws_events WHERE session_id = %s ORDER BY id",
        (asker.session_id,))
    stored = [{"type": "event", "id": r[0], "event_type": r[1], "payload": json.loads(r[2]), "created_at": r[3]}
              for r in rows]
    assert len(stored) == head
    assert seen_by_asker == stored
    assert await watcher.events(0, head) == stored
    assert await replayer.events(0, head, allow=("replay_done",)) == stored
    for c in (asker, watcher, replayer):
        await c.close()
