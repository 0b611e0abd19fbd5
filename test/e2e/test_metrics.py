"""GET /metrics, resumable_ws.stats and resumable_ws.connections() after a
known workload: N clients, M user messages each answered by the echo
provider, K publish() calls from SQL (one rolled back, one in a rolled-back
savepoint), a replay, a refused token and a slow consumer. Every counter is
checked against what the workload did (or what the database holds), the
scrape is parsed with prometheus_client's own parser, and the view must say
the same as the scrape."""
import asyncio
import json
import re
import urllib.request
import uuid

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import run, running_cluster
from harness import TIMEOUT, RawClient, make_token

N_CLIENTS = 3
M_MESSAGES = 2
ECHO = ("You said: \"{}\". This answer comes from the echo provider; set "
        "resumable_ws.llm_provider = openai to talk to a model.")


@pytest.fixture(scope="module")
def cluster():
    # A small send buffer makes a slow consumer cheap to produce.
    yield from running_cluster(**{"resumable_ws.llm_provider": "echo", "resumable_ws.max_send_buffer": "'64kB'"})


def echo_pieces(message):
    return len(re.findall(r"\S+ *", ECHO.format(message)))


def scrape(cluster):
    """(samples by (name, labels), content type) from GET /metrics."""
    url = f"http://127.0.0.1:{cluster.ws_port}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        content_type = response.headers["content-type"]
        text = response.read().decode()
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types, content_type


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def stats(cluster):
    conn = cluster.connect_sql()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM resumable_ws.stats")
            names = [d[0] for d in cur.description]
            return dict(zip(names, cur.fetchone()))
    finally:
        conn.close()


async def read_until(client, session_head, done_count=0):
    """Reads events after the last one read up to session_head (and until
    done_count assistant_done were seen); returns the frames."""
    frames = []
    last = getattr(client, "last_id", 0)
    dones = 0
    while last < session_head or dones < done_count:
        frame = await client.recv()
        frames.append(frame)
        if frame["type"] == "event":
            assert frame["id"] == last + 1
            last = client.last_id = frame["id"]
            if frame["event_type"] == "assistant_done":
                dones += 1
    return frames


def heads(cluster, sessions):
    rows = cluster.sql("SELECT id::text, last_event_id FROM resumable_ws.ws_sessions WHERE id::text = ANY(%s)",
                       (sessions,))
    return dict(rows)


