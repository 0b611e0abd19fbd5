"""A property test of the client library (clients/js/client.js) in Debian's
Chromium, with localStorage: a page of another origin
(test/browser/lib_property_page.html) imports the worker's GET /client.js
while a seeded random schedule sends messages, lets answers stream and cuts
the connection in every way a browser meets: the page closes its socket, the
network goes silent (Chromium offline: the client must notice by its pings),
the worker is terminated, Postgres restarts, and the page reloads twice (once
while an answer streams, once with a message still unsent). Then what the
page saw is checked against resumable_ws.ws_events: the events exactly, each
send() settled once with its logged id, and the conversation rebuilt as
stored.

RWS_SEED=<seed> replays a schedule (the seed is printed; the timing of what
the cluster and the browser do meanwhile is not replayed)."""
import collections
import itertools
import json
import os
import random
import time
import uuid

import pytest

from browser import Browser, BrowserError, serve_files
from conftest import running_cluster
from harness import free_port, make_token
from test_client_library import expected_messages, log_events, wait_settled

PAGE = os.path.join(os.path.dirname(__file__), "..", "browser", "lib_property_page.html")
WAIT = 30  # seconds: the bound on any single wait (a pg_ctl restart included)
MESSAGES = 12
PING_MS = 500  # the client's ping interval: a silent network is noticed within about 1 s
BACKOFF_CAP_MS = 800
STREAMING = "rws.client.messages.some((m) => m.status === 'streaming')"


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(**{"resumable_ws.llm_provider": "echo"})


@pytest.fixture(scope="module")
def page_origin():
    """Serves the page from another origin than the worker's."""
    with serve_files(PAGE) as origin:
        yield origin


def message_text(rng, n):
    # Unique, and long enough that the echo answer streams for about a second.
    words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "kappa"]) for _ in range(rng.randint(4, 14)))
    return f"message {n} {uuid.uuid4().hex[:6]} {words}"


