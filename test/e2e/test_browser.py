"""The chat page (GET /) in headless Chromium, against a real cluster and the
fake upstream: what a person sees. The property checked throughout is that
the page shows exactly the session's log: every user message once, every
answer's text equal to its stored deltas, in its stored state, nothing
doubled or lost across worker terminations, restarts, reloads and half-open
connections. Screenshots go to test/artifacts/browser/."""
import json
import time
import uuid

import pytest

from browser import Browser
from conftest import running_cluster, upstream_settings
from fake_openai import FakeOpenAI, Stream
from harness import JWT_SECRET, make_token

import jwt

SLOW = 0.08  # seconds between streamed pieces where a test acts mid-answer


@pytest.fixture(scope="module")
def cluster(upstream):
    yield from running_cluster(**upstream_settings(upstream, **{
        "resumable_ws.anonymous_sign_in": "on",
        "resumable_ws.anonymous_sign_ins_per_minute": 1000,  # every test signs in
        # The page pings at the server's heartbeat interval: 1 s finds a
        # half-open connection within about 2 s.
        "resumable_ws.heartbeat_interval": "'1s'",
    }))


@pytest.fixture(scope="module")
def chromium():
    b = Browser()
    yield b
    b.close()


@pytest.fixture
def browser(chromium, upstream):
    """A fresh browser profile per test; fails the test on any page error."""
    upstream.reset()
    yield chromium
    problems = chromium.problems()
    assert not problems, problems


# --- what the page shows, and what the log says it should show ---------------------

VIEW = """Array.from(document.querySelectorAll('#messages > li')).map(li => ({
  kind: li.classList.contains('pending') ? 'pending' : li.classList.contains('user') ? 'user'
      : li.classList.contains('assistant') ? 'assistant' : 'notice',
  text: li.querySelector('.bubble').textContent,
  state: li.dataset.state || null,
}))"""


def page_view(b):
    return as_tuples(b.eval(VIEW))


def shown(text):
    """Text as a rendered answer shows it: answers are Markdown, whose
    rendering does not keep runs of whitespace or line breaks."""
    return " ".join(text.split())


def as_tuples(items):
    return [(i["kind"], shown(i["text"]) if i["kind"] == "assistant" else i["text"], i["state"]) for i in items]


# The session the page is in: the client library keeps it in localStorage.
SESSION = "((JSON.parse(localStorage.getItem('resumable_ws') || 'null') || {}).session_id || null)"


# The page in one evaluation: whether it is idle (live, nothing waiting to be
# sent, no answer streaming), its session and what it shows.
PAGE = f"""({{
  idle: document.getElementById('status').dataset.state === 'live'
      && !document.querySelector('.msg.pending, .msg.assistant[data-state=streaming]'),
  session: {SESSION},
  view: {VIEW},
}})"""


def log_view(cluster, session_id):
    """The transcript the session's log implies, in the page's terms."""
    rows = cluster.sql("SELECT id, event_type, payload FROM resumable_ws.ws_events "
                       "WHERE session_id = %s ORDER BY id", (session_id,))
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), "ids are not dense"
    items, answers = [], {}
    for _, event_type, payload in rows:
        if event_type == "user_message":
            items.append(["user", payload["content"], None])
        elif event_type == "assistant_started":
            answers[payload["message_id"]] = item = ["assistant", "", "streaming"]
            items.append(item)
        elif event_type == "assistant_delta":
            answers[payload["message_id"]][1] += payload["delta"]
        elif event_type == "assistant_done":
            reason = payload["finish_reason"]
            answers[payload["message_id"]][2] = {"cancelled": "cancelled", "length": "length"}.get(reason, "done")
        elif event_type == "assistant_error":
            answers[payload["message_id"]][2] = "interrupted" if payload["code"] == "interrupted" else "error"
        else:
            items.append(["notice", f"{event_type} {json.dumps(payload, separators=(',', ':'))}", None])
    return [(kind, shown(text) if kind == "assistant" else text, state) for kind, text, state in items]


def session_of(b):
    return b.eval(SESSION)


def state(b):
    return b.eval("document.getElementById('status').dataset.state")


def states(b):
    """The connection states the page showed since it loaded, in order."""
    return b.eval("window.__states")


def left_live_since(b, count, timeout=10):
    """Waits until the page has shown a state other than live since it had
    shown `count` states. The page records every state it shows, so this
    holds even when the outage is over, and the page live again, before
    the test looks."""
    b.wait(f"window.__states.slice({count}).some((s) => s !== 'live')", timeout)


