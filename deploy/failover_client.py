#!/usr/bin/python3
"""A WebSocket client that writes through a failover and checks that
nothing acknowledged was lost (used by deploy/try-locally.sh).

failover_client.py URL JWT_SECRET -- COMMAND...

Opens a session at URL (ws://host:port/ws), sends user messages one after
another, each after the previous one's ack, and reads every frame. After a
few acks it runs COMMAND (the failover). When the connection drops it
reconnects every 100 ms with its session and last event id until the new
primary serves, then sends more messages, and checks:
  - every acknowledged message is stored with the id of its ack;
  - ids are dense and each event reached this client once, in order;
  - the events it received are the stored ones.
Prints one line of figures; exits 1 if a check fails."""
import asyncio
import json
import subprocess
import sys
import time
import uuid

import jwt
import websockets

url, secret = sys.argv[1], sys.argv[2]
command = sys.argv[sys.argv.index("--") + 1:]
user = str(uuid.uuid4())
token = jwt.encode({"sub": user, "aud": "authenticated", "role": "authenticated", "exp": int(time.time()) + 3600},
                   secret, algorithm="HS256")


async def connect(session_id=None, last_event_id=None):
    query = f"?token={token}"
    if session_id:
        query += f"&session_id={session_id}&last_event_id={last_event_id}"
    ws = await websockets.connect(url + query, open_timeout=5, close_timeout=1, ping_interval=None, max_size=None)
    ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ready["type"] == "ready", ready
    return ws, ready


async def main():
    ws, ready = await connect()
    session = ready["session_id"]
    seen, acked = [], {}  # events in arrival order; idempotency key -> event id
    restarting_hint = None
    failover = None
    cut_at = resumed_at = None
    last_ack_before = first_ack_after = None
    sent = 0
    while True:
        key = str(uuid.uuid4())
        try:
            await ws.send(json.dumps({"type": "user_message", "content": f"message {sent}", "idempotency_key": key}))
            sent += 1
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "event":
                    seen.append(frame)
                elif frame["type"] == "server_restarting":
                    restarting_hint = frame.get("retry_after_ms")
                elif frame["type"] == "ack" and frame["idempotency_key"] == key:
                    acked[key] = frame["event_id"]
                    now = time.monotonic()
                    if cut_at is None:
                        last_ack_before = now
                    elif first_ack_after is None:
                        first_ack_after = now
                    break
        except (websockets.ConnectionClosed, OSError, asyncio.TimeoutError):
            if cut_at is not None:
                raise  # a second cut: not what this client measures
            cut_at = time.monotonic()
            while True:  # reconnect until the new primary serves
                try:
                    last = seen[-1]["id"] if seen else 0
                    ws, ready = await connect(session, last)
                    resumed_at = time.monotonic()
                    break
                except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, asyncio.TimeoutError):
                    await asyncio.sleep(0.1)
            continue
        if failover is None and len(acked) >= 20:
            failover = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            failover_started = time.monotonic()
        if first_ack_after is not None and time.monotonic() - first_ack_after > 1:
            break  # the new primary has acknowledged writes for a second
        await asyncio.sleep(0.02)
    # A fresh connection replays the whole session: the stored events.
    await ws.close()
    replay_ws, _ = await connect(session, 0)
    stored = []
    while True:
        frame = json.loads(await asyncio.wait_for(replay_ws.recv(), 10))
        if frame["type"] == "replay_done":
            break
        if frame["type"] == "event":
            stored.append(frame)
    await replay_ws.close()
    ids = [e["id"] for e in stored]
    problems = []
    if ids != list(range(1, len(ids) + 1)):
        problems.append("stored ids are not dense")
    by_id = {e["id"]: e for e in stored}
    lost = [k for k, i in acked.items() if by_id.get(i, {}).get("payload", {}).get("idempotency_key") != k]
    if lost:
        problems.append(f"{len(lost)} acknowledged messages missing")
    got = [e["id"] for e in seen]
    if got != sorted(set(got)) or got != list(range(1, len(got) + 1)):
        problems.append("events reached this client twice or out of order")
    if any(by_id.get(e["id"], {}).get("payload") != e["payload"] for e in seen):
        problems.append("an event received differs from the stored one")
    failover.wait(60)
    print(f"acked {len(acked)} messages, {len(stored)} events stored; connection cut "
          f"{cut_at - failover_started:.2f} s after the failover command; ready again {resumed_at - cut_at:.2f} s "
          f"after the cut; no ack for {first_ack_after - last_ack_before:.2f} s"
          + (f" (server_restarting said retry after {restarting_hint} ms)" if restarting_hint else "")
          + ("; PROBLEMS: " + ", ".join(problems) if problems else "; nothing lost, each event once and in order"))
    return 1 if problems else 0


sys.exit(asyncio.run(main()))
