"""Does autovacuum keep up with the worker? Appends N events (default
1,000,000) through the worker, as user messages from 100 sessions, and prints
over time what pg_stat_user_tables says of ws_sessions and ws_events next to
what is really there (pgstattuple): dead row versions, table size, and how
often autovacuum and autoanalyze ran. Asserts nothing.

    /usr/bin/python3 bench/bench_autovacuum.py [N]               this tree (installed)
    /usr/bin/python3 bench/bench_autovacuum.py [N] --baseline REF   REF first, then this tree

With --baseline, REF (a commit, e.g. HEAD~3) is built in a temporary git
worktree and installed, measured, and then this tree is installed again and
measured, in one run (as root, after `bash scripts/install-deps.sh --test`).
Every append updates its session's row (last_event_id): HOT updates whose dead
versions page pruning and vacuum must reclaim.
"""
import asyncio
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))
from harness import Cluster  # noqa: E402
from baseline import side_by_side  # noqa: E402

SESSIONS = 100
IN_FLIGHT = 20         # unacknowledged messages per connection
SAMPLE_EVERY = 5.0     # seconds

STATS = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, autoanalyze_count,
       -- a scan of the whole table: only the small one, whose rows every append updates
       CASE relname WHEN 'ws_sessions' THEN (pgstattuple('resumable_ws.ws_sessions')).dead_tuple_count END,
       pg_relation_size(format('resumable_ws.%I', relname))
  FROM pg_stat_user_tables WHERE schemaname = 'resumable_ws' AND relname IN ('ws_sessions', 'ws_events')
 ORDER BY relname DESC"""


async def append(cluster, total, progress):
    """total user messages over SESSIONS connections, IN_FLIGHT at a time each."""
    clients = [await cluster.new_session() for _ in range(SESSIONS)]
    per_client = total // SESSIONS

    async def chat(client):
        sent = acked = 0
        while acked < per_client:
            while sent < per_client and sent - acked < IN_FLIGHT:
                await client.send({"type": "user_message", "content": f"m{sent}",
                                   "idempotency_key": str(uuid.uuid4())})
                sent += 1
            frame = await client.recv(timeout=60)
            if frame["type"] == "ack":
                acked += 1
                progress[0] += 1
    await asyncio.gather(*(chat(c) for c in clients))
    for c in clients:
        await c.close()


async def measure(label, total):
    cluster = Cluster(**{"resumable_ws.max_messages_per_second": 100000, "max_connections": 150,
                         "autovacuum_naptime": "'5s'"})
    cluster.start()
    try:
        cluster.sql("CREATE EXTENSION pgstattuple")
        progress = [0]
        task = asyncio.ensure_future(append(cluster, total, progress))
        started = time.monotonic()
        print(f"\n{label}: {total:,} events over {SESSIONS} sessions")
        print(f"{'s':>5} {'events':>9} | {'table':<11} {'ins (stat)':>10} {'upd (stat)':>10} {'hot':>9} "
              f"{'dead (stat)':>11} {'dead (real)':>11} {'size kB':>9} {'vacuums':>7} {'analyzes':>8}")
        peak_dead = 0
        while True:
            await asyncio.wait([task], timeout=SAMPLE_EVERY)
            done = task.done()
            elapsed = time.monotonic() - started
            for name, ins, upd, hot, dead, vacuums, analyzes, real_dead, size in cluster.sql(STATS):
                if name == "ws_sessions":
                    peak_dead = max(peak_dead, real_dead)
                real = "" if real_dead is None else f"{real_dead:,}"
                print(f"{elapsed:5.0f} {progress[0]:9,} | {name:<11} {ins:10,} {upd:10,} {hot:9,} {dead:11,} "
                      f"{real:>11} {size // 1024:9,} {vacuums:7} {analyzes:8}")
            if done:
                task.result()
                break
        print(f"{label}: {total / (time.monotonic() - started):,.0f} events/s; "
              f"most dead row versions in ws_sessions at a sample: {peak_dead:,}")
    finally:
        cluster.destroy()


def main():
    args = sys.argv[1:]

    def measure_once(label):
        asyncio.run(measure(label, int(args[0]) if args else 1_000_000))

    side_by_side(args, measure_once)


if __name__ == "__main__":
    main()