def test_events_exact_in_chromium_across_random_faults_and_reloads(cluster, page_origin):
    seed = int(os.environ.get("RWS_SEED") or random.randrange(1 << 30))
    print(f"seed {seed}")
    rng = random.Random(seed)
    started = time.monotonic()

    texts = {n: message_text(rng, n) for n in range(MESSAGES)}
    faults = ["terminate", "terminate", "restart", "reload", "reload_unsent"] + ["close"] * rng.randint(2, 3) \
        + ["offline"] * rng.randint(1, 2)
    rng.shuffle(faults)
    schedule = dict(zip(sorted(rng.sample(range(MESSAGES - 1), len(faults))), faults))
    print("schedule", schedule)

    url = (f"{page_origin}/lib_property_page.html#ws=ws://127.0.0.1:{cluster.ws_port}"
           f"&token={make_token(str(uuid.uuid4()))}&ping={PING_MS}&cap={BACKOFF_CAP_MS}&dead={free_port()}")
    browser = Browser()
    try:
        browser.open(url)
        browser.wait("window.rws && rws.client.state === 'live'", timeout=WAIT)
        session = browser.eval("rws.client.sessionId")
        breaks = 0  # faults that cut this page load's connection so far
        mid_answer = 0  # faults that came while an answer streamed
        extra = itertools.count(MESSAGES)  # numbers of the messages sent at a fault
        left_unsent = None

        def send(n, before=""):
            """The page's client.send() of message n, after the page expression `before`."""
            texts.setdefault(n, message_text(rng, n))
            return browser.eval(f"{before}; rws.send({n}, {json.dumps(texts[n])})")

        for n in range(MESSAGES):
            send(n)
            time.sleep(rng.uniform(0.05, 0.4))  # the workload's pace, not a synchronisation
            kind = schedule.get(n)
            if kind is None:
                continue
            # Each fault hits a client that is connected again: one more ready than cuts so far.
            browser.wait(f"rws.load.readies.length >= {breaks + 1}", timeout=WAIT)
            if kind == "reload" or rng.random() < 0.7:  # mostly mid-answer: pacing, a quiet moment is fine too
                try:
                    browser.wait(STREAMING, timeout=2)
                except BrowserError:
                    pass
                time.sleep(rng.uniform(0, 0.3))
            mid_answer += bool(browser.eval(STREAMING))
            breaks += 1
            if kind == "close":
                if rng.random() < 0.5:
                    send(next(extra))  # a message on the wire just before the close
                assert browser.eval("rws.drop()")
            elif kind == "offline":
                before = browser.eval("rws.load.states.filter((s) => s === 'reconnecting').length")
                browser.call("offline", offline=True)
                try:
                    send(next(extra))  # a message sent into the silence
                    # Frames are held, nothing closes: only the client's pings can tell.
                    browser.wait(f"rws.load.states.filter((s) => s === 'reconnecting').length > {before}",
                                 timeout=10)
                finally:
                    browser.call("offline", offline=False)
            elif kind == "terminate":
                cluster.terminate_workers(cluster.workers_serving(session))
            elif kind == "restart":
                cluster.restart("fast")
            elif kind in ("reload", "reload_unsent"):
                if kind == "reload_unsent":
                    # Connections refused from now on: the message is only in storage when the page goes.
                    left_unsent = next(extra)
                    send(left_unsent, before="rws.cutOff()")
                else:
                    send(next(extra))  # live, events arriving, a message just sent (acked or not yet)
                browser.call("reload")
                browser.wait("window.rws && rws.client.state === 'live'", timeout=WAIT)
                breaks = 0

        # Every message stored, every answer ended, the page caught up with the log.
        browser.wait(f"rws.load.settled.length === rws.load.sends.length", timeout=WAIT)
        cluster.wait_for(lambda: len([e for e in log_events(cluster, session) if e["event_type"] == "user_message"])
                         >= len(texts), WAIT, "every message in the log")
        log = wait_settled(cluster, session)
        browser.wait(f"rws.client.lastEventId === {len(log)} && rws.client.state === 'live'", timeout=WAIT)
        observed = browser.eval("JSON.parse(localStorage.getItem('observed'))")
        messages = browser.eval("rws.client.messages")
        assert browser.eval("rws.client.sessionId") == session
        problems = browser.problems()
    finally:
        browser.close()
    log = log_events(cluster, session)  # nothing more was written meanwhile
    loads = observed["loads"]

    # The events of the three page loads are the log: dense from 1, each once, same types and payloads.
    seen = [{"id": e["id"], "event_type": e["event_type"], "payload": e["payload"]}
            for ld in loads for e in ld["events"]]
    assert [e["id"] for e in seen] == list(range(1, len(log) + 1)), "events missing, repeated or out of order"
    assert seen == log, "events differ from the log"
    assert len(loads) == 3 and all(ld["events"] for ld in loads), "a reload was not mid-run"

    # Each text stored once; each send() settled at most once, resolved with its logged id;
    # only the sends of a page that was reloaded away may never settle.
    logged = [e for e in log if e["event_type"] == "user_message"]
    by_text = {e["payload"]["content"]: e["id"] for e in logged}
    assert len(by_text) == len(logged), "a message was stored twice"
    assert set(by_text) == set(texts.values())
    unsettled_at_reload = 0
    for ld in loads:
        counts = collections.Counter(s["n"] for s in ld["settled"])
        assert all(c == 1 for c in counts.values()), f"a send() settled twice: {counts}"
        for s in ld["settled"]:
            assert s["ok"], f"send() {s['n']} rejected: {s.get('error')}"
            assert s["value"]["event_id"] == by_text[texts[s["n"]]], s
        unsettled_at_reload += len(ld["sends"]) - len(ld["settled"])
    assert len(loads[-1]["settled"]) == len(loads[-1]["sends"])
    # The message left in storage was sent by the reloaded page.
    unsent_in = next(i for i, ld in enumerate(loads) if any(s["n"] == left_unsent for s in ld["sends"]))
    assert by_text[texts[left_unsent]] > loads[unsent_in]["events"][-1]["id"]

    # The conversation is the stored one; answers carry their stored content.
    assert messages == expected_messages(log)
    done = {e["payload"]["message_id"]: e["payload"]["content"] for e in log if e["event_type"] == "assistant_done"}
    for m in messages:
        if m["role"] == "assistant" and m["status"] == "done":
            assert m["content"] == done[m["id"]]
    assert {m["status"] for m in messages} <= {"sent", "done", "interrupted"}

    assert all(ld["resets"] == [] for ld in loads), [ld["resets"] for ld in loads]
    assert all(ld["errors"] == [] for ld in loads), [ld["errors"] for ld in loads]
    assert problems == []
    readies = [len(ld["readies"]) for ld in loads]
    duplicates = sum(1 for ld in loads for s in ld["settled"] if s["value"]["duplicate"])
    print(f"\n{len(faults)} faults {dict(collections.Counter(faults))}, {mid_answer} mid-answer, "
          f"{len(logged)} messages, {len(log)} events, "
          f"readies per load {readies}, {duplicates} send() resolved by a duplicate ack, "
          f"{unsettled_at_reload} send() left to storage by reloads, "
          f"{sum(1 for m in messages if m['status'] == 'interrupted')} answers interrupted, "
          f"{time.monotonic() - started:.1f} s")