def wait_live(b, timeout=15):
    b.wait("document.getElementById('status').dataset.state === 'live'", timeout)


def in_flight(cluster, session):
    """The session's generations still to be answered or being answered."""
    return cluster.sql("SELECT reply_to, status FROM resumable_ws.ws_generations "
                       "WHERE session_id = %s AND status IN ('queued', 'running') ORDER BY reply_to",
                       (session,))


def wait_settled(b, cluster, timeout=15):
    """Waits (bounded) until the page and the session's log agree on a state
    where nothing is in flight, and returns that transcript: the page idle
    (live, nothing waiting to be sent, no answer streaming), no generation of
    the session queued or running, and the page showing exactly what the log
    implies. The page alone is not enough: once it shows a user message it is
    idle until the answer's assistant_started, which is written later."""
    deadline = time.monotonic() + timeout
    while True:
        # The page first, then the log: the page can only show what the log
        # already holds, so agreement means both are at the same state.
        page = b.eval(PAGE)
        session = page["session"]
        view = as_tuples(page["view"])
        busy = in_flight(cluster, session) if session else None
        expected = log_view(cluster, session) if session else None
        if page["idle"] and session and not busy and view == expected:
            return expected
        if time.monotonic() > deadline:
            assert session, "the page has no session"
            assert page["idle"], f"the page is not idle after {timeout} s: {view}"
            assert not busy, f"generations still in flight after {timeout} s: {busy}"
            assert view == expected, f"the page and the log still differ after {timeout} s"
            raise AssertionError("unreachable")
        time.sleep(0.05)


def send(b, text):
    b.call("fill", selector="#input", text=text)
    b.call("press", selector="#input", key="Enter")


def open_page(b, cluster, fragment="", **viewport):
    b.open(f"http://127.0.0.1:{cluster.ws_port}/{fragment}", **viewport)
    wait_live(b)


def check_page_matches_log(b, cluster, timeout=10):
    """Asserts that the page shows exactly what the session's log implies, once
    both have settled (see wait_settled); returns that transcript."""
    return wait_settled(b, cluster, timeout)


def answer_text(b):
    return b.eval("Array.from(document.querySelectorAll('.msg.assistant .bubble')).map(e => e.textContent)")


# --- tests ------------------------------------------------------------------------------

def test_a_first_visit_signs_in_and_shows_the_whole_answer_once(cluster, upstream, browser):
    open_page(browser, cluster)
    token = browser.eval("localStorage.getItem('resumable_ws.token')")
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["is_anonymous"] is True

    send(browser, "What does resumable_ws do?")
    wait_settled(browser, cluster)
    session = session_of(browser)
    assert cluster.sql("SELECT user_id::text FROM resumable_ws.ws_sessions WHERE id = %s",
                       (session,)) == [(claims["sub"],)]
    assert upstream.sent == [FakeOpenAI.default_reply(upstream.requests[0].body).text]
    assert check_page_matches_log(browser, cluster) == [
        ("user", "What does resumable_ws do?", None),
        ("assistant", shown(upstream.sent[0]), "done"),
    ]

    send(browser, "And a second question, with\ntwo lines?")
    wait_settled(browser, cluster)
    view = check_page_matches_log(browser, cluster)
    assert [kind for kind, _, _ in view] == ["user", "assistant", "user", "assistant"]
    assert [shown(t) for t in answer_text(browser)] == [shown(t) for t in upstream.sent]
    browser.screenshot("chat-desktop")
    browser.call("resize", width=390, height=844)
    browser.screenshot("chat-phone")
    # Nothing sticks out sideways on a phone.
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_terminated_worker_mid_answer_ends_interrupted_and_never_doubles(cluster, upstream, browser):
    open_page(browser, cluster)
    pieces = [f"piece{n} " for n in range(60)]
    upstream.script(Stream(pieces, delay=SLOW))
    send(browser, "stream slowly please")
    browser.wait("(document.querySelector('.msg.assistant .bubble')?.textContent || '').length > 20")
    before = len(states(browser))
    cluster.terminate_workers(cluster.workers_serving(session_of(browser)))
    browser.wait(f"window.__states.slice({before}).some((s) => ['reconnecting', 'connecting'].includes(s))")
    browser.screenshot("worker-terminated-reconnecting")
    wait_settled(browser, cluster, timeout=20)
    # Told to come back after retry_after_ms; then it resumes with a replay.
    seen = states(browser)
    assert seen[:2] == ["connecting", "live"] and seen[-2:] == ["replaying", "live"]
    assert "reconnecting" in seen[2:]

    view = check_page_matches_log(browser, cluster)
    kind, text, final = view[1]
    assert kind == "assistant" and final == "interrupted"
    assert text and shown("".join(pieces)).startswith(text)
    assert browser.eval("document.querySelector('.msg.assistant .meta').textContent").startswith(
        "Interrupted by a server restart.")
    browser.screenshot("worker-terminated-interrupted")

    # Retry asks again, as a new message, and that answer completes.
    browser.call("click", selector=".msg.assistant .meta button")
    wait_settled(browser, cluster, timeout=20)
    view = check_page_matches_log(browser, cluster)
    assert view[-2] == ("user", "stream slowly please", None)
    assert view[-1][0] == "assistant" and view[-1][2] == "done"