@run
async def test_metrics_and_stats_agree_with_a_known_workload(cluster):
    before, _, _ = scrape(cluster)
    assert value(before, "rws_connections_accepted_total") == 0

    # N clients, M messages each, every one answered by the echo provider.
    clients = []
    for _ in range(N_CLIENTS):
        c = await cluster.connect()
        await c.ready()
        clients.append(c)
    messages = []
    for i, c in enumerate(clients):
        for m in range(M_MESSAGES):
            text = f"client {i} message {m}"
            messages.append(text)
            await c.user_message(text)
    for c in clients:
        # acks, and both answers (events 1..n, whatever the delta coalescing).
        await read_until(c, 0, done_count=M_MESSAGES)

    # K publishes from SQL: 3 committed alone, 1 rolled back, and in one
    # transaction 1 kept and 1 inside a rolled-back savepoint.
    s0 = clients[0].session_id
    for _ in range(3):
        cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{}')", (s0,))
    conn = cluster.connect_sql()
    with conn.cursor() as cur:
        cur.execute("SELECT resumable_ws.publish(%s, 'note', '{}')", (s0,))
        conn.rollback()
        cur.execute("SELECT resumable_ws.publish(%s, 'note', '{}')", (s0,))
        cur.execute("SAVEPOINT s")
        cur.execute("SELECT resumable_ws.publish(%s, 'note', '{}')", (s0,))
        cur.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
    conn.close()
    published = 4

    sessions = [c.session_id for c in clients]
    head = heads(cluster, sessions)
    # Everyone catches up with its session (client 0 gets the publishes).
    await read_until(clients[0], head[s0])

    # A replay of client 0's session from the start.
    replay = await cluster.connect(user=clients[0].user, session_id=s0, last_event_id=0)
    await replay.ready()
    await replay.events(0, head[s0])
    assert (await replay.expect("replay_done"))["last_event_id"] == head[s0]

    # A refused token.
    bad = await cluster.connect(token=make_token(str(uuid.uuid4()), secret="wrong-secret-wrong-secret-wrong-1"))
    code, _ = await bad.close_code()
    assert code == 4001

    # A slow consumer: owed 5.7 MB of pongs it never reads (over 64 kB).
    raw = RawClient(cluster, make_token(str(uuid.uuid4())), receive_buffer=4096)
    raw_session = json.loads(next(raw.frames())[1])["session_id"]
    big_ping = json.dumps({"type": "ping", "pad": "p" * 60000}).encode()
    for _ in range(95):
        raw.send_frame(1, big_ping)
    assert raw.close_code(timeout=15) == 4010
    raw.close()

    open_clients = clients + [replay]
    # The gauge follows the worker's loop: wait for the closed ones to go.
    cluster.wait_for(lambda: value(scrape(cluster)[0], "rws_connections") == len(open_clients),
                     what="rws_connections to count the open connections")
    samples, types, content_type = scrape(cluster)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"

    # The truth, from the database.
    all_sessions = sessions + [raw_session]
    head = heads(cluster, all_sessions)
    generation_events = cluster.sql(
        "SELECT count(*) FROM resumable_ws.ws_events WHERE session_id::text = ANY(%s) "
        "AND event_type LIKE 'assistant%%'", (sessions,))[0][0]
    assert sum(head[s] for s in sessions) == N_CLIENTS * M_MESSAGES + generation_events + published

    assert types["rws_connections"] == "gauge"
    assert types["rws_events_appended"] == "counter"
    assert types["rws_commit_duration_seconds"] == "histogram"
    assert value(samples, "rws_events_appended_total", source="client") == N_CLIENTS * M_MESSAGES
    assert value(samples, "rws_events_appended_total", source="publish") == published
    assert value(samples, "rws_events_appended_total", source="generation") == generation_events
    # Each connection counts: every event of every session once, plus the replay.
    assert value(samples, "rws_events_delivered_total") == sum(head[s] for s in sessions) + head[s0]
    assert value(samples, "rws_replays_total") == 1
    assert value(samples, "rws_replayed_events_total") == head[s0]
    assert value(samples, "rws_connections_accepted_total") == N_CLIENTS + 2  # + replay + slow consumer
    assert value(samples, "rws_connections_refused_total", reason="unauthorized") == 1
    assert sum(v for (n, _), v in samples.items() if n == "rws_connections_refused_total") == 1
    assert value(samples, "rws_auth_failures_total", reason="bad_signature") == 1
    assert sum(v for (n, _), v in samples.items() if n == "rws_auth_failures_total") == 1
    assert value(samples, "rws_slow_consumer_closes_total") == 1
    assert value(samples, "rws_generations_total", outcome="completed") == N_CLIENTS * M_MESSAGES
    assert sum(v for (n, _), v in samples.items() if n == "rws_generations_total") == N_CLIENTS * M_MESSAGES
    assert value(samples, "rws_upstream_tokens_total") == sum(echo_pieces(m) for m in messages)
    assert value(samples, "rws_time_to_first_token_seconds_count") == N_CLIENTS * M_MESSAGES
    assert value(samples, "rws_time_to_first_token_seconds_bucket", le="+Inf") == N_CLIENTS * M_MESSAGES
    assert value(samples, "rws_llm_queue_length") == 0
    assert value(samples, "rws_workers") == cluster.workers
    # Client frames: the user messages and the slow consumer's pings until
    # it was closed (what arrives after is ignored), at least.
    assert value(samples, "rws_frames_received_total") >= N_CLIENTS * M_MESSAGES + 2
    assert value(samples, "rws_bytes_received_total") >= 2 * len(big_ping)
    assert value(samples, "rws_frames_sent_total") >= value(samples, "rws_events_delivered_total")
    for histogram in ("rws_commit_duration_seconds", "rws_pass_duration_seconds"):
        count = value(samples, histogram + "_count")
        assert count > 0 and value(samples, histogram + "_bucket", le="+Inf") == count
        assert value(samples, histogram + "_sum") > 0

    # The view says the same. (Passes and commits go on in the background:
    # those may only have grown.)
    row = stats(cluster)
    after, _, _ = scrape(cluster)
    exact = {
        "connections": "rws_connections",
        "connections_accepted": "rws_connections_accepted_total",
        "events_delivered": "rws_events_delivered_total",
        "replays": "rws_replays_total",
        "replayed_events": "rws_replayed_events_total",
        "slow_consumer_closes": "rws_slow_consumer_closes_total",
        "upstream_tokens": "rws_upstream_tokens_total",
        "llm_queue_length": "rws_llm_queue_length",
        "frames_received": "rws_frames_received_total",
        "frames_sent": "rws_frames_sent_total",
        "bytes_received": "rws_bytes_received_total",
        "bytes_sent": "rws_bytes_sent_total",
        "workers": "rws_workers",
        "time_to_first_token_count": "rws_time_to_first_token_seconds_count",
    }
    for column, metric in exact.items():
        assert row[column] == value(samples, metric) == value(after, metric), column
    for source in ("client", "generation", "publish"):
        assert row[f"events_appended_{source}"] == value(samples, "rws_events_appended_total", source=source)
    for labelled, metric, label in (("connections_refused", "rws_connections_refused_total", "reason"),
                                    ("auth_failures", "rws_auth_failures_total", "reason"),
                                    ("generations", "rws_generations_total", "outcome")):
        total = 0
        for (name, labels), v in samples.items():
            if name == metric:
                assert row[f"{labelled}_{dict(labels)[label]}"] == v, (labelled, labels)
                total += v
        assert row[labelled] == total, labelled
    for column, metric in (("commit", "rws_commit_duration_seconds"), ("pass", "rws_pass_duration_seconds")):
        assert value(samples, metric + "_count") <= row[f"{column}_count"] <= value(after, metric + "_count")
        assert value(samples, metric + "_sum") <= row[f"{column}_seconds_sum"] + 1e-9
    assert row["worker_started_at"].timestamp() == value(samples, "rws_worker_start_time_seconds")

    # connections(): exactly the open connections, with their user, session
    # and cursor (cursor = the newest event each was sent).
    workers = set(cluster.worker_pids())
    expected = sorted((c.user, c.session_id, head[c.session_id]) for c in open_clients)
    rows = cluster.sql("SELECT worker_pid, user_id::text, session_id::text, cursor, queued_bytes, "
                       "connected_at, remote_addr FROM resumable_ws.connections()")
    assert sorted((r[1], r[2], r[3]) for r in rows) == expected
    for r in rows:
        assert r[0] in workers
        assert r[4] >= 0
        assert r[6] == "127.0.0.1"
    assert len(rows) == row["connections"]

    for c in open_clients:
        await c.close()
    cluster.wait_for(lambda: not cluster.sql("SELECT 1 FROM resumable_ws.connections()"),
                     what="connections() to empty")


