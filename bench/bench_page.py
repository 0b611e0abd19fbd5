"""Chat page benchmark: how long the page in headless Chromium takes to be
live on a first visit (anonymous sign-in, new session), and after a reload
of a long conversation, with its stored transcript and without it (the whole
log replayed and rebuilt).

    /usr/bin/python3 bench/bench_page.py [MESSAGES]   (as root, after
    `bash scripts/install-deps.sh --test`, `make install` and
    `cd test/browser && npm ci`)

MESSAGES (default 500) question/answer pairs are published from SQL, each
answer as 20 deltas. Prints milliseconds, the median of 5 runs each.
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))

from browser import Browser  # noqa: E402
from harness import Cluster  # noqa: E402

LIVE = "document.getElementById('status').dataset.state === 'live'"


def timed(browser, action):
    """Milliseconds from the navigation's start to the page showing live."""
    action()
    browser.wait(LIVE, 60)
    return browser.eval("window.__stateTimes[window.__states.lastIndexOf('live')]")


def fill_history(cluster, session, pairs):
    cluster.sql("""
        SELECT count(resumable_ws.publish(%(s)s, e.type, e.payload))
        FROM generate_series(1, %(n)s) AS m,
        LATERAL (
            SELECT 1 AS ord, 'user_message' AS type,
                   jsonb_build_object('content', 'Question ' || m || ': ' || repeat('words ', 20),
                                      'idempotency_key', gen_random_uuid()) AS payload
            UNION ALL SELECT 2, 'assistant_started',
                   jsonb_build_object('message_id', 'm' || m, 'reply_to', 0)
            UNION ALL SELECT 3, 'assistant_delta',
                   jsonb_build_object('message_id', 'm' || m, 'delta', 'piece ' || d || ' of the answer. ')
                   FROM generate_series(1, 20) AS d
            UNION ALL SELECT 4, 'assistant_done',
                   jsonb_build_object('message_id', 'm' || m, 'finish_reason', 'stop', 'content',
                       (SELECT string_agg('piece ' || d || ' of the answer. ', '' ORDER BY d)
                        FROM generate_series(1, 20) AS d))
        ) AS e
        """, {"s": session, "n": pairs})


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    cluster = Cluster(**{"resumable_ws.anonymous_sign_in": "on",
                         "resumable_ws.anonymous_sign_ins_per_minute": 1000})
    browser = None
    try:
        cluster.start()
        browser = Browser()
        url = f"http://127.0.0.1:{cluster.ws_port}/"
        first = [timed(browser, lambda: browser.open(url)) for _ in range(5)]

        session = browser.eval("localStorage.getItem('resumable_ws.session_id')")
        fill_history(cluster, session, pairs)
        events = cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s",
                             (session,))[0][0]
        browser.call("reload")
        browser.wait(f"document.querySelectorAll('#messages > li').length === {2 * pairs}", 120)
        stored = json.loads(browser.eval("localStorage.getItem('resumable_ws.transcript')") or "{}")
        stored_bytes = len(json.dumps(stored))

        with_transcript = [timed(browser, lambda: browser.call("reload")) for _ in range(5)]

        def reload_without_transcript():
            browser.eval("localStorage.removeItem('resumable_ws.transcript')")
            browser.call("reload")
        replayed = [timed(browser, reload_without_transcript) for _ in range(5)]

        print(f"history: {pairs} question/answer pairs = {events} events; "
              f"stored transcript {stored_bytes / 1024:.0f} KiB")
        print(f"first visit to live (sign-in, new session): {statistics.median(first):7.0f} ms")
        print(f"reload to live, stored transcript:          {statistics.median(with_transcript):7.0f} ms")
        print(f"reload to live, log replayed from event 1:  {statistics.median(replayed):7.0f} ms")
    finally:
        if browser:
            browser.close()
        cluster.destroy()


if __name__ == "__main__":
    main()
