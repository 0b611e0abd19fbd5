"""The README's demo command, end to end: it starts a cluster whose page at the
printed URL chats (with the offline echo provider), a second run reuses the
cluster and the conversation, and the documented stop command stops it."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from browser import Browser
from harness import PG_BIN, free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ECHO = ('You said: "hello demo". This answer comes from the echo provider; set '
        "resumable_ws.llm_provider = openai to talk to a model.")


def demo(env, *args, check=True):
    result = subprocess.run(["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def output(result):
    return result.stdout + result.stderr


def postmasters(data):
    """Pids of running postmasters of this data directory: `postgres -D data`
    (the postmaster keeps its command line; its children rename themselves)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "postgres" and "-D" in argv \
                and os.path.realpath(argv[argv.index("-D") + 1]) == os.path.realpath(data):
            pids.append(int(entry))
    return pids


def postmasters_after(data, timeout):
    """The postmasters of data still running after waiting up to timeout for
    them to exit: pg_ctl stop -w returns once postmaster.pid is gone, which
    the postmaster removes on its way out, a moment before it has exited."""
    deadline = time.monotonic() + timeout
    while (pids := postmasters(data)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def stop_demo(env, data):
    """Stops the demo cluster whatever happened before; never raises. Returns
    (the output of `demo.sh stop` or why it failed, postmasters still running
    after it, postmasters still running after the fallbacks)."""
    try:
        result = demo(env, "stop", check=False)
        said = f"exit {result.returncode}: {result.stdout}{result.stderr}"
    except Exception as e:  # e.g. a timeout
        said = f"failed: {e!r}"
    after_stop = postmasters_after(data, 10)
    if after_stop:
        # Fallback: an immediate stop (run from /, which postgres can enter) ...
        try:
            subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_ctl"), "-D", data,
                            "-m", "immediate", "-w", "-t", "30", "stop"],
                           cwd="/", capture_output=True, timeout=60)
        except Exception:
            pass
        # ... and SIGKILL for whatever is left (its children exit when it does).
        for pid in postmasters_after(data, 10):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return said, after_stop, postmasters_after(data, 10)


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo command runs as root")
def test_the_demo_command_opens_a_working_chat():
    demo_dir = tempfile.mkdtemp(prefix="rws-demo-")
    data = os.path.join(demo_dir, "data")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(RWS_DEMO_DIR=demo_dir, RWS_DEMO_PG_PORT=str(free_port()), RWS_DEMO_PORT=str(free_port()))
    browser = None
    try:
        # Before the demo exists, `token` says how to start it.
        result = demo(env, "token", check=False)
        assert result.returncode != 0 and "bash scripts/demo.sh" in result.stderr, result

        out = output(demo(env))
        assert "created the demo cluster" in out and "LLM provider: echo" in out
        # It says what it does during the long steps.
        assert "building the extension" in out and "starting PostgreSQL" in out
        assert "could not change directory" not in out
        url = re.search(r"Open the chat:\s+(http://\S+)", out).group(1)
        assert url == f"http://localhost:{env['RWS_DEMO_PORT']}/"

        browser = Browser()
        browser.open(url)
        browser.wait("document.getElementById('status').dataset.state === 'live'", 15)
        browser.call("fill", selector="#input", text="hello demo")
        browser.call("press", selector="#input", key="Enter")
        assert browser.wait("document.querySelector('.msg.assistant[data-state=done] .bubble')?.textContent",
                            15) == ECHO
        browser.screenshot("demo")

        # Again: same cluster (restarted with the library just installed),
        # and the open page carries on with the same conversation.
        out = output(demo(env))
        assert "created the demo cluster" not in out
        browser.wait("document.getElementById('status').dataset.state === 'live'", 20)
        browser.call("reload")
        browser.wait("document.getElementById('status').dataset.state === 'live'", 15)
        assert browser.eval("Array.from(document.querySelectorAll('#messages .bubble'), e => e.textContent)") \
            == ["hello demo", ECHO]
        assert browser.problems() == []

        token = demo(env, "token").stdout.splitlines()[0]
        assert token.count(".") == 2
    finally:
        if browser:
            try:
                browser.close()
            except Exception:
                pass
        stopped, after_stop, left = stop_demo(env, data)
        if not left:
            shutil.rmtree(demo_dir, ignore_errors=True)
    assert not left, f"postmasters of {data} still running after every way of stopping them: {left}"
    assert "stopped the demo cluster" in stopped and not after_stop, \
        f"`demo.sh stop` did not stop the cluster ({stopped}); postmasters left: {after_stop}"

    # Stopped, `token` says to start it again.
    result = demo(env, "token", check=False)
    assert result.returncode != 0 and "bash scripts/demo.sh" in result.stderr, result
