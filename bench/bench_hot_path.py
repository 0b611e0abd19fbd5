"""Hot-path benchmarks of issue 12 (replay is bench_replay.py). Prints figures;
asserts only that answers are right (each assistant_done carries the
expected text).

    /usr/bin/python3 bench/bench_hot_path.py [--only NAME[,NAME]] [--perf]
                                             [--baseline REF] [--rounds N]

NAME is one of answers, ack, idle, llm1000 (default: all, in that order).
Every scenario starts its own cluster (test/e2e/harness.py) with fsync and
synchronous_commit on (set explicitly; `SHOW fsync` is printed) and, where it
needs one, its own fake upstream (bench/paced_upstream.py: "tok " pieces on a
common timer, so 1,000 streams keep their pace). Clients are
bench/fast_ws.py (an asyncio.BufferedProtocol per connection, only non-delta
frames decoded); the client's own CPU (this process) and the upstream's are printed
next to the worker's, so one can see whether they bound a figure (a warning
is printed when either uses most of a core).

  answers  50 sessions, each sends 40 messages one after another and reads
           each answer (200 pieces, written at once: full speed) to its end.
           Answers per worker CPU-second, commits (xids) per answer.
  ack      100 sessions stream answers of 300 pieces at 50 tokens/s (6 s) and
           send their next message when an answer ends (starts staggered over
           6 s, so streaming is continuous). The send -> ack time of every
           message sent after that warm-up, for 30 s (~500 samples):
           p50/p90/p99/max, with the worker's CPU over the window
           (ACK_WINDOW=seconds in the environment changes the 30 s).
  idle     10,000 connections, each to a new session, each waiting after its
           ready frame (pings are answered). The worker's VmRSS and RssAnon
           before (after 10 warm-up connections) and 2 s after the last ready,
           per connection; time to open them (200 handshakes in flight);
           resumable_ws.max_connections 20000 (default 10,000). The worker
           raises its soft open-file limit to its hard one, inherited from
           this process (runuser keeps it); the limit is printed, with a
           warning when it is below what 10,000 sockets need.
  llm1000  1,000 sessions each send one message at the same moment; answers
           of 250 pieces at 50 tokens/s (5 s), llm_max_concurrency 2000.
           The worker's CPU in cores over the whole run and over the steady
           window (sampled every 0.25 s: while at least 95% of the answers
           stream), tokens and deltas delivered, and the upstream's pieces/s
           against the 50,000/s asked of it (2 upstream processes).

--perf records the worker with `perf record -g` during the ack window, the
answers run (10 s at most) and llm1000 (5 s) and prints the top of `perf report`
(perf's own cost perturbs the figures of that run). With --baseline REF,
REF is built and measured in the same run, alternating (bench/baseline.py).
"""
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))

import fast_ws  # noqa: E402
from baseline import side_by_side, take_option  # noqa: E402
from harness import Cluster, free_port, make_token  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = ("answers", "ack", "idle", "llm1000")
PERF = {"on": False}


# --- measuring ------------------------------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime, all threads


def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_kib(pid, *names):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in names:
                values[key] = int(line.split()[1])
    return values


def xid(cluster):
    return int(cluster.sql("SELECT pg_current_xact_id()::text")[0][0])


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def load_note(cores, who):
    return f"  WARNING: {who} used {cores:.2f} cores: it may bound this figure" if cores > 0.8 else ""


class Meter:
    """CPU seconds of the worker (summed over every pid when given a list:
    resumable_ws.workers > 1), this client and the upstream, and wall time."""

    def __init__(self, workers, upstream=None):
        self.workers = [workers] if isinstance(workers, int) else list(workers)
        self.upstream = upstream
        self.start = self.sample()

    def sample(self):
        return (time.perf_counter(), sum(cpu_seconds(pid) for pid in self.workers), own_cpu(),
                self.upstream.cpu() if self.upstream else 0.0)

    @staticmethod
    def delta(a, b):
        wall = b[0] - a[0]
        return wall, b[1] - a[1], b[2] - a[2], b[3] - a[3]


def cpu_line(wall, worker, client, upstream):
    line = (f"    worker CPU {worker:.2f} s ({worker / wall:.2f} cores), client CPU {client:.2f} s "
            f"({client / wall:.2f} cores)")
    if upstream:
        line += f", upstream CPU {upstream:.2f} s ({upstream / wall:.2f} cores)"
    return line + load_note(client / wall, "the client") + load_note(upstream / wall, "the upstream")


