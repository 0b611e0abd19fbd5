"""Reading and checking the events of AI generations, for the suites that
start them."""
import time

from harness import TIMEOUT

GENERATION_EVENTS = ("assistant_started", "assistant_delta", "assistant_done", "assistant_error")


async def answer(client, timeout=TIMEOUT):
    """Reads events until one message's assistant_done or assistant_error;
    returns every event frame read, in order."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] != "event":
            continue
        events.append(frame)
        if frame["event_type"] in ("assistant_done", "assistant_error"):
            return events


def check_generation(events, reply_to):
    """The events of one generation: started, deltas, one end; returns
    (concatenated deltas, end event)."""
    generation = [e for e in events if e["event_type"] in GENERATION_EVENTS]
    assert generation[0]["event_type"] == "assistant_started", generation
    message_id = generation[0]["payload"]["message_id"]
    assert generation[0]["payload"]["reply_to"] == reply_to
    assert all(e["payload"]["message_id"] == message_id for e in generation)
    assert all(e["event_type"] == "assistant_delta" for e in generation[1:-1])
    end = generation[-1]
    assert end["event_type"] in ("assistant_done", "assistant_error")
    deltas = "".join(e["payload"]["delta"] for e in generation[1:-1])
    if end["event_type"] == "assistant_done":
        assert end["payload"]["content"] == deltas
    return deltas, end


def check_dense(events, first):
    assert [e["id"] for e in events] == list(range(first, first + len(events)))


async def send_and_answer(client, content, key=None):
    """Sends a message; returns (its event id, the events through its end)."""
    key = await client.user_message(content, key)
    ack = await client.recv()
    while ack["type"] == "replay_done":
        ack = await client.recv()
    assert ack["type"] == "ack" and ack["idempotency_key"] == key, ack
    events = await answer(client)
    assert events[0]["id"] == ack["event_id"] and events[0]["event_type"] == "user_message"
    check_dense(events, ack["event_id"])
    return ack["event_id"], events
