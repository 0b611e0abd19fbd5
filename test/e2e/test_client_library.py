"""The client library (clients/js/client.js) against a real cluster, from Node
with the `ws` package: each client is a test/node/lib_agent.mjs process driven
over stdin, and what it reports is checked against resumable_ws.ws_events."""
import json
import os
import queue
import random
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from conftest import running_cluster
from harness import JWT_SECRET, make_token

NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")
WAIT = 30  # seconds: the bound on any single wait of an agent


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(**{"resumable_ws.llm_provider": "echo"})


class Agent:
    """A Node process holding one ResumableClient."""

    def __init__(self, cluster, user, **config):
        config = {"url": f"ws://127.0.0.1:{cluster.ws_port}", "secret": JWT_SECRET, "user": user, **config}
        self.proc = subprocess.Popen(["node", "lib_agent.mjs", json.dumps(config)], cwd=NODE_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines = queue.Queue()
        self.backlog = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def do(self, op, **args):
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def expect(self, op, timeout=WAIT, **match):
        """The next reported line of kind `op` (others are kept for later)."""
        for i, line in enumerate(self.backlog):
            if line["op"] == op and all(line.get(k) == v for k, v in match.items()):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                line = "timeout"
            if line is None or line == "timeout" or left <= 0:
                self.proc.kill()
                raise AssertionError(f"agent: no {op} {match} ({line}); stderr:\n{self.proc.stderr.read()[-3000:]}")
            if line["op"] == op and all(line.get(k) == v for k, v in match.items()):
                return line
            self.backlog.append(line)

    def dump(self):
        self.do("dump")
        return self.expect("dump")

    def close(self):
        try:
            if self.proc.poll() is None:
                self.do("close")
                self.proc.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)


def log_events(cluster, session):
    rows = cluster.sql("SELECT id, event_type, payload FROM resumable_ws.ws_events WHERE session_id = %s ORDER BY id",
                       (session,))
    return [{"id": r[0], "event_type": r[1], "payload": r[2]} for r in rows]


def settled(events):
    """Every user message has one answer, and every answer has ended."""
    users = {e["id"] for e in events if e["event_type"] == "user_message"}
    started = {e["payload"]["message_id"]: e["payload"]["reply_to"] for e in events
               if e["event_type"] == "assistant_started"}
    ended = {e["payload"]["message_id"] for e in events if e["event_type"] in ("assistant_done", "assistant_error")}
    return users == set(started.values()) and len(started) == len(users) and set(started) == ended


def wait_settled(cluster, session, timeout=WAIT):
    return cluster.wait_for(lambda: (lambda ev: settled(ev) and ev)(log_events(cluster, session)), timeout,
                            "every answer to end")


def expected_messages(events):
    """The conversation as the log says it is."""
    out, by_id = [], {}
    for e in events:
        p = e["payload"]
        if e["event_type"] == "user_message":
            out.append({"id": p["idempotency_key"], "role": "user", "content": p["content"], "status": "sent",
                        "event_id": e["id"]})
        elif e["event_type"] == "assistant_started":
            m = {"id": p["message_id"], "role": "assistant", "content": "", "status": "streaming", "event_id": e["id"],
                 "reply_to": p["reply_to"]}
            by_id[p["message_id"]] = m
            out.append(m)
        elif e["event_type"] == "assistant_delta":
            by_id[p["message_id"]]["content"] += p["delta"]
        elif e["event_type"] == "assistant_done":
            m = by_id[p["message_id"]]
            assert m["content"] == p["content"]
            m["finish_reason"] = p["finish_reason"]
            m["status"] = "cancelled" if p["finish_reason"] == "cancelled" else "done"
        elif e["event_type"] == "assistant_error":
            m = by_id[p["message_id"]]
            m["error"] = {"code": p["code"], "message": p["message"]}
            m["status"] = "interrupted" if p["code"] == "interrupted" else "error"
    return out


