"""Benchmarks for resumable_ws. Prints figures; asserts nothing.

    /usr/bin/python3 bench/bench.py            (as root, after `make install`)
    /usr/bin/python3 bench/bench.py --baseline REF [--rounds N]
                                               REF and this tree in turn (bench/baseline.py)

Starts its own cluster (tests' harness), measures, and stops it:
  1. publish -> delivery: events/s from SQL publish() to a WebSocket client,
     one event per transaction and 50 per transaction;
  2. replay: events/s replaying 10,000 events to a fresh connection;
  3. user_message round trips: acks/s for 50 clients, and commits per ack
     (the worker commits once per loop pass for everything queued);
  4. idle memory per connection: the worker's RSS growth for 1,000 connections.
"""
import asyncio
import os
import resource
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "e2e"))
from harness import Cluster  # noqa: E402
from baseline import side_by_side  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_transactions(cluster):
    """Transactions that wrote anything, by their xids: pg_stat_database's
    counters are flushed lazily and would undercount the worker."""
    return int(cluster.sql("SELECT pg_current_xact_id()::text")[0][0])


def run_writers(cluster, session, total, per_transaction, writers=4):
    """Publishes total events from several connections, per_transaction per
    commit; returns once every writer is done."""
    def writer():
        conn = cluster.connect_sql()
        with conn.cursor() as cur:
            for _ in range(total // writers // per_transaction):
                for _ in range(per_transaction):
                    cur.execute("SELECT resumable_ws.publish(%s, 'bench', '{\"x\": 1}')", (session,))
                conn.commit()
        conn.close()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total // writers // per_transaction * per_transaction * writers


def bench_publish_only(cluster, total, per_transaction):
    """The same writers with nobody connected: what publishing alone costs."""
    session = cluster.sql("SELECT resumable_ws.create_session(gen_random_uuid())")[0][0]
    started = time.perf_counter()
    count = run_writers(cluster, session, total, per_transaction)
    return count / (time.perf_counter() - started)


async def bench_publish(cluster, total, per_transaction):
    client = await cluster.new_session()
    expected = total // 4 // per_transaction * per_transaction * 4
    started = time.perf_counter()
    writers = asyncio.get_running_loop().run_in_executor(
        None, run_writers, cluster, client.session_id, total, per_transaction)
    await client.events(0, expected, timeout=120)
    elapsed = time.perf_counter() - started
    await writers
    await client.close()
    return expected / elapsed


async def bench_replay(cluster, count):
    client = await cluster.connect()
    await client.ready()
    cluster.sql("SELECT resumable_ws.publish(%s, 'bench', jsonb_build_object('i', i, 'text', "
                "'some realistic payload text of a chat message')) FROM generate_series(1, %s) i",
                (client.session_id, count))
    await client.events(0, count, timeout=60)
    started = time.perf_counter()
    replay = await cluster.connect(user=client.user, session_id=client.session_id, last_event_id=0)
    await replay.ready()
    await replay.events(0, count, timeout=60)
    await replay.expect("replay_done")
    elapsed = time.perf_counter() - started
    await replay.close()
    await client.close()
    return count / elapsed


async def bench_user_messages(cluster, clients_count, per_client):
    clients = []
    for _ in range(clients_count):
        c = await cluster.connect()
        await c.ready()
        clients.append(c)

    async def chat(client):
        for n in range(per_client):
            key = await client.user_message(f"message {n}")
            while True:
                frame = await client.recv(timeout=30)
                if frame["type"] == "ack" and frame["idempotency_key"] == key:
                    break

    before = write_transactions(cluster)
    started = time.perf_counter()
    await asyncio.gather(*(chat(c) for c in clients))
    elapsed = time.perf_counter() - started
    worker_commits = write_transactions(cluster) - before - 1
    for c in clients:
        await c.close()
    total = clients_count * per_client
    return total / elapsed, worker_commits / total


async def bench_idle_memory(cluster, count):
    pid = cluster.worker_pid()
    before = rss_kib(pid)
    clients = []
    for _ in range(count):
        c = await cluster.connect()
        await c.ready()
        clients.append(c)
    await asyncio.sleep(1)
    after = rss_kib(pid)
    for c in clients:
        await c.close()
    return before, after, (after - before) * 1024 / count


async def measure(label):
    print(f"--- {label}", flush=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cluster = Cluster(max_connections=60)
    cluster.start()
    try:
        for per_transaction, total in ((1, 4000), (50, 40000)):
            rate = bench_publish_only(cluster, total, per_transaction)
            print(f"publish alone (no client), {per_transaction} event(s)/transaction, 4 writers: "
                  f"{rate:,.0f} events/s")
        rate = await bench_publish(cluster, 4000, 1)
        print(f"publish -> delivery, 1 event/transaction, 4 writers: {rate:,.0f} events/s")
        rate = await bench_publish(cluster, 40000, 50)
        print(f"publish -> delivery, 50 events/transaction, 4 writers: {rate:,.0f} events/s")
        rate = await bench_replay(cluster, 10000)
        print(f"replay of 10,000 events: {rate:,.0f} events/s")
        rate, per_ack = await bench_user_messages(cluster, 50, 40)
        print(f"user_message round trips, 50 clients: {rate:,.0f} acks/s, "
              f"{per_ack:.2f} database commits per ack")
        before, after, per_connection = await bench_idle_memory(cluster, 1000)
        print(f"idle memory: worker RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
              f"for 1,000 connections = {per_connection / 1024:.1f} KiB per connection")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    side_by_side(sys.argv[1:], lambda label: asyncio.run(measure(label)))
