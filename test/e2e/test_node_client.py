"""The protocol as Node's `ws` sees it (an independent client; its parser is
strict about frames and close codes)."""
import json
import os
import subprocess
import uuid

from harness import make_token

NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")


def test_node_ws_client_session(cluster):
    user = str(uuid.uuid4())
    result = subprocess.run(
        ["node", "client.mjs", f"ws://127.0.0.1:{cluster.ws_port}/ws", make_token(user),
         make_token(str(uuid.uuid4()))],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)

    assert seen["ready"]["type"] == "ready" and seen["ready"]["resumed"] is False
    ack, event = seen["first"]
    assert ack["type"] == "ack" and ack["event_id"] == 1 and ack["duplicate"] is False
    assert event["type"] == "event" and event["id"] == 1
    assert event["payload"]["content"] == "hello from node"
    assert not event["binary"]
    assert seen["pong"] == {"binary": False, "type": "pong", "from": "node"}
    assert seen["closed_by_client"]["code"] == 1000

    ready, replayed, done = seen["resumed"]
    assert ready["resumed"] is True and ready["last_event_id"] == 1
    assert replayed["id"] == 1 and done == {"binary": False, "type": "replay_done", "last_event_id": 1}
    assert seen["duplicate"]["duplicate"] is True and seen["duplicate"]["event_id"] == 1

    error, closed = seen["forbidden"]
    assert error["code"] == "forbidden" and closed["code"] == 4003
    error, closed = seen["unauthorized"]
    assert error["code"] == "unauthorized" and closed["code"] == 4001
