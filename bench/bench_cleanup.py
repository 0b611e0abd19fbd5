"""What does resumable_ws.cleanup() cost on a big log? Loads N events
(default 10,000,000) into S sessions (default 100,000, so N/S events each),
makes a share of the sessions (default half) idle for 8 days, then runs
cleanup('7 days') while one client streams events published to a session of
its own, and prints: how long cleanup took, what it deleted, the WAL it wrote,
table sizes before and after, a second run's cost with nothing to delete, and
the publish-to-delivery latency the streaming client saw meanwhile. Asserts
only that what should go went.

    /usr/bin/python3 bench/bench_cleanup.py [N [S [OLD_SHARE]]]     this tree (installed)

The log is loaded by SQL with the wake trigger off (a bulk load, not the
worker's path); the latency figures are for the worker's own path.
"""
import asyncio
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))
from harness import Cluster  # noqa: E402

LOAD = """
ALTER TABLE resumable_ws.ws_events DISABLE TRIGGER ws_events_wake_worker;
INSERT INTO resumable_ws.ws_sessions (id, user_id, last_event_id, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), {per_session},
       CASE WHEN i % 1000 < {old_per_mille} THEN now() - interval '8 days' ELSE now() END
  FROM generate_series(1, {sessions}) i;
INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload)
SELECT s.id, n, CASE WHEN n % 10 = 1 THEN 'user_message' ELSE 'assistant_delta' END,
       jsonb_build_object('content', repeat('x', 40), 'n', n)
  FROM resumable_ws.ws_sessions s CROSS JOIN generate_series(1, {per_session}) n;
ALTER TABLE resumable_ws.ws_events ENABLE TRIGGER ws_events_wake_worker;
"""

SIZES = """
SELECT relname, pg_size_pretty(pg_total_relation_size(format('resumable_ws.%I', relname)::regclass))
  FROM pg_stat_user_tables WHERE schemaname = 'resumable_ws' AND relname IN ('ws_sessions', 'ws_events')
 ORDER BY relname DESC"""


def timed(cluster, query):
    lsn = cluster.sql("SELECT pg_current_wal_lsn()")[0][0]
    started = time.monotonic()
    result = cluster.sql(query)
    elapsed = time.monotonic() - started
    wal = cluster.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,))[0][0]
    return result, elapsed, int(wal)


async def stream_during(cluster, work):
    """Runs work() in a thread while a client of a fresh session receives an
    event published every 20 ms; returns work's result and the latencies."""
    client = await cluster.new_session()
    publisher = cluster.connect_sql()
    publisher.autocommit = True
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", work()))
    thread.start()
    latencies = []
    n = 0
    while thread.is_alive() or n < 10:
        sent = time.monotonic()
        with publisher.cursor() as cur:
            cur.execute("SELECT resumable_ws.publish(%s, 'tick', '{}')", (client.session_id,))
        n += 1
        await client.events(n - 1, n, timeout=60)
        latencies.append(time.monotonic() - sent)
        await asyncio.sleep(0.02)
    thread.join()
    publisher.close()
    await client.close()
    return result["value"], latencies


def main():
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    old_share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
    per_session = total // sessions
    cluster = Cluster(**{"shared_buffers": "'1GB'", "max_wal_size": "'8GB'", "checkpoint_timeout": "'30min'"})
    try:
        cluster.start()
        cluster.wait_healthy()
        print(f"loading {per_session * sessions:,} events into {sessions:,} sessions "
              f"({old_share:.0%} idle for 8 days) ...", flush=True)
        started = time.monotonic()
        cluster.sql(LOAD.format(per_session=per_session, sessions=sessions, old_per_mille=int(old_share * 1000)))
        cluster.sql("VACUUM ANALYZE resumable_ws.ws_sessions")
        cluster.sql("VACUUM ANALYZE resumable_ws.ws_events")
        cluster.sql("CHECKPOINT")
        print(f"  loaded in {time.monotonic() - started:.0f} s; sizes: {cluster.sql(SIZES)}")
        expected = cluster.sql("SELECT count(*) FROM resumable_ws.ws_sessions "
                               "WHERE updated_at < now() - interval '7 days'")[0][0]

        (result, elapsed, wal), latencies = asyncio.run(
            stream_during(cluster, lambda: timed(cluster, "SELECT resumable_ws.cleanup('7 days')")))
        deleted = result[0][0]
        assert deleted == expected, (deleted, expected)
        remaining = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events e WHERE NOT EXISTS "
                                "(SELECT 1 FROM resumable_ws.ws_sessions s WHERE s.id = e.session_id)")[0][0]
        assert remaining == 0
        print(f"cleanup('7 days'): {deleted:,} sessions and {deleted * per_session:,} events in {elapsed:.1f} s "
              f"({deleted * per_session / elapsed:,.0f} events/s), WAL {wal / 2**20:,.0f} MiB")
        latencies.sort()
        print(f"  meanwhile, publish->delivery on another session: {len(latencies)} events, "
              f"median {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        _, elapsed, wal = timed(cluster, "SELECT resumable_ws.cleanup('7 days')")
        print(f"  a second run with nothing to delete: {elapsed * 1000:.0f} ms (a scan of ws_sessions)")
        cluster.sql("VACUUM resumable_ws.ws_events")
        print(f"  sizes after cleanup and VACUUM (space reused, not returned): {cluster.sql(SIZES)}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
