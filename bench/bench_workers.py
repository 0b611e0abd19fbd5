#!/usr/bin/python3
"""1 worker against 2 (resumable_ws.workers, issue 13): acks/s and answers/s.

    /usr/bin/python3 bench/bench_workers.py [--rounds N] [--only acks,answers]
                                            [--workers 1,2] [--window W] [--perf] [--waits] [--fresh]

Each round measures every scenario once per worker count, alternating (1, 2
in odd rounds, 2, 1 in even ones, so a machine that gets busier or quieter
during the run weighs on both). Every measurement starts its own cluster
(bench_hot_path.serving: fsync and synchronous_commit on) with that many
workers, waits until every worker accepts connections, and prints the load
average before it, how the connections were spread over the workers
(resumable_ws.connections()), the CPU of every worker process summed (and
each one's), this client's and the upstream's, and the whole machine's busy
cores (others = what the rest of a shared machine took meanwhile). Before
the clients come, each cluster gets 10,000 earlier sessions of 10 answered
messages, analyzed (see prefill(); --fresh leaves the tables empty). Just before the window: the load average
and a write + fdatasync beside the data (a commit's wait on this disk);
after it, sequential scans of the extension's tables that read > 1000 rows.
--perf records every worker with perf (bench_hot_path.Perf), --waits samples
their wait events (class Waits; costs a backend's CPU). A summary table
(ranges over the rounds) ends the run.

  acks     100 clients, each on its own session, llm_provider none: each
           sends user_message frames with idempotency keys, the next as soon
           as one is acked (W in flight, default 1), 150 each after 10 of
           warm-up (15,000 measured). acks/s, send -> ack p50/p99, the
           workers' and the client's CPU. Every ack must carry its key, a new
           event id and duplicate false; a missing ack fails the run.
           resumable_ws.max_messages_per_second is raised to 100,000 (the
           default 50 per connection would close the clients with 1008).
  answers  50 sessions ask at once, 40 questions each one after another
           (2,000 answers of 200 pieces written at once by
           bench/paced_upstream.py, as bench_hot_path's `answers`): answers/s
           (wall), answers per worker CPU-second, commits per answer, the
           upstream's and the client's CPU. Every answer's text is checked.

The machine running this also runs the client and the upstream: with 2
cores, a second worker can only help as far as a core is free; the cores
used by everyone are printed next to each figure.
"""
import asyncio
import collections
import contextlib
import json
import os
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from baseline import take_option  # noqa: E402
import bench_hot_path  # noqa: E402
from bench_hot_path import (Meter, Perf, Upstream, close_all, cpu_seconds, open_chats, open_clients,  # noqa: E402
                            percentile, serving, xid)

SCENARIOS = ("acks", "answers")
SETTLE_TIMEOUT = 30  # seconds for every worker to be up and accepting


# --- the workers ------------------------------------------------------------------

def worker_pids(cluster):
    rows = cluster.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'resumable_ws worker' ORDER BY pid")
    return [r[0] for r in rows]


def spread(cluster):
    """{worker pid: connections} from the workers' shared memory."""
    return dict(cluster.sql("SELECT worker_pid, count(*) FROM resumable_ws.connections() GROUP BY 1 ORDER BY 1"))


