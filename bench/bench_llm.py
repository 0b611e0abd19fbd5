"""Benchmark of AI generations. Prints figures; asserts nothing.

    /usr/bin/python3 bench/bench_llm.py [N ...]     (as root, after `make install`)

Starts its own cluster and a fast fake OpenAI-compatible upstream (a separate
process on loopback that streams 200 pieces per answer, 5 ms apart: 200
tokens/s per answer, several times a real model's pace),
then for each N (default 10 100 1000): N clients, each in its own session,
send one message at the same moment and read their answers to the end.
Printed per N:
  - wall time from the first send to the last assistant_done;
  - upstream pieces/s (what the LLM thread read) and delivered assistant_delta
    events/s (pieces are coalesced per generation per loop pass);
  - rows/s written to ws_events for the generations, and commits/s;
  - the worker's CPU use (user+system seconds per wall second).
"""
import asyncio
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))
from harness import Cluster, free_port  # noqa: E402

PIECES = 200
PIECE_DELAY = 0.005  # seconds


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commits(cluster):
    return int(cluster.sql("SELECT pg_current_xact_id()::text")[0][0])


async def one_round(cluster, n):
    clients = []
    for _ in range(n):
        clients.append(await cluster.new_session())
    pid = cluster.worker_pid()
    rows_before = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events")[0][0]
    xid_before, cpu_before = commits(cluster), cpu_seconds(pid)
    deltas = 0

    async def chat(client):
        nonlocal deltas
        await client.user_message("benchmark question")
        while True:
            frame = await client.recv(timeout=300)
            if frame["type"] != "event":
                continue
            if frame["event_type"] == "assistant_delta":
                deltas += 1
            if frame["event_type"] in ("assistant_done", "assistant_error"):
                assert frame["event_type"] == "assistant_done", frame
                assert frame["payload"]["content"] == "tok " * PIECES
                return

    began = time.monotonic()
    await asyncio.gather(*(chat(c) for c in clients))
    wall = time.monotonic() - began
    cpu = cpu_seconds(pid) - cpu_before
    xids = commits(cluster) - xid_before - 1  # minus the count query's own
    rows = cluster.sql("SELECT count(*) FROM resumable_ws.ws_events")[0][0] - rows_before - n  # minus user messages
    for c in clients:
        await c.close()
    print(f"N={n:5d}: {wall:6.2f} s, upstream pieces {n * PIECES / wall:9.0f}/s, "
          f"delivered deltas {deltas / wall:8.0f}/s, generation rows {rows / wall:8.0f}/s "
          f"({rows / n:.1f} per answer), commits {xids / wall:6.0f}/s, worker CPU {cpu / wall:4.2f}",
          flush=True)


async def main(sizes):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    upstream = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "test", "e2e", "fake_openai.py"),
                                 str(port), str(PIECES), str(PIECE_DELAY)], cwd=os.path.join(HERE, "..", "test", "e2e"))
    cluster = Cluster(**{
        "resumable_ws.llm_provider": "openai",
        "resumable_ws.llm_base_url": f"'http://127.0.0.1:{port}/v1'",
        "resumable_ws.llm_max_concurrency": 1000,
        "max_connections": 100,
    })
    try:
        cluster.start()
        for n in sizes:
            await one_round(cluster, n)
    finally:
        cluster.destroy()
        upstream.kill()
        upstream.wait()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [10, 100, 1000]))