def test_an_immediate_stop_mid_answer_resumes_with_the_answer_interrupted(cluster, upstream, browser):
    """A crash-like stop: no close frame, no server_restarting; the page
    notices the dropped socket and comes back with backoff."""
    open_page(browser, cluster)
    upstream.script(Stream([f"w{n} " for n in range(80)], delay=SLOW))
    send(browser, "you will be cut off")
    browser.wait("(document.querySelector('.msg.assistant .bubble')?.textContent || '').length > 10")
    cluster.restart("immediate")
    wait_settled(browser, cluster, timeout=30)
    view = check_page_matches_log(browser, cluster)
    assert view[1][0] == "assistant" and view[1][2] == "interrupted"
    send(browser, "are you back?")
    wait_settled(browser, cluster)
    assert check_page_matches_log(browser, cluster)[-1][2] == "done"


def test_after_a_postgres_restart_the_next_message_works(cluster, upstream, browser):
    open_page(browser, cluster)
    send(browser, "before the restart")
    wait_settled(browser, cluster)
    before = len(states(browser))
    cluster.restart("fast")
    # restart() returns once the server is healthy, and by then the page may
    # well be live again: what it showed in between is in its state record.
    left_live_since(browser, before)
    wait_live(browser, timeout=20)
    send(browser, "after the restart")
    wait_settled(browser, cluster)
    view = check_page_matches_log(browser, cluster)
    assert [(kind, state) for kind, _, state in view] == [
        ("user", None), ("assistant", "done"), ("user", None), ("assistant", "done")]


def test_a_reload_shows_the_history_once_also_mid_answer(cluster, upstream, browser):
    open_page(browser, cluster)
    send(browser, "first")
    wait_settled(browser, cluster)
    upstream.script(Stream([f"slow{n} " for n in range(40)], delay=SLOW))
    send(browser, "second, reloaded while it streams")
    browser.wait("(document.querySelectorAll('.msg.assistant .bubble')[1]?.textContent || '').length > 10")
    browser.call("reload")
    # The transcript comes from storage at once, then the rest of the answer.
    assert len(page_view(browser)) == 4
    wait_settled(browser, cluster, timeout=20)
    assert states(browser) == ["connecting", "replaying", "live"]
    view = check_page_matches_log(browser, cluster)
    assert len(view) == 4 and view[3][2] == "done"
    assert view[3][1] == shown("".join(f"slow{n} " for n in range(40)))

    # Without the stored conversation (what the library keeps when storage is
    # full) the page replays the session's log from its start.
    browser.eval("localStorage.setItem('resumable_ws', JSON.stringify({session_id: %s, "
                 "last_event_id: 0, messages: [], pending: []}))" % SESSION)
    browser.call("reload")
    wait_settled(browser, cluster)
    assert check_page_matches_log(browser, cluster) == view


def test_markup_in_messages_is_shown_as_text(cluster, upstream, browser):
    open_page(browser, cluster)
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>'
    send(browser, hostile)
    wait_settled(browser, cluster)
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', %s::jsonb)",
                (session_of(browser), json.dumps({"html": "<img src=y onerror=\"window.__pwned = 3\">"})))
    browser.wait("document.querySelector('.msg.notice')")
    view = check_page_matches_log(browser, cluster)
    assert view[0] == ("user", hostile, None)
    assert hostile in view[1][1]  # the fake quotes the question in its answer
    assert browser.eval("document.querySelectorAll('#messages script, #messages img, #messages b').length") == 0
    assert browser.eval("typeof window.__pwned") == "undefined"
    browser.screenshot("markup-as-text")