async def all_workers_accepting(cluster, workers):
    """The worker pids once `workers` of them run and each holds a
    connection: /healthz answers as soon as one worker is up, and a
    connection the kernel hashes to a worker not yet listening would go to
    another one, skewing the spread."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while len(worker_pids(cluster)) < workers:
        assert time.monotonic() < deadline, f"only {worker_pids(cluster)} of {workers} workers started"
        await asyncio.sleep(0.05)
    noop = lambda client, payload: None  # noqa: E731
    probes = []
    try:
        while len(spread(cluster)) < workers:
            assert time.monotonic() < deadline, f"connections reach only the workers {spread(cluster)}"
            probes += await open_clients(cluster.ws_port, [noop] * 4)
        return worker_pids(cluster)
    finally:
        close_all(probes)
        # Wait until the probes are gone, so the spread printed later is the benchmark's.
        while spread(cluster) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def spread_line(cluster, pids):
    counts = spread(cluster)
    parts = [f"pid {pid}: {counts.get(pid, 0)}" for pid in pids]
    parts += [f"pid {pid} (not a worker seen at start!): {n}" for pid, n in counts.items() if pid not in pids]
    return "    connections per worker: " + ", ".join(parts)


def machine_busy():
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def per_worker_cpu(pids):
    return [cpu_seconds(pid) for pid in pids]


def cores_line(wall, busy, before, after, client, upstream=None):
    each = ", ".join(f"{(b - a) / wall:.2f}" for a, b in zip(before, after))
    total = sum(after) - sum(before)
    line = (f"    workers CPU {total:.2f} s = {total / wall:.2f} cores (each: {each}); client "
            f"{client / wall:.2f} cores")
    used = total + client
    if upstream is not None:
        line += f"; upstream {upstream / wall:.2f} cores"
        used += upstream
    return (line + f"; all of them {used / wall:.2f} of {os.cpu_count()} cores, the whole machine "
            f"{busy / wall:.2f} (others {max(0.0, busy - used) / wall:.2f})")


def check_log(cluster, pids):
    """Crashes and errors of the cluster, with evidence; a crash fails the run."""
    crashes = cluster.crash_lines()
    errors = [line for line in cluster.log().splitlines() if "ERROR:" in line or "FATAL:" in line]
    now = worker_pids(cluster)
    if errors:
        print(f"    WARNING: {len(errors)} ERROR/FATAL lines in the server log, first ones:")
        for line in errors[:5]:
            print("      " + line)
    assert not crashes and now == pids, (f"workers {pids} -> {now}; crash lines:\n" + "\n".join(crashes)
                                         + "\n" + cluster.log()[-3000:])


def scans(cluster):
    """{table: (seq scans, rows they read)} of the extension's tables."""
    rows = cluster.sql("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables "
                       "WHERE schemaname = 'resumable_ws'")
    return {name: (n, read) for name, n, read in rows}


def scans_line(before, after):
    """Sequential scans in the window: a plan gone wrong shows here."""
    parts = []
    for name in sorted(after):
        count, rows = (a - b for a, b in zip(after[name], before.get(name, (0, 0))))
        if rows > 1000:
            parts.append(f"{name} {count} ({rows} rows)")
    return "    sequential scans reading > 1000 rows in the window: " + (", ".join(parts) or "none")


PREFILL = {"on": True}


def prefill(cluster, sessions=10_000, per_session=10):
    """Earlier conversations (sessions x per_session answered messages: the
    events, idempotency keys and finished generations), analyzed, before any
    client. On fresh tables the planner picks sequential scans of
    ws_idempotency_keys, ws_sessions and ws_generations for every pass's
    lookups, and those plans stay (autovacuum looks once a minute) while the
    tables grow with each message: a cost per pass, doubled by two workers,
    that a log in use does not have."""
    if not PREFILL["on"]:
        return
    started = time.perf_counter()
    cluster.sql("""
        WITH s AS (INSERT INTO resumable_ws.ws_sessions (user_id, last_event_id)
                   SELECT gen_random_uuid(), %(n)s FROM generate_series(1, %(sessions)s) RETURNING id),
             e AS (INSERT INTO resumable_ws.ws_events (session_id, id, event_type, payload)
                   SELECT s.id, g, 'user_message',
                          jsonb_build_object('content', 'an earlier message', 'idempotency_key', gen_random_uuid())
                   FROM s, generate_series(1, %(n)s) g RETURNING session_id, id, payload),
             k AS (INSERT INTO resumable_ws.ws_idempotency_keys (session_id, idempotency_key, event_id)
                   SELECT session_id, (payload->>'idempotency_key')::uuid, id FROM e)
        INSERT INTO resumable_ws.ws_generations (session_id, reply_to, message_id, status, finished_at)
        SELECT session_id, id, gen_random_uuid(), 'done', now() FROM e""", {"sessions": sessions, "n": per_session})
    cluster.sql("ANALYZE resumable_ws.ws_sessions, resumable_ws.ws_events, resumable_ws.ws_idempotency_keys, "
                "resumable_ws.ws_generations")
    print(f"    prefilled {sessions:,} sessions x {per_session} answered messages in "
          f"{time.perf_counter() - started:.1f} s, analyzed")


