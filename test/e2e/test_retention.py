"""Retention scheduled by pg_cron (Debian's postgresql-15-cron): the README's
one-liner runs resumable_ws.cleanup('7 days') in the cron worker, deletes
sessions idle longer than that with everything of theirs, and keeps sessions
that have a live connection, while clients of other sessions keep receiving
a dense log."""
import asyncio
import time
import uuid

import pytest

from conftest import run, running_cluster

# pg_cron 1.4 (Debian 12) schedules by the minute: the first run comes at the
# next full minute.
CRON_WAIT = 75
SCHEDULE = "SELECT cron.schedule('rws-retention', '* * * * *', $$SELECT resumable_ws.cleanup('7 days')$$)"


@pytest.fixture(scope="module")
def cluster():
    yield from running_cluster(**{
        "shared_preload_libraries": "'pg_cron,resumable_ws'",
        "cron.database_name": "'postgres'",
        # The cluster listens on a socket only: cron jobs run in background
        # workers rather than over a libpq connection.
        "cron.use_background_workers": "on",
        "max_worker_processes": 16,
    })


def age_session(cluster, session_id, days):
    cluster.sql("UPDATE resumable_ws.ws_sessions SET updated_at = now() - make_interval(days => %s) WHERE id = %s",
                (days, session_id))


def rows_of(cluster, session_id):
    return {table: cluster.sql(f"SELECT count(*) FROM resumable_ws.{table} WHERE session_id = %s",
                               (session_id,))[0][0]
            for table in ("ws_events", "ws_idempotency_keys")} | {
        "ws_sessions": cluster.sql("SELECT count(*) FROM resumable_ws.ws_sessions WHERE id = %s",
                                   (session_id,))[0][0]}


@run
async def test_pg_cron_runs_cleanup_while_other_sessions_stream(cluster):
    cluster.sql("CREATE EXTENSION pg_cron")

    # idle: old, nobody connected, with messages (events and idempotency keys)
    idle_client = await cluster.new_session()
    for i in range(3):
        await idle_client.user_message(f"old message {i}")
    frames = [await idle_client.recv() for _ in range(6)]
    assert sorted(f["type"] for f in frames) == ["ack"] * 3 + ["event"] * 3
    idle = idle_client.session_id
    await idle_client.close()
    cluster.wait_for(lambda: cluster.sql("SELECT count(*) FROM resumable_ws.ws_live_connections "
                                         "WHERE session_id = %s", (idle,))[0][0] == 0,
                     what="the idle session's connection row to go")
    # closed: old and closed
    closed = cluster.sql("SELECT resumable_ws.create_session(%s)", (str(uuid.uuid4()),))[0][0]
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{}')", (closed,))
    cluster.sql("SELECT resumable_ws.close_session(%s)", (closed,))
    # watched: old, but a client is connected to it
    watcher = await cluster.new_session()
    watched = watcher.session_id
    # busy: recent, a client reads while events are published all along
    reader = await cluster.new_session()
    busy = reader.session_id
    # young: recent, nobody connected
    young = cluster.sql("SELECT resumable_ws.create_session(%s)", (str(uuid.uuid4()),))[0][0]

    for session_id in (idle, closed, watched):
        age_session(cluster, session_id, 8)
    age_session(cluster, young, 6)
    assert rows_of(cluster, idle) == {"ws_events": 3, "ws_idempotency_keys": 3, "ws_sessions": 1}

    cluster.sql(SCHEDULE)
    published = 0
    received = []
    deadline = time.monotonic() + CRON_WAIT
    runs = []
    while not runs:
        assert time.monotonic() < deadline, "pg_cron did not run the job in time"
        cluster.sql("SELECT resumable_ws.publish(%s, 'tick', jsonb_build_object('n', %s))", (busy, published))
        published += 1
        received += await reader.events(len(received), published)
        runs = cluster.sql("SELECT status, return_message FROM cron.job_run_details d "
                           "JOIN cron.job j USING (jobid) WHERE j.jobname = 'rws-retention' AND "
                           "d.status IN ('succeeded', 'failed')")
        await asyncio.sleep(0.2)
    assert runs[0] == ("succeeded", "SELECT 1"), runs
    cluster.sql("SELECT cron.unschedule('rws-retention')")

    # What was idle for more than 7 days is gone with everything of its own.
    for session_id in (idle, closed):
        assert rows_of(cluster, session_id) == {"ws_events": 0, "ws_idempotency_keys": 0, "ws_sessions": 0}
    assert cluster.sql("SELECT count(*) FROM resumable_ws.ws_generations WHERE session_id IN (%s, %s)",
                       (idle, closed))[0][0] == 0
    # The rest is untouched and still serves.
    for session_id in (watched, busy, young):
        assert rows_of(cluster, session_id)["ws_sessions"] == 1
    cluster.sql("SELECT resumable_ws.publish(%s, 'still', '{}')", (watched,))
    assert [e["event_type"] for e in await watcher.events(0, 1)] == ["still"]
    published += 1
    cluster.sql("SELECT resumable_ws.publish(%s, 'tick', jsonb_build_object('n', %s))", (busy, published - 1))
    received += await reader.events(len(received), published)
    assert [e["payload"]["n"] for e in received] == list(range(published))

    # A client coming back to a cleaned-up session is told it is gone.
    gone = await cluster.connect(user=idle_client.user, session_id=idle)
    code, frames = await gone.close_code()
    assert code == 4004 and frames[-1]["code"] == "session_not_found"
    await watcher.close()
    await reader.close()
