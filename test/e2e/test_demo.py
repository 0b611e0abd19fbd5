"""The README's demo command, end to end: it starts a cluster whose page at the
printed URL chats (with the offline echo provider), a second run reuses the
cluster and the conversation, and the documented stop command stops it."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from browser import Browser
from harness import free_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ECHO = ('You said: "hello demo". This answer comes from the echo provider; set '
        "resumable_ws.llm_provider = openai to talk to a model.")


def demo(env, *args):
    result = subprocess.run(["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo command runs as root")
def test_the_demo_command_opens_a_working_chat():
    demo_dir = tempfile.mkdtemp(prefix="rws-demo-")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(RWS_DEMO_DIR=demo_dir, RWS_DEMO_PG_PORT=str(free_port()), RWS_DEMO_PORT=str(free_port()))
    browser = None
    try:
        out = demo(env)
        assert "created the demo cluster" in out and "LLM provider: echo" in out
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
        out = demo(env)
        assert "created the demo cluster" not in out
        browser.wait("document.getElementById('status').dataset.state === 'live'", 20)
        browser.call("reload")
        browser.wait("document.getElementById('status').dataset.state === 'live'", 15)
        assert browser.eval("Array.from(document.querySelectorAll('#messages .bubble'), e => e.textContent)") \
            == ["hello demo", ECHO]
        assert browser.problems() == []

        token = demo(env, "token").splitlines()[0]
        assert token.count(".") == 2
    finally:
        if browser:
            browser.close()
        stopped = demo(env, "stop")
        shutil.rmtree(demo_dir, ignore_errors=True)
    assert "stopped the demo cluster" in stopped