@contextlib.contextmanager
def evidence(cluster):
    """On any failure (a lost ack times out, a worker died), the server log's
    crash lines and tail, before serving() removes the cluster."""
    try:
        yield
    except BaseException:
        print("    FAILED; crash lines: " + ("\n".join(cluster.crash_lines()) or "none"))
        print("    server log, last lines:\n" + "\n".join(cluster.log().splitlines()[-40:]), flush=True)
        raise


class Waits:
    """With --waits: the workers' wait events in pg_stat_activity, sampled
    every 5 ms from a thread of its own during the window. Extension:Extension
    is a worker's loop waiting for work; none is running (or waiting for a
    CPU); IO:WALSync and LWLock:WALWrite are commits waiting for the WAL."""

    ON = {"on": False}

    def __init__(self, cluster, pids):
        self.counts = collections.Counter()
        self.stop = threading.Event()
        self.thread = None
        if self.ON["on"]:
            self.thread = threading.Thread(target=self.sample, args=(cluster, pids))
            self.thread.start()

    def sample(self, cluster, pids):
        conn = cluster.connect_sql()
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self.stop.wait(0.005):
                cur.execute("SELECT coalesce(wait_event_type || ':' || wait_event, 'none') FROM pg_stat_activity "
                            "WHERE pid = ANY (%s)", (pids,))
                self.counts.update(row[0] for row in cur.fetchall())
        conn.close()

    def report(self):
        if not self.thread:
            return
        self.stop.set()
        self.thread.join()
        total = sum(self.counts.values()) or 1
        print("    workers' wait events (share of samples): " + ", ".join(
            f"{name} {n / total:.0%}" for name, n in self.counts.most_common(6)))


def load_line():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def fdatasync_ms(directory, times=20):
    """Median write + fdatasync of 8 KiB beside the cluster's data: what a
    commit waits for on this (shared) disk, which the load average misses."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        samples = []
        for _ in range(times):
            started = time.perf_counter()
            os.pwrite(fd, b"x" * 8192, 0)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return sorted(samples)[times // 2]


# --- acks ----------------------------------------------------------------------------

class Sender:
    """One session's user_messages: `window` in flight, the next sent from
    the ack's callback (no task per message, so the client costs little)."""

    def __init__(self, window):
        self.window = window
        self.client = None
        self.pending = {}  # idempotency key -> sent at
        self.latencies = []  # seconds, send -> ack, of the measured messages
        self.measuring = False
        self.to_send = 0
        self.last_event_id = 0
        self.events = 0
        self.done = None

    def run(self, count, measuring):
        """Sends count messages; the future is done when all are acked."""
        self.done = asyncio.get_running_loop().create_future()
        self.to_send, self.measuring = count, measuring
        self.latencies = []
        for _ in range(min(self.window, count)):
            self.send_next()
        return self.done

    def send_next(self):
        key = str(uuid.uuid4())
        self.to_send -= 1
        self.pending[key] = time.perf_counter()
        self.client.send_json({"type": "user_message", "content": "a message", "idempotency_key": key})

    def fail(self, why):
        if not self.done.done():
            self.done.set_exception(AssertionError(why))

    def on_text(self, client, payload):
        if payload.startswith(b'{"type":"event"'):
            self.events += 1  # the message's own event, not decoded
            return
        frame = json.loads(payload)
        if frame.get("type") != "ack":
            self.fail(f"unexpected frame {frame}")
            return
        sent_at = self.pending.pop(frame["idempotency_key"], None)
        if sent_at is None or frame["duplicate"] or frame["event_id"] <= self.last_event_id:
            self.fail(f"wrong ack {frame} (last event id {self.last_event_id})")
            return
        self.last_event_id = frame["event_id"]
        if self.measuring:
            self.latencies.append(time.perf_counter() - sent_at)
        if self.to_send > 0:
            self.send_next()
        elif not self.pending and not self.done.done():
            self.done.set_result(None)