def test_the_page_follows_a_dark_color_scheme_on_a_phone(cluster, upstream, browser):
    open_page(browser, cluster, width=390, height=844, mobile=True, dark=True)
    send(browser, "How does it look at night?")
    wait_settled(browser, cluster)
    check_page_matches_log(browser, cluster)
    background = browser.eval("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 17, 21)"
    assert browser.eval("document.documentElement.scrollWidth <= window.innerWidth")
    browser.screenshot("chat-phone-dark")


def test_stop_cancels_the_running_answer(cluster, upstream, browser):
    open_page(browser, cluster)
    upstream.script(Stream([f"long{n} " for n in range(200)], delay=SLOW))
    send(browser, "a long answer please")
    browser.wait("(document.querySelector('.msg.assistant .bubble')?.textContent || '').length > 10")
    browser.wait("!document.getElementById('stop').hidden")
    browser.screenshot("streaming")
    browser.call("click", selector="#stop")
    wait_settled(browser, cluster)
    view = check_page_matches_log(browser, cluster)
    assert view[1][2] == "cancelled" and 0 < len(view[1][1]) < len("".join(f"long{n} " for n in range(200)))
    assert browser.eval("document.getElementById('stop').hidden")
    assert browser.eval("document.querySelector('.msg.assistant .meta').textContent") == "Stopped."


def test_a_half_open_connection_is_found_and_unsent_messages_go_once(cluster, upstream, browser):
    """The workers freeze (SIGSTOP): the socket stays open but nothing comes
    back, nor from a new connection. The page sees its pings unanswered,
    reconnects, and re-sends what was not acknowledged with the same
    idempotency key."""
    open_page(browser, cluster)
    with cluster.frozen_workers():
        send(browser, "sent into the void")  # written to the frozen socket: no ack
        browser.wait("document.querySelector('.msg.pending')")
        browser.wait("document.getElementById('status').dataset.state !== 'live'", timeout=10)
        send(browser, "typed while reconnecting")
        browser.wait("document.querySelectorAll('.msg.pending').length === 2")
        browser.screenshot("half-open-pending")
    wait_settled(browser, cluster, timeout=30)
    view = check_page_matches_log(browser, cluster)
    users = [text for kind, text, _ in view if kind == "user"]
    assert users == ["sent into the void", "typed while reconnecting"]
    assert [state for kind, _, state in view if kind == "assistant"] == ["done", "done"]


def test_a_token_from_the_fragment_is_used_and_replaced_after_4001(cluster, upstream, browser):
    user = str(uuid.uuid4())
    browser.call("open")  # a new browser context, before the token's 4 s start
    browser.call("goto", url=f"http://127.0.0.1:{cluster.ws_port}/#access_token=" + make_token(user, ttl=4))
    wait_live(browser)
    assert "access_token" not in browser.eval("location.href")
    # The page connected as that user. Its session is looked up in the
    # database, not in the page: on a slow machine the 4 s may be over, and
    # the page on to its next session, by now.
    sessions = cluster.sql("SELECT id::text FROM resumable_ws.ws_sessions WHERE user_id = %s", (user,))
    assert len(sessions) == 1
    session = sessions[0][0]
    # At expiry the server closes with 4001; the page signs in anonymously,
    # as a new user, who starts a new conversation.
    browser.wait(f"{SESSION} && {SESSION} !== '{session}'", timeout=15)
    wait_live(browser)
    token = browser.eval("localStorage.getItem('resumable_ws.token')")
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")["sub"] != user
    send(browser, "hello as someone new")
    wait_settled(browser, cluster)
    assert check_page_matches_log(browser, cluster)[0] == ("user", "hello as someone new", None)


def test_a_closed_session_and_new_chat_start_new_conversations(cluster, upstream, browser):
    open_page(browser, cluster)
    send(browser, "soon closed")
    wait_settled(browser, cluster)
    first = session_of(browser)
    cluster.sql("SELECT resumable_ws.close_session(%s)", (first,))
    browser.wait(f"{SESSION} && {SESSION} !== '{first}'")
    wait_live(browser)
    assert page_view(browser) == []
    assert "closed" in browser.eval("document.getElementById('notice').textContent")

    second = session_of(browser)
    send(browser, "in the second conversation")
    wait_settled(browser, cluster)
    browser.call("click", selector="#new-chat")
    browser.wait(f"{SESSION} && {SESSION} !== '{second}'")
    wait_live(browser)
    assert page_view(browser) == []
    browser.screenshot("new-chat")


def test_without_anonymous_sign_in_the_page_asks_for_a_token(cluster, upstream, browser):
    cluster.reload(**{"resumable_ws.anonymous_sign_in": "off"})
    try:
        cluster.wait_for(lambda: cluster.http("/auth/anonymous", method="POST")[0] == 404,
                         what="anonymous sign-in off")
        browser.open(f"http://127.0.0.1:{cluster.ws_port}/")
        browser.wait("document.getElementById('status').dataset.state === 'signed-out'")
        assert "#access_token" in browser.eval("document.getElementById('notice').textContent")
        browser.screenshot("signed-out")
    finally:
        cluster.reload(**{"resumable_ws.anonymous_sign_in": "on"})
        cluster.wait_for(lambda: cluster.http("/auth/anonymous", method="POST")[0] == 200,
                         what="anonymous sign-in on")


MARKDOWN = ("# Plan\n\nSome **bold** and `inline`.\n\n- one\n- two\n\n```python\nprint('<b>hi</b>')\n```\n\n"
            "[docs](https://example.com/docs) [bad](javascript:alert(1)) <i onclick=\"window.__pwned = 4\">raw</i> "
            "![pixel](http://127.0.0.1:9/p.png)\n")

STRUCTURE = """(() => { const b = document.querySelector('.msg.assistant .bubble'); return {
  h1: [...b.querySelectorAll('h1')].map((e) => e.textContent),
  strong: [...b.querySelectorAll('strong')].map((e) => e.textContent),
  items: [...b.querySelectorAll('ul > li')].map((e) => e.textContent),
  code: [...b.querySelectorAll('.code > pre > code')].map((e) => e.textContent),
  copy: b.querySelectorAll('.code > button.copy').length,
  links: [...b.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.rel, a.target, a.textContent]),
  elements: [...new Set([...b.querySelectorAll('*')].map((e) => e.localName))].sort(),
  handlers: [...b.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
  text: b.textContent,
}; })()"""


def test_answers_are_markdown_rendered_without_any_html_from_the_content(cluster, upstream, browser):
    """An answer's Markdown becomes headings, lists, code blocks with a copy
    button and links that open apart (rel=noopener); raw HTML, javascript:
    links stay text, and images are links (nothing is fetched)."""
    open_page(browser, cluster)
    upstream.script(Stream([MARKDOWN[i:i + 9] for i in range(0, len(MARKDOWN), 9)]))
    send(browser, "markdown please")
    browser.wait("document.querySelector('.msg.assistant[data-state=done]')")
    session = session_of(browser)
    stored = cluster.sql("SELECT payload->>'content' FROM resumable_ws.ws_events "
                         "WHERE session_id = %s AND event_type = 'assistant_done'", (session,))
    assert stored == [(MARKDOWN,)]
    page = browser.eval(STRUCTURE)
    assert page["h1"] == ["Plan"] and page["strong"] == ["bold"] and page["items"] == ["one", "two"]
    assert page["code"] == ["print('<b>hi</b>')\n"] and page["copy"] == 1
    # An image is not loaded: it becomes a link to its address.
    assert page["links"] == [["https://example.com/docs", "noopener noreferrer", "_blank", "docs"],
                             ["http://127.0.0.1:9/p.png", "noopener noreferrer", "_blank", "pixel"]]
    assert set(page["elements"]) <= {"h1", "p", "strong", "code", "ul", "li", "div", "pre", "button", "a"}, page
    assert page["handlers"] == 0
    for literal in ('[bad](javascript:alert(1))', '<i onclick="window.__pwned = 4">raw</i>'):
        assert literal in page["text"]
    assert browser.eval("typeof window.__pwned") == "undefined"

    browser.call("click", selector=".msg.assistant .code button.copy")
    browser.wait("document.querySelector('.msg.assistant .copy.copied, .msg.assistant .copy.failed')")
    assert browser.eval("document.querySelector('.msg.assistant .copy').className") == "copy copied"
    browser.call("grant", permissions=["clipboard-read"])
    assert browser.eval("navigator.clipboard.readText()") == "print('<b>hi</b>')\n"
    browser.screenshot("markdown")
    browser.call("reload")  # rendered again from storage, the same
    browser.wait("document.querySelector('.msg.assistant[data-state=done]')")
    assert browser.eval(STRUCTURE) == page
