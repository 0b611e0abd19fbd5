"""Chat page benchmark: how long the page in headless Chromium takes to be
live on a first visit (anonymous sign-in, new session), and after a reload
of a long conversation, with the conversation in localStorage and without
it (the whole log replayed and rebuilt); when the page's list of messages is
complete; and what markdown-it costs for the conversation's answers.

    /usr/bin/python3 bench/bench_page.py [--baseline REF] [PAIRS]
    (as root, after `bash scripts/install-deps.sh --test`, `make install`
    and `cd test/browser && npm ci`)

PAIRS (default 500) question/answer pairs are published from SQL, each
answer as 20 deltas, twice: plain answers, and answers in Markdown (a
heading, a list, a code block). With --baseline, the page of git REF
(web/chat.html) is measured in the same run, on the same cluster and the
same two conversations: the installed chat.html is swapped between the two
pages before each navigation (the worker reads it at each request) and put
back at the end, also on failure. Prints milliseconds from the navigation's
start, the median of 5 runs each, the two pages alternating.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))

from browser import Browser  # noqa: E402
from harness import PG_SHAREDIR, Cluster  # noqa: E402

RUNS = 5
INSTALLED_PAGE = os.path.join(PG_SHAREDIR, "extension", "resumable_ws", "chat.html")
LIVE = "document.getElementById('status').dataset.state === 'live'"
LIVE_AT = "window.__stateTimes[window.__states.lastIndexOf('live')]"

# Records [ms since navigation start, number of <li> in #messages, ms of the
# next frame after it] at each change of the count, so that the time the
# list became complete (and was painted) can be read after the fact.
LIST_WATCH = """
(() => {
  // What the page will read from storage: the size of its stored conversation.
  try {
    window.__storedAtStart = {
      "resumable_ws": (localStorage.getItem("resumable_ws") || "").length,
      "resumable_ws.transcript": (localStorage.getItem("resumable_ws.transcript") || "").length,
    };
  } catch (e) { window.__storedAtStart = null; }
  const times = window.__listTimes = [];
  let frameAsked = false;
  const onFrame = () => setTimeout(() => {
    frameAsked = false;
    const now = performance.now();
    for (const t of times) if (t[2] === undefined) t[2] = now;
  });
  // One observer from the start: the old page renders its stored transcript
  // in a classic script while the document is still being parsed.
  new MutationObserver(() => {
    const list = document.getElementById("messages");
    if (!list) return;
    const n = list.childElementCount;
    if (times.length ? times[times.length - 1][1] === n : n === 0) return;
    times.push([performance.now(), n, undefined]);
    if (!frameAsked) { frameAsked = true; requestAnimationFrame(onFrame); }
  }).observe(document, { childList: true, subtree: true });
})();
"""


class NewPage:
    """The page on the client library: one value `resumable_ws`."""
    key = "resumable_ws"

    def __init__(self, name, html):
        self.name, self.html = name, html

    def stored(self):
        return ("(() => { const v = localStorage.getItem('resumable_ws'); const s = JSON.parse(v || 'null');"
                " return s && {session: s.session_id, cursor: s.last_event_id,"
                " messages: (s.messages || []).length, bytes: v.length}; })()")

    def point_at(self, session):
        """The conversation dropped from storage, the session kept (or set)."""
        value = json.dumps({"session_id": session, "last_event_id": 0, "messages": [], "pending": []})
        return f"localStorage.setItem('resumable_ws', {json.dumps(value)})"


class OldPage:
    """The page before the client library: session, cursor and transcript apart."""
    key = "resumable_ws.transcript"

    def __init__(self, name, html):
        self.name, self.html = name, html

    def stored(self):
        return ("(() => { const v = localStorage.getItem('resumable_ws.transcript');"
                " const s = JSON.parse(v || 'null');"
                " return s && {session: s.session_id, cursor: s.last_event_id,"
                " messages: (s.items || []).length, bytes: v.length}; })()")

    def point_at(self, session):
        return (f"localStorage.setItem('resumable_ws.session_id', {json.dumps(session)});"
                "localStorage.setItem('resumable_ws.last_event_id', '0');"
                "localStorage.removeItem('resumable_ws.transcript')")


def install(html):
    """Replaces the installed page atomically: the worker never reads half a file."""
    tmp = INSTALLED_PAGE + ".bench"
    with open(tmp, "wb") as f:
        f.write(html)
    os.chmod(tmp, 0o644)
    os.replace(tmp, INSTALLED_PAGE)


PLAIN_ANSWER = "(SELECT string_agg('piece ' || d || ' of the answer. ', '' ORDER BY d) FROM generate_series(1, 20) AS d)"
# 20 lines: a heading, a paragraph with emphasis and code, a list, a code block.
MARKDOWN_ANSWER = r"""(
    '## Answer ' || m || E'\n\n' ||
    E'Here is **the answer** to question ' || m || E', with `inline code` and a [link](https://example.com/' || m || E').\n\n' ||
    E'- first point, about the *question*\n- second point\n- third point, with `code`\n\n' ||
    E'1. step one\n2. step two\n\n' ||
    E'```python\ndef answer(x):\n    # doubles x\n    return x * 2\n\n\nprint(answer(' || m || E'))\n```\n\n' ||
    E'That is all for question ' || m || E'.\n')"""


def fill_history(cluster, session, pairs, answer_sql):
    """Publishes PAIRS question/answer pairs, each answer in 20 deltas."""
    cluster.sql(f"""
        WITH answers AS (SELECT m, {answer_sql} AS content FROM generate_series(1, %(n)s) AS m)
        SELECT count(resumable_ws.publish(%(s)s, e.type, e.payload))
        FROM answers AS a,
        LATERAL (
            SELECT 1 AS ord, 0 AS d, 'user_message' AS type,
                   jsonb_build_object('content', 'Question ' || a.m || ': ' || repeat('words ', 20),
                                      'idempotency_key', gen_random_uuid()) AS payload
            UNION ALL SELECT 2, 0, 'assistant_started',
                   jsonb_build_object('message_id', 'm' || a.m, 'reply_to', 0)
            UNION ALL SELECT 3, d, 'assistant_delta',
                   jsonb_build_object('message_id', 'm' || a.m,
                                      'delta', substr(a.content, 1 + (d - 1) * ceil(length(a.content) / 20.0)::int,
                                                      ceil(length(a.content) / 20.0)::int))
                   FROM generate_series(1, 20) AS d
            UNION ALL SELECT 4, 0, 'assistant_done',
                   jsonb_build_object('message_id', 'm' || a.m, 'finish_reason', 'stop', 'content', a.content)
            ORDER BY 1, 2
        ) AS e
        """, {"s": session, "n": pairs})
    return cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s", (session,))[0][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="?", type=int, default=500)
    parser.add_argument("--baseline", metavar="REF", help="also measure web/chat.html of git REF")
    parser.add_argument("--profile", metavar="DIR",
                        help="also write V8 CPU profiles of the installed page (.cpuprofile) to DIR "
                             "and print the functions that take the most time")
    args = parser.parse_args()
    pairs = args.pairs

    with open(INSTALLED_PAGE, "rb") as f:
        original = f.read()
    pages = [NewPage("installed", original)]
    if args.baseline:
        old = subprocess.run(["git", "show", f"{args.baseline}:web/chat.html"], cwd=HERE,
                             capture_output=True, check=True).stdout
        is_new = b'from "/client.js"' in old
        pages.append((NewPage if is_new else OldPage)(args.baseline, old))

    # A SIGTERM runs the finally blocks too: the installed page is put back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = Cluster(**{"resumable_ws.anonymous_sign_in": "on",
                         "resumable_ws.anonymous_sign_ins_per_minute": 1000})
    browser = None
    results = {}  # (row, page name) -> [ms]

    def record(row, page, value):
        results.setdefault((row, page.name), []).append(value)

    try:
        cluster.start()
        browser = Browser()
        url = f"http://127.0.0.1:{cluster.ws_port}/"

        def load_with(page, storage_js):
            """Loads the page after changing its storage from another document of
            the origin: a page being left writes its state back (pagehide), so a
            change made under it and a reload would be undone."""
            browser.call("goto", url=url + "client.js")
            browser.eval(storage_js)
            install(page.html)
            browser.call("goto", url=url)

        def stored_at_start(page):
            return browser.eval(f"window.__storedAtStart[{json.dumps(page.key)}]")

        def visit(page, action):
            install(page.html)
            action()
            browser.wait(LIVE, 60)
            return browser.eval(LIVE_AT)

        for _ in range(RUNS):
            for page in pages:
                record("first visit to live (sign-in, new session)", page,
                       visit(page, lambda: browser.open(url, init_script=LIST_WATCH)))

        # Two conversations of one anonymous user, made by the installed page.
        install(original)
        browser.open(url, init_script=LIST_WATCH)
        browser.wait(LIVE, 60)
        first = browser.wait(f"(() => {{ const s = {pages[0].stored()}; return s && s.session; }})()", 10)
        browser.call("click", selector="#new-chat")
        second = browser.wait(f"(() => {{ const s = {pages[0].stored()}; return {LIVE} && s &&"
                              f" s.session !== {json.dumps(first)} && s.session; }})()", 30)
        histories = [("plain answers", first, fill_history(cluster, first, pairs, PLAIN_ANSWER)),
                     ("Markdown answers", second, fill_history(cluster, second, pairs, MARKDOWN_ANSWER))]
        target = 2 * pairs

        def complete(page, events):
            """The list is complete and painted, and the page has stored it all."""
            return (f"(() => {{ const s = {page.stored()};"
                    f" return {LIVE} && s && s.cursor === {events} && s.messages === {target} &&"
                    f" window.__listTimes.some((t) => t[1] === {target} && t[2] !== undefined); }})()")

        def list_times():
            return browser.eval(f"window.__listTimes.find((t) => t[1] === {target})")

        sizes = {}
        render_cost = {}
        for label, session, events in histories:
            # Each page replays the conversation once and stores it.
            for page in pages:
                load_with(page, page.point_at(session))
                browser.wait(complete(page, events), 120)
                sizes[(label, page.name)] = browser.eval(page.stored())["bytes"]

            for _ in range(RUNS):
                for page in pages:
                    record(f"{label}: reload to live, stored conversation", page,
                           visit(page, lambda: browser.call("reload")))
                    assert stored_at_start(page) > 1000, "conversation not stored"
                    browser.wait(complete(page, events), 120)
                    t = list_times()
                    record(f"{label}: ... list complete / painted", page, (t[0], t[2]))

            for _ in range(RUNS):
                for page in pages:
                    record(f"{label}: load to live, log replayed from event 1", page,
                           visit(page, lambda: load_with(page, page.point_at(session))))
                    assert stored_at_start(page) < 1000, "conversation not dropped"
                    browser.wait(complete(page, events), 120)
                    t = list_times()
                    record(f"{label}: ... replayed list complete / painted", page, (t[0], t[2]))

            # markdown-it alone on this conversation's answers, in the page
            # (the installed page is the one with the client library).
            load_with(pages[0], pages[0].point_at(session))
            browser.wait(complete(pages[0], events), 120)
            render_cost[label] = browser.eval("""(async () => {
                const markdownit = (await import('/vendor/markdown-it.mjs')).default;
                const md = markdownit({ html: false, linkify: true, typographer: false });
                md.disable('image');
                const answers = JSON.parse(localStorage.getItem('resumable_ws')).messages
                    .filter((m) => m.role === 'assistant').map((m) => m.content);
                const runs = [];
                for (let r = 0; r < 5; r++) {
                    const t0 = performance.now();
                    let n = 0;
                    for (const a of answers) n += md.render(a).length;
                    runs.push(performance.now() - t0);
                }
                runs.sort((a, b) => a - b);
                return runs[2];
            })()""")

        profiles = []
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            label, session, events = histories[1]
            for name, action in (("stored", lambda: browser.call("reload")),
                                 ("replayed", lambda: load_with(pages[0], pages[0].point_at(session)))):
                load_with(pages[0], pages[0].point_at(session) if name == "stored" else "0")
                browser.wait(complete(pages[0], events), 120)
                browser.call("profile_start")
                action()
                browser.wait(complete(pages[0], events), 120)
                path = os.path.abspath(os.path.join(args.profile, f"chat-{name}.cpuprofile"))
                browser.call("profile_stop", path=path)
                profiles.append((f"{label}, {name} conversation", path))
    finally:
        if browser:
            browser.close()
        install(original)
        cluster.destroy()

    names = [p.name for p in pages]
    print(f"history: {pairs} question/answer pairs, {histories[0][2]} events (plain answers), "
          f"{histories[1][2]} events (Markdown answers); ms from navigation start, median of {RUNS}")
    width = max(len(row) for row, _ in results) + 2
    print("".ljust(width) + "".join(n.rjust(16) for n in names))
    for label, _, _ in histories:
        print(f"{label}: stored KiB".ljust(width) +
              "".join(f"{sizes[(label, n)] / 1024:16.0f}" for n in names))
    seen = []
    for row, _ in results:
        if row not in seen:
            seen.append(row)
    for row in seen:
        cells = []
        for n in names:
            values = results[(row, n)]
            if isinstance(values[0], tuple):
                cells.append(f"{statistics.median(v[0] for v in values):.0f} / "
                             f"{statistics.median(v[1] for v in values):.0f}")
            else:
                cells.append(f"{statistics.median(values):.0f}")
        print(row.ljust(width) + "".join(c.rjust(16) for c in cells))
    for label, cost in render_cost.items():
        print(f"markdown-it render of the {pairs} answers, {label}: {cost:.0f} ms")
    for label, path in profiles:
        print(f"\nCPU profile of the installed page, {label} ({path}), self time:")
        for ms, where in top_functions(path):
            print(f"{ms:8.0f} ms  {where}")


def top_functions(path, count=15):
    """Self time by function of a V8 .cpuprofile, largest first."""
    with open(path) as f:
        profile = json.load(f)
    interval = (profile["endTime"] - profile["startTime"]) / 1000 / max(1, len(profile["samples"]))
    totals = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        where = (f"{frame['functionName'] or '(anonymous)'} "
                 f"{os.path.basename(frame['url']) or 'chat.html' * bool(frame['url'])}:{frame['lineNumber'] + 1}")
        totals[where] = totals.get(where, 0) + node.get("hitCount", 0) * interval
    return sorted(((ms, where) for where, ms in totals.items()), reverse=True)[:count]


if __name__ == "__main__":
    main()