async def acks(workers, window, clients=100, warmup=10, per_client=150):
    settings = {"resumable_ws.workers": workers, "resumable_ws.max_messages_per_second": 100000}
    with serving(**settings) as (cluster, _), evidence(cluster):
        prefill(cluster)
        pids = await all_workers_accepting(cluster, workers)
        senders = [Sender(window) for _ in range(clients)]
        for sender, client in zip(senders, await open_clients(cluster.ws_port, [s.on_text for s in senders])):
            sender.client = client
        print(spread_line(cluster, pids))
        await asyncio.wait_for(asyncio.gather(*(s.run(warmup, False) for s in senders)), 60)
        disk = fdatasync_ms(cluster.dir)
        load = os.getloadavg()[0]
        scans_before = scans(cluster)
        xid_before = xid(cluster)
        cpu_before = per_worker_cpu(pids)
        meter = Meter(pids)
        busy = machine_busy()
        perf = Perf(",".join(map(str, pids)), 10)
        waits = Waits(cluster, pids)
        await asyncio.wait_for(asyncio.gather(*(s.run(per_client, True) for s in senders)), 120)
        wall, _, client, _ = Meter.delta(meter.start, meter.sample())
        busy = machine_busy() - busy
        waits.report()
        cpu_after = per_worker_cpu(pids)
        commits = xid(cluster) - xid_before - 1  # minus the query's own xid
        count = clients * per_client
        ms = sorted(s * 1000 for sender in senders for s in sender.latencies)
        assert len(ms) == count, (len(ms), count)
        workers_cpu = sum(cpu_after) - sum(cpu_before)
        print(f"  acks, {workers} worker(s): {count} user_message -> ack ({clients} sessions x {per_client}, "
              f"{window} in flight each) in {wall:.2f} s: {count / wall:,.0f} acks/s, p50 "
              f"{percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, max {ms[-1]:.2f} ms; "
              f"{count / workers_cpu:,.0f} acks per worker CPU-second")
        print(f"    {commits / count:.3f} commits per ack ({commits / wall:.0f} commits/s); just before: a write + "
              f"fdatasync took {disk:.2f} ms (median of 20), load average {load:.2f}")
        print(cores_line(wall, busy, cpu_before, cpu_after, client))
        print(spread_line(cluster, pids))
        perf.report(f"acks, {workers} worker(s), all of them")
        await asyncio.sleep(1.1)  # the workers report their table statistics once a second
        print(scans_line(scans_before, scans(cluster)))
        close_all(s.client for s in senders)
        check_log(cluster, pids)
        return {"acks/s": count / wall, "ack p50 ms": percentile(ms, 50), "ack p99 ms": percentile(ms, 99),
                "commits/s": commits / wall, "fdatasync ms": disk, "load average": load,
                "acks per worker CPU-s": count / workers_cpu, "workers cores": workers_cpu / wall,
                "client cores": client / wall, "machine busy cores": busy / wall,
                "others' cores": max(0.0, busy - workers_cpu - client) / wall}


# --- answers ---------------------------------------------------------------------------

