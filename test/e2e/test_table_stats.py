"""Autovacuum sees the workers' writes: each worker reports its table
statistics while it runs (as a backend does when it goes idle), so
pg_stat_user_tables, and with it autovacuum and autoanalyze, count the rows
it inserts and updates on the hottest tables."""
import asyncio

from conftest import run
from harness import TIMEOUT

MESSAGES_PER_CLIENT = 80
CLIENTS = 3


def table_stats(cluster, table):
    return cluster.sql("SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                       "WHERE schemaname = 'resumable_ws' AND relname = %s", (table,))[0]


@run
async def test_the_worker_reports_its_inserts_and_updates_while_it_runs(cluster):
    before = {t: table_stats(cluster, t) for t in ("ws_events", "ws_sessions", "ws_idempotency_keys")}
    clients = [await cluster.new_session() for _ in range(CLIENTS)]

    async def chat(client):
        for n in range(MESSAGES_PER_CLIENT):
            key = await client.user_message(f"message {n}")
            while (frame := await client.recv())["type"] != "ack":
                assert frame["type"] == "event", frame
            assert frame["idempotency_key"] == key
    await asyncio.gather(*(chat(c) for c in clients))
    acked = MESSAGES_PER_CLIENT * CLIENTS

    # Reported within a couple of seconds (pgstat flushes at most once a
    # second), while the worker keeps running.
    pids = cluster.worker_pids()

    def grown():
        events = table_stats(cluster, "ws_events")[0] - before["ws_events"][0]
        keys = table_stats(cluster, "ws_idempotency_keys")[0] - before["ws_idempotency_keys"][0]
        heads = table_stats(cluster, "ws_sessions")[1] - before["ws_sessions"][1]
        return events >= acked and keys >= acked and heads >= acked and (events, keys, heads)
    cluster.wait_for(grown, timeout=TIMEOUT, what=f"pg_stat_user_tables to count {acked} messages")
    assert cluster.worker_pids() == pids

    # The head updates stay HOT (no index on last_event_id or updated_at):
    # nothing for vacuum to clean in the indexes.
    _, updates, hot = (a - b for a, b in zip(table_stats(cluster, "ws_sessions"), before["ws_sessions"]))
    assert hot >= 0.9 * updates, (hot, updates)
    for c in clients:
        await c.close()