def test_privileges_stats_for_everyone_connections_for_pg_read_all_stats(cluster):
    cluster.sql("CREATE ROLE rws_metrics_plain LOGIN")
    cluster.sql("GRANT USAGE ON SCHEMA resumable_ws TO rws_metrics_plain")
    try:
        conn = cluster.connect_sql()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET ROLE rws_metrics_plain")
            cur.execute("SELECT connections, events_appended_publish FROM resumable_ws.stats")
            assert cur.fetchone() is not None
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT * FROM resumable_ws.connections()")
            cur.execute("RESET ROLE")
            cur.execute("GRANT pg_read_all_stats TO rws_metrics_plain")
            cur.execute("SET ROLE rws_metrics_plain")
            cur.execute("SELECT count(*) FROM resumable_ws.connections()")
            cur.execute("RESET ROLE")
        conn.close()
    finally:
        cluster.sql("REVOKE USAGE ON SCHEMA resumable_ws FROM rws_metrics_plain")
        cluster.sql("DROP ROLE rws_metrics_plain")


def test_metrics_only_for_metrics_addresses(cluster):
    assert cluster.http("/metrics")[0] == 200
    assert cluster.http("/metrics", method="POST")[0] == 405
    # A typo is refused when set, and the setting keeps its value.
    with pytest.raises(psycopg2.Error, match="metrics_addresses"):
        cluster.sql("ALTER SYSTEM SET resumable_ws.metrics_addresses = '127.0.0.1/32,localhost'")
    try:
        cluster.reload(**{"resumable_ws.metrics_addresses": "10.0.0.0/8"})
        cluster.wait_for(lambda: cluster.http("/metrics")[0] == 403, what="a 403 for 127.0.0.1")
        cluster.reload(**{"resumable_ws.metrics_addresses": ""})
        cluster.wait_for(lambda: cluster.http("/metrics")[0] == 403, what="a 403 when the list is empty")
        cluster.reload(**{"resumable_ws.metrics_addresses": "::ffff:127.0.0.0/104"})
        cluster.wait_for(lambda: cluster.http("/metrics")[0] == 200, what="127.0.0.1 in ::ffff:127.0.0.0/104")
    finally:
        cluster.sql("ALTER SYSTEM RESET resumable_ws.metrics_addresses")
        cluster.sql("SELECT pg_reload_conf()")
    cluster.wait_for(lambda: cluster.http("/metrics")[0] == 200, what="the default list again")
