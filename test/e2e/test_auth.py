"""Authentication (PROTOCOL.md §3): every bad token is one `unauthorized`
error and close 4001; refresh on an open connection; expiry closes 4001."""
import asyncio
import base64
import json
import time
import uuid

import pytest

from conftest import run
from harness import make_token


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(sub, alg):
    header = {"alg": alg, "typ": "JWT"}
    claims = {"sub": sub, "exp": int(time.time()) + 3600, "aud": "authenticated"}
    return f"{b64(header)}.{b64(claims)}."


USER = str(uuid.uuid4())
BAD_TOKENS = {
    "wrong key": make_token(USER, secret="not-the-secret-not-the-secret-000000"),
    "expired": make_token(USER, ttl=-10),
    "alg none": unsigned_token(USER, "none"),
    "alg None": unsigned_token(USER, "None"),
    "alg hs256 lowercase, unsigned": unsigned_token(USER, "hs256"),
    "wrong aud": make_token(USER, aud="someone-else"),
    "no aud": make_token(USER, aud=None),
    "sub not a uuid": make_token("alice"),
    "no sub": make_token(None),
    "no exp": make_token(USER, exp=None),
    "HS512": make_token(USER, algorithm="HS512"),
    "garbage": "not-a-jwt",
    "empty": "",
    "two parts": "a.b",
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
@run
async def test_bad_token_is_refused_with_4001(cluster, name):
    client = await cluster.connect(token=BAD_TOKENS[name])
    code, frames = await client.close_code()
    assert code == 4001
    assert frames == [{"type": "error", "code": "unauthorized", "message": frames[0]["message"]}]
    # The error never echoes the token or the secret.
    assert "secret" not in frames[0]["message"].lower()


@run
async def test_no_token_is_refused(cluster):
    import websockets
    ws = await websockets.connect(cluster.ws_url(), open_timeout=10)
    try:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.code == 4001
    finally:
        await ws.close()


@run
async def test_token_in_authorization_header(cluster):
    import websockets
    user = str(uuid.uuid4())
    ws = await websockets.connect(cluster.ws_url(), open_timeout=10,
                                  extra_headers={"Authorization": f"Bearer {make_token(user)}"})
    try:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        owner = cluster.sql("SELECT user_id::text FROM resumable_ws.ws_sessions WHERE id = %s",
                            (ready["session_id"],))
        assert owner == [(user,)]
    finally:
        await ws.close()


@run
async def test_audience_list_and_uppercase_sub_accepted(cluster):
    user = str(uuid.uuid4())
    client = await cluster.connect(token=make_token(user.upper(), aud=["other", "authenticated"]))
    ready = await client.ready()
    owner = cluster.sql("SELECT user_id::text FROM resumable_ws.ws_sessions WHERE id = %s",
                        (ready["session_id"],))
    assert owner == [(user,)]
    await client.close()


@run
async def test_refresh_keeps_connection_and_expiry_closes(cluster):
    user = str(uuid.uuid4())
    client = await cluster.connect(user=user, token=make_token(user, ttl=2))
    await client.ready()
    # Refresh with a token that lives long: the connection outlives the first.
    await client.send({"type": "auth", "token": make_token(user, ttl=3600)})
    await asyncio.sleep(3.2)  # outlive the first token: time itself is under test
    await client.send({"type": "ping", "n": 1})
    assert await client.expect("pong") == {"type": "pong", "n": 1}
    # Now a short one: when it expires, the server closes with 4001.
    await client.send({"type": "auth", "token": make_token(user, ttl=1)})
    started = time.monotonic()
    code, frames = await client.close_code(timeout=6)
    assert code == 4001
    assert frames[-1]["code"] == "unauthorized"
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("token_kind", ["other user", "bad signature"])
@run
async def test_refresh_with_a_bad_token_closes_4001(cluster, token_kind):
    user = str(uuid.uuid4())
    client = await cluster.connect(user=user)
    await client.ready()
    token = (make_token(str(uuid.uuid4())) if token_kind == "other user"
             else make_token(user, secret="wrong-secret-wrong-secret-00000000"))
    await client.send({"type": "auth", "token": token})
    code, frames = await client.close_code()
    assert code == 4001
    assert frames[-1]["code"] == "unauthorized"