async def answers(workers, window, sessions=50, per_session=40, pieces=200):
    with serving(Upstream(pieces, 0), **{"resumable_ws.workers": workers}) as (cluster, upstream), evidence(cluster):
        prefill(cluster)
        pids = await all_workers_accepting(cluster, workers)
        chats = await open_chats(cluster, sessions, "tok " * pieces)
        print(spread_line(cluster, pids))
        disk = fdatasync_ms(cluster.dir)
        load = os.getloadavg()[0]
        scans_before = scans(cluster)
        xid_before = xid(cluster)
        cpu_before = per_worker_cpu(pids)
        meter = Meter(pids, upstream)
        busy = machine_busy()
        perf = Perf(",".join(map(str, pids)), 10)
        waits = Waits(cluster, pids)

        async def converse(chat):
            for n in range(per_session):
                await chat.ask(f"question {n}")

        await asyncio.gather(*(converse(c) for c in chats))
        wall, workers_cpu, client, up = Meter.delta(meter.start, meter.sample())
        busy = machine_busy() - busy
        waits.report()
        cpu_after = per_worker_cpu(pids)
        commits = xid(cluster) - xid_before - 1
        count = sessions * per_session
        print(f"  answers, {workers} worker(s): {count} answers ({sessions} sessions x {per_session}, {pieces} "
              f"pieces at full speed) in {wall:.2f} s: {count / wall:,.0f} answers/s, "
              f"{count / workers_cpu:,.0f} answers per worker CPU-second")
        print(f"    {commits / count:.2f} commits per answer; just before: a write + fdatasync took {disk:.2f} ms "
              f"(median of 20), load average {load:.2f}")
        print(cores_line(wall, busy, cpu_before, cpu_after, client, up))
        print(spread_line(cluster, pids))
        perf.report(f"answers, {workers} worker(s), all of them")
        await asyncio.sleep(1.1)
        print(scans_line(scans_before, scans(cluster)))
        close_all(c.client for c in chats)
        check_log(cluster, pids)
        return {"answers/s": count / wall, "answers per worker CPU-s": count / workers_cpu,
                "commits per answer": commits / count, "fdatasync ms": disk, "load average": load,
                "workers cores": workers_cpu / wall, "client cores": client / wall, "upstream cores": up / wall,
                "machine busy cores": busy / wall, "others' cores": max(0.0, busy - workers_cpu - client - up) / wall}


RUN = {"acks": acks, "answers": answers}


# --- the run ------------------------------------------------------------------------------

def span(values, digits):
    low, high = min(values), max(values)
    fmt = f"{{:,.{digits}f}}"
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}–{fmt.format(high)}"


def summary(results, counts, rounds):
    print(f"\n--- summary: ranges over {rounds} round(s)")
    print("| | " + " | ".join(f"{n} worker{'s' if n > 1 else ''}" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for name in dict.fromkeys(name for name, _ in results):
        for figure in results[(name, counts[0])][0]:
            digits = 2 if any(w in figure for w in ("ms", "cores", "per answer", "load")) else 0
            cells = [span([r[figure] for r in results[(name, n)]], digits) for n in counts]
            print(f"| {name}: {figure} | " + " | ".join(cells) + " |")
    print(f"(load averages before each measurement are printed above; {os.cpu_count()} cores)")


def main():
    args = sys.argv[1:]
    rounds = int(take_option(args, "--rounds", "2"))
    names = take_option(args, "--only", ",".join(SCENARIOS)).split(",")
    counts = [int(n) for n in take_option(args, "--workers", "1,2").split(",")]
    window = int(take_option(args, "--window", "1"))
    if "--perf" in args:
        args.remove("--perf")
        bench_hot_path.PERF["on"] = True
    if "--fresh" in args:
        args.remove("--fresh")
        PREFILL["on"] = False
    if "--waits" in args:
        args.remove("--waits")
        Waits.ON["on"] = True
    if args or any(n not in RUN for n in names):
        sys.exit(__doc__ + f"\nunknown scenario or argument: {args or names}")
    results = {}
    for round_number in range(1, rounds + 1):
        order = counts if round_number % 2 else counts[::-1]
        for name in names:
            for workers in order:
                print(f"--- round {round_number} of {rounds}, {name}, {workers} worker(s); {load_line()} before it",
                      flush=True)
                figures = asyncio.run(RUN[name](workers, window))
                results.setdefault((name, workers), []).append(figures)
                sys.stdout.flush()
    summary(results, counts, rounds)


if __name__ == "__main__":
    main()