def check_against_log(cluster, dump, acks=None, first=1):
    """The agent saw every event of the log from `first` on, once each, in order, and
    rebuilt the stored conversation; each send() resolved with its logged id."""
    log = log_events(cluster, dump["sessionId"])
    seen = [{"id": e["id"], "event_type": e["event_type"], "payload": e["payload"]} for e in dump["events"]]
    assert seen == log[first - 1:], "events differ from the log"
    assert [e["id"] for e in seen] == list(range(first, len(log) + 1))
    if first == 1:
        assert dump["messages"] == expected_messages(log)
    if acks is not None:
        by_content = {e["payload"]["content"]: e["id"] for e in log if e["event_type"] == "user_message"}
        assert len(by_content) == len([e for e in log if e["event_type"] == "user_message"]), "a message was stored twice"
        assert {a["text"]: a["event_id"] for a in acks} == by_content
    return log


def test_events_exact_across_worker_kills_and_restart(cluster):
    """Messages sent and answers streaming while the worker is terminated twice and
    Postgres restarts: the client's events are the log, dense and exact; every send()
    resolves once with its logged id; the rebuilt conversation is the stored one."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")  # replays a failing schedule with random.Random(seed)
    rng = random.Random(seed)
    agent = Agent(cluster, str(uuid.uuid4()), capMs=800)
    try:
        agent.do("connect")
        session = agent.expect("connected")["info"]["sessionId"]
        texts = [f"message {n} {uuid.uuid4().hex[:6]}" for n in range(9)]
        # Both kinds at random places: two worker terminations and one pg_ctl restart.
        kinds = ["terminate", "restart", "terminate"]
        rng.shuffle(kinds)
        disruptions = dict(zip(sorted(rng.sample(range(1, 8), 3)), kinds))
        for n, text in enumerate(texts):
            agent.do("send", text=text, n=n)
            time.sleep(rng.uniform(0.05, 0.4))  # the workload's pace, not a synchronisation
            if n in disruptions:
                # Each disruption hits a client that is back: one more ready than disruptions so far.
                agent.do("wait_ready", count=1 + sum(1 for k in disruptions if k < n))
                agent.expect("readies")
            if disruptions.get(n) == "terminate":
                # The worker serving the client (with several, the others go on).
                cluster.terminate_workers(cluster.workers_serving(session))
            elif disruptions.get(n) == "restart":
                cluster.restart("fast")
        acks = [agent.expect("acked", n=n) for n in range(len(texts))]
        assert not [line for line in agent.backlog if line["op"] in ("acked", "send_failed")], "a send() settled twice"
        for ack in acks:
            ack["text"] = texts[ack["n"]]
        log = wait_settled(cluster, session)
        agent.do("wait_event", id=len(log))
        agent.expect("at_event")
        dump = agent.dump()
        assert dump["sessionId"] == session and dump["resets"] == []
        log = check_against_log(cluster, dump, acks)
        assert "reconnecting" in dump["states"] and dump["states"][-1] == "live"
        assert sum(1 for r in dump["readies"] if r["resumed"]) >= 3
        statuses = {m["status"] for m in dump["messages"]}
        assert statuses <= {"sent", "done", "interrupted"}, statuses
    finally:
        agent.close()


def test_reload_with_file_storage_resumes_exactly(cluster):
    """A second process with the first one's storage (a reload) sees each event once:
    the first process's events plus the second's are the log, and an unsent message
    left in storage is sent by the second process."""
    user = str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "storage.json")
        first = Agent(cluster, user, storagePath=path)
        try:
            first.do("connect")
            first.expect("connected")
            first.do("send", text="before reload", n=0)
            first.expect("acked", n=0)
            first.do("wait_status", status="done")
            first.expect("status")
            dump1 = first.dump()
        finally:
            first.close()
        session = dump1["sessionId"]
        cluster.sql("SELECT resumable_ws.publish(%s, 'while_away', '{\"n\": 1}')", (session,))
        # A message written to storage but never sent (the page was closed first).
        with open(path) as f:
            stored = json.load(f)
        state = json.loads(stored["resumable_ws"])
        key = str(uuid.uuid4())
        state["pending"].append({"key": key, "content": "left unsent"})
        stored["resumable_ws"] = json.dumps(state)
        with open(path, "w") as f:
            json.dump(stored, f)

        second = Agent(cluster, user, storagePath=path)
        try:
            second.do("connect")
            info = second.expect("connected")["info"]
            assert info["sessionId"] == session and info["resumed"] and info["replayFrom"] == dump1["lastEventId"]
            # Settled once the message left unsent is in the log and answered
            # (before it is sent, the log is settled too).
            log = cluster.wait_for(lambda: (lambda ev: settled(ev) and any(
                e["event_type"] == "user_message" and e["payload"]["idempotency_key"] == key for e in ev) and ev)(
                log_events(cluster, session)), WAIT, "the message left unsent to be stored and answered")
            second.do("wait_event", id=len(log))
            second.expect("at_event")
            dump2 = second.dump()
        finally:
            second.close()
        assert [e["id"] for e in dump1["events"] + dump2["events"]] == [e["id"] for e in log]
        check_against_log(cluster, dump2, first=dump1["lastEventId"] + 1)
        assert any(e["event_type"] == "user_message" and e["payload"]["idempotency_key"] == key for e in log)
        # The conversation restored from storage plus the new events is the stored one.
        assert dump2["messages"] == expected_messages(log)


def test_two_clients_one_session_and_cancel_from_the_second(cluster):
    user = str(uuid.uuid4())
    a = Agent(cluster, user)
    b = None
    try:
        a.do("connect")
        session = a.expect("connected")["info"]["sessionId"]
        b = Agent(cluster, user, sessionId=session)
        b.do("connect")
        b.expect("connected")
        a.do("send", text="long " * 300, n=0)
        a.expect("acked", n=0)
        a.do("wait_streaming")
        a.expect("streaming")
        b.do("wait_streaming")
        b.expect("streaming")
        b.do("cancel")
        a.do("wait_status", status="cancelled")
        a.expect("status")
        log = wait_settled(cluster, session)
        for agent in (a, b):
            agent.do("wait_event", id=len(log))
            agent.expect("at_event")
        da, db = a.dump(), b.dump()
        check_against_log(cluster, da)
        check_against_log(cluster, db)
        assert da["events"] == db["events"]
        answer = [m for m in da["messages"] if m["role"] == "assistant"]
        assert len(answer) == 1 and answer[0]["status"] == "cancelled" and answer[0]["finish_reason"] == "cancelled"
        assert len(answer[0]["content"]) < len("long " * 300)
    finally:
        a.close()
        if b:
            b.close()


def test_token_refreshed_after_4001(cluster):
    """A token that expires closes the connection with 4001; the client asks for a
    new one and resumes without losing or repeating an event."""
    agent = Agent(cluster, str(uuid.uuid4()), tokenTtl=2)
    try:
        agent.do("connect")
        session = agent.expect("connected")["info"]["sessionId"]
        cluster.sql("SELECT resumable_ws.publish(%s, 'one', '{}')", (session,))
        agent.do("wait_event", id=1)
        agent.expect("at_event")
        deadline = time.monotonic() + 15
        while agent.dump()["tokenCalls"] < 2:
            assert time.monotonic() < deadline, "token() was not called again"
            time.sleep(0.2)
        cluster.sql("SELECT resumable_ws.publish(%s, 'two', '{}')", (session,))
        agent.do("wait_event", id=2)
        agent.expect("at_event")
        dump = agent.dump()
        check_against_log(cluster, dump)
        assert dump["resets"] == [] and dump["sessionId"] == session
    finally:
        agent.close()


def test_closed_session_starts_a_new_one_and_says_so(cluster):
    user = str(uuid.uuid4())
    agent = Agent(cluster, user)
    try:
        agent.do("connect")
        session = agent.expect("connected")["info"]["sessionId"]
        cluster.sql("SELECT resumable_ws.close_session(%s)", (session,))
        deadline = time.monotonic() + WAIT
        while True:
            dump = agent.dump()
            if dump["resets"] and dump["sessionId"] not in (None, session) and dump["states"][-1] == "live":
                break
            assert time.monotonic() < deadline, dump
            time.sleep(0.1)
        assert dump["resets"][0]["reason"] == "session_not_found"
        assert dump["resets"][0]["previousSessionId"] == session
        agent.do("send", text="in the new session", n=0)
        assert agent.expect("acked", n=0)["event_id"] == 1
    finally:
        agent.close()


def test_time_to_live_when_resuming_10000_events(cluster):
    """Measured, not asserted tightly: connect() to 'live' for a 10,000-event replay."""
    user = str(uuid.uuid4())
    agent = Agent(cluster, user)
    try:
        agent.do("connect")
        session = agent.expect("connected")["info"]["sessionId"]
    finally:
        agent.close()
    cluster.sql("SELECT resumable_ws.publish(%s, 'bulk', jsonb_build_object('n', n)) FROM generate_series(1, 10000) n",
                (session,))
    timings = {}
    for start in (0, 5000):
        agent = Agent(cluster, user, sessionId=session, lastEventId=start)
        try:
            agent.do("connect")
            line = agent.expect("connected")
            assert line["last_event_id"] == 10000
            timings[start] = line["ms_to_live"]
            dump = agent.dump()
            assert [e["id"] for e in dump["events"]] == list(range(start + 1, 10001))
            assert dump["replayed"][-1]["replayed"] == 10000 - start
        finally:
            agent.close()
    print(f"\nconnect() to live, 10,000-event session: from 0 {timings[0]:.0f} ms, from 5000 {timings[5000]:.0f} ms")


def test_node_example_resumes_its_session(cluster):
    """clients/js/examples/node-chat.mjs, as the README shows it: two runs share one session."""
    example = os.path.join(os.path.dirname(__file__), "..", "..", "clients", "js", "examples")
    user = str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RWS_URL": f"ws://127.0.0.1:{cluster.ws_port}", "RWS_TOKEN": make_token(user),
               "RWS_STATE": os.path.join(tmp, "state.json"), "NODE_PATH": os.path.join(NODE_DIR, "node_modules")}
        # `ws` resolves from test/node/node_modules: run a copy of the example there.
        script = os.path.join(NODE_DIR, "example-node-chat.mjs")
        with open(os.path.join(example, "node-chat.mjs")) as f:
            source = f.read().replace('"../client.js"', '"../../clients/js/client.js"')
        with open(script, "w") as f:
            f.write(source)
        try:
            runs = [subprocess.run(["node", script, *questions], cwd=NODE_DIR, env=env, capture_output=True,
                                   text=True, timeout=30) for questions in (["first question"], ["second question"])]
        finally:
            os.unlink(script)
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.startswith('done: You said: "first question"')
    assert runs[1].stdout.startswith('done: You said: "second question"')
    sessions = cluster.sql("SELECT id FROM resumable_ws.ws_sessions WHERE user_id = %s", (user,))
    assert len(sessions) == 1
    assert [e["event_type"] for e in log_events(cluster, sessions[0][0])][:2] == ["user_message", "assistant_started"]


def test_half_open_connection_found_by_pings(cluster):
    """The workers freeze (SIGSTOP): the socket stays open but nothing comes back.
    The client's unanswered ping makes it reconnect, and the messages sent into the
    void and while reconnecting are stored once each when the workers are back."""
    agent = Agent(cluster, str(uuid.uuid4()), pingIntervalMs=500, connectTimeoutMs=2000)
    try:
        agent.do("connect")
        session = agent.expect("connected")["info"]["sessionId"]
        with cluster.frozen_workers():
            agent.do("send", text="sent into the void", n=0)
            agent.do("wait_state", state="reconnecting")
            agent.expect("state", timeout=10)
            agent.do("send", text="typed while reconnecting", n=1)
        acks = [agent.expect("acked", n=n) for n in range(2)]
        acks[0]["text"], acks[1]["text"] = "sent into the void", "typed while reconnecting"
        log = wait_settled(cluster, session)
        agent.do("wait_event", id=len(log))
        agent.expect("at_event")
        dump = agent.dump()
        check_against_log(cluster, dump, acks)
        assert [m["status"] for m in dump["messages"]] == ["sent", "done", "sent", "done"]
    finally:
        agent.close()


def test_library_unit_tests_with_a_fake_socket():
    """test/node/lib_unit.test.mjs: abort, 1009, 4001 with a string and a function
    token, 4003/4004, invalid_cursor, retry_after_ms, storage — no server needed."""
    result = subprocess.run(["node", "--test", "lib_unit.test.mjs"], cwd=NODE_DIR, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_in_chromium_with_local_storage_and_a_reload(cluster):
    """The module in Debian's Chromium, imported from the worker's GET /client.js
    by a page of another origin, with localStorage: an answer is rebuilt as
    stored, and a reload continues the session without delivering an event twice."""
    from browser import Browser, serve_files

    user = str(uuid.uuid4())
    with serve_files(os.path.join(NODE_DIR, "..", "browser", "lib_page.html")) as origin:
        browser = Browser()
        try:
            url = (f"{origin}/lib_page.html"
                   f"#ws=ws://127.0.0.1:{cluster.ws_port}&token={make_token(user)}")
            browser.open(url)
            browser.wait("window.rws && rws.client.state === 'live'")
            browser.eval("rws.client.send('from chromium').then((r) => { rws.ack = r; })")
            browser.wait("rws.client.messages.some((m) => m.role === 'assistant' && m.status === 'done')")
            session = browser.eval("rws.client.sessionId")
            log = wait_settled(cluster, session)
            assert browser.eval("rws.ack") == {"event_id": 1, "duplicate": False}
            assert browser.eval("rws.events") == [e["id"] for e in log]
            assert browser.eval("rws.client.messages") == expected_messages(log)

            browser.call("goto", url=url.replace("#", "?reload#"))  # a reload: same origin, same storage
            browser.wait("window.rws && rws.client.state === 'live'")
            assert browser.eval("rws.client.sessionId") == session
            assert browser.eval("rws.client.lastEventId") == len(log)
            assert browser.eval("rws.client.messages") == expected_messages(log)
            cluster.sql("SELECT resumable_ws.publish(%s, 'after_reload', '{}')", (session,))
            browser.wait(f"rws.events.length === 1")
            assert browser.eval("rws.events") == [len(log) + 1]
            assert browser.problems() == []
        finally:
            browser.close()


def test_web_example_holds_a_chat_through_worker_restarts(cluster):
    """clients/js/examples/web-chat.html, as the README shows it, served from another
    origin in Chromium: questions asked across a worker termination and a Postgres
    restart are each answered once, the page shows the stored conversation, and a
    reload shows it again from storage."""
    from browser import Browser, serve_files

    example = os.path.join(NODE_DIR, "..", "..", "clients", "js", "examples", "web-chat.html")
    with open(example) as f, open(os.path.join(NODE_DIR, "..", "..", "clients", "js", "README.md")) as r:
        assert "```html\n" + f.read() + "```" in r.read(), "the README's web example is not examples/web-chat.html"
    user = str(uuid.uuid4())
    shown = "Array.from(document.querySelectorAll('#log li'), (li) => li.textContent)"
    with serve_files(example) as origin:
        browser = Browser()

        def ask(text):
            browser.call("fill", selector="#q", text=text)
            browser.call("press", selector="#q", key="Enter")

        def live():
            browser.wait("document.getElementById('state').textContent === 'live'", timeout=30)

        try:
            url = (f"{origin}/web-chat.html"
                   f"#server=http://127.0.0.1:{cluster.ws_port}&token={make_token(user)}")
            browser.open(url)
            live()
            ask("before anything")
            browser.wait(f"{shown}.some((t) => t.startsWith('assistant (done)'))")
            session = cluster.sql("SELECT id FROM resumable_ws.ws_sessions WHERE user_id = %s", (user,))[0][0]
            cluster.terminate_workers(cluster.workers_serving(session))
            ask("while the worker restarts")  # kept and sent once it is back
            live()
            browser.wait(f"{shown}.filter((t) => t.startsWith('assistant (done)')).length === 2", timeout=30)
            cluster.restart("fast")
            ask("after a Postgres restart")
            live()
            session = cluster.sql("SELECT id FROM resumable_ws.ws_sessions WHERE user_id = %s", (user,))
            assert len(session) == 1
            # 'live' comes with the session's ready; the message kept while
            # the server was away is sent then, and committed a pass later.
            log = cluster.wait_for(
                lambda: (lambda ev: settled(ev) and sum(e["event_type"] == "user_message" for e in ev) >= 3 and ev)(
                    log_events(cluster, session[0][0])), WAIT, "the third question to be answered")
            expected = [f"{m['role']} ({m['status']}): {m['content']}" for m in expected_messages(log)]
            assert [m for m in expected if m.startswith("user")] == [
                "user (sent): before anything", "user (sent): while the worker restarts",
                "user (sent): after a Postgres restart"]
            cluster.wait_for(lambda: browser.eval(shown) == expected, 30, "the page to show the stored conversation")
            browser.call("goto", url=url.replace("#", "?reload#"))  # a reload: the same storage
            live()
            assert browser.eval(shown) == expected
            assert browser.problems() == []
        finally:
            browser.close()