# --- the fake upstream and the cluster -------------------------------------------

class Upstream:
    """`processes` paced_upstream.py processes sharing one port (SO_REUSEPORT)."""

    def __init__(self, pieces, delay, processes=1):
        self.port = free_port()
        self.procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "paced_upstream.py"), str(self.port),
                                        str(pieces), str(delay)], stdout=subprocess.PIPE, text=True)
                      for _ in range(processes)]
        for proc in self.procs:
            assert self.read_line(proc, 10) == "ready"

    @staticmethod
    def read_line(proc, timeout):
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        assert ready, "the fake upstream did not answer"
        return proc.stdout.readline().strip()

    def cpu(self):
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def stats(self):
        """Counters summed over the processes (ticks and lag: the worst one's)."""
        for proc in self.procs:
            proc.send_signal(signal.SIGUSR1)
        total = {}
        for proc in self.procs:
            words = self.read_line(proc, 10).split()
            for name, value in zip(words[::2], map(float, words[1::2])):
                if name in ("ticks",):
                    total[name] = min(total.get(name, value), value)
                elif name == "max_lag_ms":
                    total[name] = max(total.get(name, value), value)
                else:
                    total[name] = total.get(name, 0) + value
        return total

    def stop(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serving(upstream=None, **settings):
    """A cluster (and its upstream, if any) for one scenario, stopped after it."""
    try:
        cluster = start_cluster(upstream, **settings)
    except BaseException:
        if upstream:
            upstream.stop()
        raise
    try:
        yield cluster, upstream
    finally:
        cluster.destroy()
        if upstream:
            upstream.stop()


def start_cluster(upstream=None, **settings):
    conf = {"fsync": "on", "synchronous_commit": "on", "resumable_ws.max_connections": 20000}
    if upstream:
        conf.update({"resumable_ws.llm_provider": "openai",
                     "resumable_ws.llm_base_url": f"'http://127.0.0.1:{upstream.port}/v1'",
                     "resumable_ws.llm_model": "'fake-model'",
                     "resumable_ws.llm_max_concurrency": 2000})
    conf.update(settings)
    cluster = Cluster(**conf)
    cluster.start()
    fsync = cluster.sql("SHOW fsync")[0][0]
    commit = cluster.sql("SHOW synchronous_commit")[0][0]
    assert fsync == "on" and commit == "on", (fsync, commit)
    return cluster


def shorten(symbol):
    """nlohmann::…::lexer<…>::get instead of a line of template arguments."""
    while True:
        shorter = re.sub(r"<[^<>]*>", "\N{HORIZONTAL ELLIPSIS}", symbol)
        if shorter == symbol:
            return re.sub(r"json_abi_v[0-9_]+::", "", symbol)
        symbol = shorter


class Perf:
    """perf record -g of the worker for at most `seconds`, when --perf is given."""

    def __init__(self, pid, seconds):
        self.proc = None
        if not PERF["on"]:
            return
        self.file = tempfile.mktemp(prefix="rws-perf-", suffix=".data")
        self.proc = subprocess.Popen(["perf", "record", "-q", "-g", "-p", str(pid), "-o", self.file, "--",
                                      "sleep", str(seconds)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def report(self, title):
        if not self.proc:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait()
        out = subprocess.run(["perf", "report", "-i", self.file, "--no-children", "--stdio", "-g", "none",
                              "--sort", "dso,sym", "--percent-limit", "0.7"], capture_output=True, text=True).stdout
        lines = [line for line in out.splitlines() if line.strip() and not line.startswith("#")]
        print(f"    perf, worker, {title} (self time, top entries; template arguments elided):")
        for line in lines[:25]:
            print("      " + shorten(line.strip()))
        out = subprocess.run(["perf", "report", "-i", self.file, "--no-children", "--stdio", "-g", "none",
                              "--sort", "dso"], capture_output=True, text=True).stdout
        objects = [" ".join(line.split()) for line in out.splitlines() if line.strip() and not line.startswith("#")]
        print("      by object: " + ", ".join(objects[:8]))
        out = subprocess.run(["perf", "report", "-i", self.file, "--no-children", "--stdio", "-g", "none",
                              "--sort", "pid"], capture_output=True, text=True).stdout
        threads = [" ".join(line.split()) for line in out.splitlines() if line.strip() and not line.startswith("#")]
        print("      by thread (the worker's main thread has the worker's pid; the LLM thread is the other): "
              + ", ".join(threads[:4]))
        if os.environ.get("KEEP_PERF"):
            print(f"      kept {self.file}")
        else:
            os.unlink(self.file)


# --- clients --------------------------------------------------------------------

class Chat:
    """One session's conversation: sends a message, notes its ack, counts
    deltas without decoding them, checks the answer when it ends."""

    def __init__(self, expected):
        self.expected = expected
        self.client = None
        self.deltas = 0
        self.tokens = 0  # "tok " pieces in the deltas, counted without decoding
        self.sent_at = self.acked_at = self.first_delta_at = self.done_at = 0.0
        self.acks = []  # (sent at, seconds to ack)
        self.answer = None

    def on_text(self, client, payload):
        if b'"assistant_delta"' in payload:
            if not self.first_delta_at:
                self.first_delta_at = time.perf_counter()
            self.deltas += 1
            self.tokens += payload.count(b"tok ")
            return
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "ack":
            self.acked_at = time.perf_counter()
            self.acks.append((self.sent_at, self.acked_at - self.sent_at))
        elif kind == "event" and frame["event_type"] in ("assistant_done", "assistant_error"):
            if self.answer and not self.answer.done():
                self.answer.set_result(frame)
        elif kind == "error" and self.answer and not self.answer.done():
            self.answer.set_exception(AssertionError(f"error frame: {frame}"))

    async def ask(self, text, timeout=120):
        self.answer = asyncio.get_running_loop().create_future()
        self.acked_at = self.first_delta_at = 0.0
        self.sent_at = time.perf_counter()
        self.client.send_json({"type": "user_message", "content": text, "idempotency_key": str(uuid.uuid4())})
        frame = await asyncio.wait_for(self.answer, timeout)
        self.done_at = time.perf_counter()
        assert frame["event_type"] == "assistant_done", frame
        assert frame["payload"]["content"] == self.expected, frame["payload"]["content"][:100]


async def open_clients(port, handlers, in_flight=100):
    """One connection to a new session per handler, each past its ready frame."""
    gate = asyncio.Semaphore(in_flight)

    async def one(handler):
        async with gate:
            client = await fast_ws.connect(port, make_token(str(uuid.uuid4())), handler)
            await asyncio.wait_for(client.ready, 60)
            return client

    return await asyncio.gather(*(one(h) for h in handlers))


async def open_chats(cluster, count, expected):
    chats = [Chat(expected) for _ in range(count)]
    clients = await open_clients(cluster.ws_port, [c.on_text for c in chats])
    for chat, client in zip(chats, clients):
        chat.client = client
    return chats


def close_all(clients):
    for client in clients:
        client.close()


# --- scenarios ------------------------------------------------------------------

async def answers(sessions=50, per_session=40, pieces=200):
    with serving(Upstream(pieces, 0)) as (cluster, upstream):
        chats = await open_chats(cluster, sessions, "tok " * pieces)
        pid = cluster.worker_pid()
        xid_before = xid(cluster)
        meter = Meter(pid, upstream)
        perf = Perf(pid, 10)

        async def converse(chat):
            for n in range(per_session):
                await chat.ask(f"question {n}")

        await asyncio.gather(*(converse(c) for c in chats))
        wall, worker, client, up = Meter.delta(meter.start, meter.sample())
        commits = xid(cluster) - xid_before - 1  # minus the query's own xid
        count = sessions * per_session
        deltas = sum(c.deltas for c in chats)
        print(f"  answers: {count} answers ({sessions} sessions x {per_session}, {pieces} pieces at full speed) "
              f"in {wall:.2f} s: {count / worker:,.0f} answers per worker CPU-second; "
              f"{commits / count:.2f} commits per answer, {deltas / count:.1f} deltas per answer")
        print(cpu_line(wall, worker, client, up))
        perf.report("answers")
        close_all(c.client for c in chats)


async def ack(sessions=100, pieces=300, delay=0.02, window=float(os.environ.get("ACK_WINDOW", "30"))):
    with serving(Upstream(pieces, delay)) as (cluster, upstream):
        chats = await open_chats(cluster, sessions, "tok " * pieces)
        pid = cluster.worker_pid()
        warm = pieces * delay
        began = time.perf_counter()
        stop = {"now": False}

        async def converse(chat):
            await asyncio.sleep(random.uniform(0, warm))
            n = 0
            while not stop["now"]:
                await chat.ask(f"question {n}")
                n += 1

        tasks = [asyncio.ensure_future(converse(c)) for c in chats]
        await asyncio.sleep(warm)
        deltas_before = sum(c.deltas for c in chats)
        up_before = upstream.stats()
        meter = Meter(pid, upstream)
        perf = Perf(pid, min(window, 10))
        await asyncio.wait(tasks, timeout=window)
        wall, worker, client, up = Meter.delta(meter.start, meter.sample())
        up_after = upstream.stats()
        deltas = sum(c.deltas for c in chats) - deltas_before
        stop["now"] = True
        failed = [t for t in tasks if t.done() and t.exception()]
        for t in tasks:
            t.cancel()
        if failed:
            raise failed[0].exception()
        start, end = began + warm, meter.start[0] + wall
        samples = sorted(s for c in chats for sent, s in c.acks if start <= sent <= end)
        ms = [s * 1000 for s in samples]
        print(f"  ack: {len(ms)} user_message -> ack samples over {wall:.1f} s while {sessions} sessions stream "
              f"at {1 / delay:.0f} tokens/s: p50 {percentile(ms, 50):.2f} ms, p90 {percentile(ms, 90):.2f} ms, "
              f"p99 {percentile(ms, 99):.2f} ms, max {ms[-1]:.2f} ms")
        print(f"    delivered deltas {deltas / wall:,.0f}/s; upstream pieces "
              f"{(up_after['pieces'] - up_before['pieces']) / wall:,.0f}/s "
              f"(late ticks {up_after['late_ticks'] - up_before['late_ticks']:.0f}, "
              f"max lag {up_after['max_lag_ms']:.1f} ms)")
        print(cpu_line(wall, worker, client, up))
        perf.report("ack window")
        close_all(c.client for c in chats)


def open_file_limit(pid, needed):
    """The worker raises its soft limit to its hard one (inherited from whoever
    started the cluster: this process); raising it from outside would need
    CAP_SYS_RESOURCE, so a limit too low for the benchmark is only reported."""
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    soft = int(line.split()[3])
    note = f"worker open-file limit {soft}"
    if soft < needed:
        note += f"  WARNING: below the {needed} this benchmark needs"
    return note


async def idle(count=10_000, warmup=10):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 1000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        assert hard >= count + 1000, f"this process may open {hard} files, {count + 1000} needed"
    with serving() as (cluster, _):
        pid = cluster.worker_pid()
        limit = open_file_limit(pid, count + warmup + 100)
        noop = lambda client, payload: None  # noqa: E731
        clients = await open_clients(cluster.ws_port, [noop] * warmup)
        await asyncio.sleep(1)
        fields = ("VmRSS", "RssAnon", "RssShmem")
        before = status_kib(pid, *fields)
        meter = Meter(pid)
        clients += await open_clients(cluster.ws_port, [noop] * count, in_flight=200)
        wall, worker, client, _ = Meter.delta(meter.start, meter.sample())
        await asyncio.sleep(2)
        after = status_kib(pid, *fields)
        dropped = sum(1 for c in clients if c.closed.done())
        assert not dropped, f"{dropped} connections were closed while idle"
        per = {k: (after[k] - before[k]) / count for k in fields}
        print(f"  idle: {count:,} connections to new sessions opened in {wall:.1f} s ({count / wall:,.0f}/s); "
              f"{limit}")
        print(f"    worker VmRSS {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB = "
              f"{per['VmRSS']:.1f} KiB per connection; RssAnon {before['RssAnon'] / 1024:.1f} -> "
              f"{after['RssAnon'] / 1024:.1f} MiB = {per['RssAnon']:.1f} KiB per connection "
              f"(RssShmem {per['RssShmem']:+.1f} KiB per connection)")
        print(cpu_line(wall, worker, client, 0.0).replace("CPU", "CPU to open", 2))
        close_all(clients)


async def llm1000(sessions=1000, pieces=250, delay=0.02):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    with serving(Upstream(pieces, delay, processes=2)) as (cluster, upstream):
        chats = await open_chats(cluster, sessions, "tok " * pieces)
        pid = cluster.worker_pid()
        xid_before = xid(cluster)
        meter = Meter(pid, upstream)
        perf = Perf(pid, 5)
        samples = []  # (marks, answers streaming), every 0.25 s
        running = {"on": True}

        def mark():
            return (meter.sample(), upstream.stats(), sum(c.tokens for c in chats), sum(c.deltas for c in chats))

        async def sample_periodically():
            while running["on"]:
                streaming = sum(1 for c in chats if c.first_delta_at and not c.done_at)
                samples.append((mark(), streaming))
                await asyncio.sleep(0.25)

        sampler = asyncio.ensure_future(sample_periodically())
        await asyncio.gather(*(c.ask("question") for c in chats))
        wall, worker, client, up = Meter.delta(meter.start, meter.sample())
        commits = xid(cluster) - xid_before - 1
        running["on"] = False
        await sampler
        # The steady window: the samples while at least 95% of the answers stream.
        steady = [m for m, streaming in samples if streaming >= 0.95 * sessions]
        streaming = [n for _, n in samples if n >= 0.95 * sessions] or [n for _, n in samples]
        asked = sum(streaming) / len(streaming) / delay  # pieces/s the streaming answers ask for
        a, b = (steady[0], steady[-1]) if len(steady) >= 2 else (samples[0][0], samples[-1][0])
        s_wall, s_worker, s_client, s_up = Meter.delta(a[0], b[0])
        deltas = sum(c.deltas for c in chats)
        t0 = meter.start[0]
        print(f"  llm1000: {sessions} concurrent answers of {pieces} pieces at {1 / delay:.0f} tokens/s "
              f"({pieces * delay:.1f} s each): all acked after {max(c.acked_at for c in chats) - t0:.2f} s, "
              f"all streaming after {max(c.first_delta_at for c in chats) - t0:.2f} s, "
              f"first done {min(c.done_at for c in chats) - t0:.2f} s, last done {wall:.2f} s")
        what = ("at least 95% of the answers streaming" if len(steady) >= 2
                else "NO stretch with 95% streaming: whole run")
        s_deltas, s_tokens = b[3] - a[3], b[2] - a[2]
        s_pieces, s_ticks = b[1]["pieces"] - a[1]["pieces"], b[1]["ticks"] - a[1]["ticks"]
        print(f"    steady window ({s_wall:.1f} s, {what}): worker {s_worker / s_wall:.2f} cores, "
              f"{s_worker / max(s_deltas, 1) * 1e6:.0f} µs per delta, {s_worker / max(s_tokens, 1) * 1e6:.1f} µs "
              f"per token (a slower worker coalesces more pieces per delta)")
        print(f"      delivered {s_tokens / s_wall:,.0f} tokens/s in {s_deltas / s_wall:,.0f} deltas/s; upstream sent "
              f"{s_pieces / s_wall:,.0f} pieces/s (asked ~{asked:,.0f}/s; {s_ticks / s_wall:.1f} ticks/s, "
              f"late ticks {b[1]['late_ticks'] - a[1]['late_ticks']:.0f}, max lag so far {b[1]['max_lag_ms']:.1f} ms)")
        print(f"      client {s_client / s_wall:.2f} cores, upstream {s_up / s_wall:.2f} cores"
              + load_note(s_client / s_wall, "the client") + load_note(s_up / s_wall, "the upstream"))
        print(f"    whole run: {deltas:,} deltas ({deltas / sessions:.1f} per answer), {commits / wall:.0f} commits/s")
        print(cpu_line(wall, worker, client, up))
        perf.report("llm1000")
        close_all(c.client for c in chats)


RUN = {"answers": answers, "ack": ack, "idle": idle, "llm1000": llm1000}


def main():
    args = sys.argv[1:]
    only = take_option(args, "--only")
    if "--perf" in args:
        args.remove("--perf")
        PERF["on"] = True
    names = only.split(",") if only else list(SCENARIOS)
    unknown = [n for n in names if n not in RUN]
    if unknown or args and not args[0].startswith("--"):
        sys.exit(__doc__ + f"\nunknown scenario or argument: {unknown or args}")

    def measure(label):
        print(f"--- {label}", flush=True)
        for name in names:
            # The machine may be shared: its load says how much to trust a figure.
            print(f"  ({name}: load average {os.getloadavg()[0]:.2f} before it)", flush=True)
            asyncio.run(RUN[name]())
            sys.stdout.flush()

    side_by_side(args, measure)


if __name__ == "__main__":
    main()
