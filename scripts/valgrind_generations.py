"""Runs a cluster under valgrind (memcheck) and drives generations through
it: answers, a stall timeout, upstream errors, a cancel, and a shutdown with
a stalled answer. Prints every valgrind error whose stack passes through
this extension or libcurl, and exits 1 if there is one. Slow (minutes);
not part of test/run.sh.

    apt-get install -y valgrind && /usr/bin/python3 scripts/valgrind_generations.py
"""
import asyncio
import glob
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import harness  # noqa: E402
from answers import answer, check_generation, send_and_answer  # noqa: E402
from fake_openai import FakeOpenAI, Status, Stream  # noqa: E402

harness.TIMEOUT = 60  # everything is ~20x slower under valgrind


async def drive(cluster, fake):
    client = await cluster.new_session()
    for n in range(3):
        reply_to, events = await send_and_answer(client, f"question {n}")
        check_generation(events, reply_to)
    fake.script(Stream(["a ", "b ", "c"], stall_after=1))
    await send_and_answer(client, "stall")
    fake.script(Status(500), Status(500))
    await send_and_answer(client, "fail")
    fake.script(Stream([f"t{i} " for i in range(100)], delay=0.05))
    await client.user_message("cancel me")
    await client.expect("ack")
    frame = await client.recv()
    while frame.get("event_type") != "assistant_delta":
        frame = await client.recv()
    await client.send({"type": "cancel"})
    await answer(client)
    fake.script(Stream(["x ", "y"], stall_after=1))
    await client.user_message("stalled at shutdown")
    await client.expect("ack")
    fake.wait_requests(7, timeout=60)


def main():
    logs = tempfile.mkdtemp(prefix="rws-valgrind-")
    os.chmod(logs, 0o777)
    wrapper = os.path.join(logs, "postgres")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --quiet --leak-check=no --num-callers=30 "
                f"--log-file={logs}/vg.%p.log {harness.PG_BIN}/postgres \"$@\"\n")
    os.chmod(wrapper, 0o755)
    fake = FakeOpenAI()
    fake.start()
    cluster = harness.Cluster(**{"resumable_ws.llm_provider": "openai",
                                 "resumable_ws.llm_base_url": f"'{fake.base_url}'",
                                 "resumable_ws.llm_idle_timeout": "'2s'",
                                 "resumable_ws.llm_max_retries": 1})
    try:
        cluster._pg(["pg_ctl", "-D", cluster.data, "-l", cluster.logfile, "-p", wrapper, "-w", "-t", "300", "start"])
        cluster.wait_healthy(timeout=300)
        asyncio.run(drive(cluster, fake))
        cluster.close_sql()
        cluster._pg(["pg_ctl", "-D", cluster.data, "-w", "-t", "300", "-m", "fast", "stop"])
    finally:
        cluster.destroy()
        fake.stop()

    ours = []
    for path in glob.glob(f"{logs}/vg.*.log"):
        with open(path) as f:
            for error in re.split(r"\n==\d+== \n", f.read()):
                if re.search(r"resumable_ws\.so|rws::|libcurl", error) and "XLogFlush" not in error \
                        and "RelationCacheInitializePhase3" not in error:  # Postgres' own, in its valgrind.supp
                    ours.append(error)
    print("\n\n".join(ours) if ours else f"no valgrind errors in resumable_ws or libcurl (logs: {logs})")
    sys.exit(1 if ours else 0)


if __name__ == "__main__":
    main()
