"""Supabase's asymmetric signing keys (PROTOCOL.md §1, §3 Authentication):
ES256/RS256 tokens verified with the keys of a JWKS the worker fetches from
a fake endpoint on loopback, chosen by kid; rotation; an unknown kid makes
one rate-limited refetch; a JWKS endpoint that is down leaves the cached keys
in force; the inline jwt_jwks; jwt_issuer; HS256 beside them.

The tests of this module share one cluster and run in order: the fake
endpoint's request count and the worker's refetch rate limit carry over.
Each worker keeps its own keys and reads the URL itself (at start and on a
reload: once per worker); a kid-triggered refetch is made by the worker
that met the kid, so with several workers a key may be fetched once by each.
"""
import asyncio
import json
import time
import uuid

import psycopg2
import pytest

from conftest import run, running_cluster
from fake_jwks import FakeJwks, SigningKey, jwks
from harness import make_token

REF = "abcdefghijklmnopqrst"
ISSUER = f"https://{REF}.supabase.co/auth/v1"
KID_REFETCH_INTERVAL = 5  # seconds: JwtKeys' kKidRefetchInterval

ES_A = SigningKey("es-a")
ES_B = SigningKey("es-b")  # the standby key
ES_C = SigningKey("es-c")
RS = SigningKey("rs-1", alg="RS256")
INLINE_RS = SigningKey("inline-rs", alg="RS256")


def supabase_claims(sub, **overrides):
    """An access token's claims as Supabase Auth writes them."""
    now = int(time.time())
    claims = {
        "iss": ISSUER, "sub": sub, "aud": "authenticated", "exp": now + 3600, "iat": now,
        "email": "user@example.com", "phone": "", "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}], "session_id": str(uuid.uuid4()),
        "is_anonymous": False, "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def token(key, sub=None, kid=None, **overrides):
    return key.token(supabase_claims(sub or str(uuid.uuid4()), **overrides), kid=kid)


@pytest.fixture(scope="module")
def fake():
    server = FakeJwks()
    server.serve(jwks(ES_A, RS))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(fake):
    yield from running_cluster(**{
        "resumable_ws.jwt_jwks_url": f"'{fake.url}'",
        "resumable_ws.jwt_issuer": f"'{ISSUER}'",
    })


def log_count(cluster, text):
    return cluster.log().count(text)


def wait_log(cluster, text, count=1):
    try:
        cluster.wait_for(lambda: log_count(cluster, text) >= count, what=f"{count}× {text!r} in the log")
    except AssertionError as e:
        raise AssertionError(f"{e}; the log ends with:\n{cluster.log()[-3000:]}") from None


def wait_until_refetch_allowed(fake):
    """Waits out the worker's limit on kid-triggered refetches (it started
    its last fetch no later than the endpoint saw it)."""
    last = fake.last_request()
    if last is not None:
        time.sleep(max(0.0, last + KID_REFETCH_INTERVAL + 0.3 - time.monotonic()))


async def ready_as(cluster, tok, user):
    client = await cluster.connect(user=user, token=tok)
    ready = await client.ready()
    owner = cluster.sql("SELECT user_id::text FROM resumable_ws.ws_sessions WHERE id = %s",
                        (ready["session_id"],))
    assert owner == [(user,)]
    return client


def unknown_key_failures(cluster):
    return cluster.sql("SELECT auth_failures_unknown_key FROM resumable_ws.stats")[0][0]


async def refused(cluster, tok):
    client = await cluster.connect(token=tok)
    code, frames = await client.close_code()
    assert code == 4001, frames
    assert [f["code"] for f in frames] == ["unauthorized"]


def test_startup_reads_the_jwks_once(cluster, fake):
    wait_log(cluster, f"keys of the JWKS at {fake.url}: es-a (ES256), rs-1 (RS256)", cluster.workers)
    assert fake.count == cluster.workers


@run
async def test_supabase_es256_token_gets_ready(cluster, fake):
    before = fake.count
    user = str(uuid.uuid4())
    client = await ready_as(cluster, token(ES_A, user), user)
    await client.send({"type": "ping", "n": 1})
    assert (await client.expect("pong"))["n"] == 1
    await client.close()
    assert fake.count == before  # a known kid needs no fetch


@run
async def test_rs256_token_gets_ready(cluster):
    user = str(uuid.uuid4())
    await (await ready_as(cluster, token(RS, user), user)).close()


@run
async def test_hs256_still_works_beside_the_jwks(cluster):
    user = str(uuid.uuid4())
    await (await ready_as(cluster, make_token(user, iss=ISSUER), user)).close()


@run
async def test_anonymous_sign_in_tokens_carry_the_issuer(cluster, fake):
    # Signed HS256 by the server itself (it holds no private key of the JWKS).
    before = fake.count
    cluster.reload(**{"resumable_ws.anonymous_sign_in": "on"})
    try:
        cluster.wait_for(lambda: cluster.http("/auth/anonymous", method="POST")[0] == 200,
                         what="anonymous sign-in enabled")
        cluster.wait_for(lambda: fake.count == before + cluster.workers, what="the reload's read of the URL")
        status, body = cluster.http("/auth/anonymous", method="POST")
        assert status == 200
        body = json.loads(body)
        await (await ready_as(cluster, body["access_token"], body["user"]["id"])).close()
    finally:
        cluster.reload(**{"resumable_ws.anonymous_sign_in": "off"})
        cluster.wait_for(lambda: cluster.http("/auth/anonymous", method="POST")[0] == 404,
                         what="anonymous sign-in disabled")
        cluster.wait_for(lambda: fake.count == before + 2 * cluster.workers, what="the reload's read of the URL")


@run
async def test_anon_key_is_refused(cluster, fake):
    # Supabase's anon key: signed by the project, but no sub (role anon).
    before = fake.count
    now = int(time.time())
    anon = ES_A.token({"iss": "supabase", "ref": REF, "role": "anon", "iat": now, "exp": now + 3600})
    await refused(cluster, anon)
    anon_with_aud = ES_A.token({"iss": ISSUER, "ref": REF, "role": "anon", "aud": "authenticated",
                                "iat": now, "exp": now + 3600})
    await refused(cluster, anon_with_aud)
    assert fake.count == before


@run
async def test_issuer_is_enforced(cluster):
    await refused(cluster, token(ES_A, iss="https://other.supabase.co/auth/v1"))
    await refused(cluster, token(ES_A, iss=None))
    await refused(cluster, make_token(str(uuid.uuid4())))  # HS256 without iss


@run
async def test_mismatched_algorithms_are_refused(cluster, fake):
    # The ES key's kid on an RS256 token, and the RS key's on an ES256 one.
    before = fake.count
    await refused(cluster, token(RS, kid="es-a"))
    await refused(cluster, token(ES_A, kid="rs-1"))
    # An HS256 token on an asymmetric key's kid, even with the real secret.
    user = str(uuid.uuid4())
    await refused(cluster, make_token(user, iss=ISSUER, headers={"kid": "es-a"}))
    assert fake.count == before


@run
async def test_unknown_kid_triggers_exactly_one_refetch(cluster, fake):
    wait_until_refetch_allowed(fake)
    before = fake.count
    started = time.monotonic()
    await refused(cluster, token(ES_C, kid="no-such-kid"))
    assert fake.count == before + 1
    assert time.monotonic() - started < 5


@run
async def test_rotation_standby_then_switch_then_revoke(cluster, fake):
    # Supabase publishes the standby key before it signs anything.
    fake.serve(jwks(ES_A, ES_B, RS))
    wait_until_refetch_allowed(fake)
    before = fake.count
    user = str(uuid.uuid4())
    client = await ready_as(cluster, token(ES_B, user), user)
    assert fake.count == before + 1  # exactly one refetch
    await client.close()
    # Both keys verify now, with no further fetch (but by a worker that had
    # not met the new kid yet: one each).
    for key in (ES_A, ES_B, ES_B):
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(key, user), user)).close()
    assert before + 1 <= fake.count <= before + cluster.workers

    # The old key is revoked: once the set is read again (a reload reads it
    # at once), its tokens are refused.
    fake.serve(jwks(ES_B, RS))
    cluster.sql("SELECT pg_reload_conf()")
    wait_log(cluster, f"keys of the JWKS at {fake.url}: es-b (ES256), rs-1 (RS256)", cluster.workers)
    await refused(cluster, token(ES_A))
    user = str(uuid.uuid4())
    await (await ready_as(cluster, token(ES_B, user), user)).close()


@run
async def test_a_storm_of_bogus_kids_fetches_at_most_twice(cluster, fake):
    wait_until_refetch_allowed(fake)
    before = fake.count
    unknown_before = unknown_key_failures(cluster)
    results = await asyncio.gather(*[refused(cluster, token(ES_C, kid=f"bogus-{n}")) for n in range(50)],
                                   return_exceptions=True)
    errors = [r for r in results if r is not None]
    assert not errors, errors[:3]
    assert 1 <= fake.count - before <= 2 * cluster.workers  # at most twice per worker
    # Counted under their own reason in /metrics and resumable_ws.stats.
    assert unknown_key_failures(cluster) - unknown_before == 50
    # Known kids are unaffected meanwhile.
    user = str(uuid.uuid4())
    await (await ready_as(cluster, token(ES_B, user), user)).close()


@run
async def test_auth_frame_with_a_new_kid_waits_for_the_refetch(cluster, fake):
    fake.serve(jwks(ES_B, ES_C, RS))
    wait_until_refetch_allowed(fake)
    before = fake.count
    # A token about to expire, refreshed with one of a kid not read yet: the
    # connection outlives the first token only if the refresh took.
    user = str(uuid.uuid4())
    expires = int(time.time()) + 3
    client = await ready_as(cluster, token(ES_B, user, exp=expires), user)
    await client.send({"type": "auth", "token": token(ES_C, user)})
    cluster.wait_for(lambda: fake.count == before + 1, what="one refetch")
    await asyncio.sleep(max(0.0, expires + 2.5 - time.time()))
    try:
        await client.send({"type": "ping", "n": 2})
        assert (await client.expect("pong"))["n"] == 2
    except Exception as e:
        raise AssertionError(f"the refreshed connection closed ({e}):\n{cluster.log()[-3000:]}") from e
    assert fake.count == before + 1
    # Another user's token, even with a good kid, is refused (4001).
    await client.send({"type": "auth", "token": token(ES_C)})
    code, _ = await client.close_code()
    assert code == 4001


@run
async def test_endpoint_down_keeps_the_cached_keys_and_logs_once(cluster, fake):
    line = f"cannot read the JWKS at {fake.url}"
    assert log_count(cluster, line) == 0
    # Every worker holds the keys in force before the endpoint goes (a
    # reload reads the URL at once): es-c was met by one worker only.
    before = fake.count
    cluster.sql("SELECT pg_reload_conf()")
    cluster.wait_for(lambda: fake.count == before + cluster.workers, what="every worker's read of the URL")
    fake.stop()
    try:
        cluster.sql("SELECT pg_reload_conf()")  # a reload reads the URL again: it fails
        wait_log(cluster, line, cluster.workers)
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(ES_B, user), user)).close()
        # More failures in the same streak: an unknown kid makes the worker
        # try (the answer waits for the failed fetch), twice.
        for _ in range(2):
            wait_until_refetch_allowed(fake)
            started = time.monotonic()
            await refused(cluster, token(ES_C, kid="unknown-while-down"))
            time.sleep(max(0.0, KID_REFETCH_INTERVAL + 0.3 - (time.monotonic() - started)))
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(ES_C, user), user)).close()
        assert log_count(cluster, line) == cluster.workers  # once per worker and streak
        assert "keys read last stay in force" in cluster.log()
    finally:
        fake.start()
    cluster.sql("SELECT pg_reload_conf()")
    wait_log(cluster, f"the JWKS at {fake.url} is read again", cluster.workers)


@run
async def test_error_status_oversized_and_non_jwks_documents_keep_the_keys(cluster, fake):
    good = jwks(ES_B, ES_C, RS)
    huge = json.dumps({"keys": [], "padding": "x" * (1024 * 1024)})
    for document, status, error in [(good, 500, "HTTP status 500"), (huge, 200, "larger than 1 MB"),
                                    ('{"keys": 7}', 200, "not a JWKS")]:
        failed, requests = log_count(cluster, error), fake.count
        fake.serve(document, status)
        cluster.sql("SELECT pg_reload_conf()")
        cluster.wait_for(lambda: fake.count >= requests + cluster.workers, what="every worker's read")
        wait_log(cluster, error, failed + cluster.workers)
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(ES_C, user), user)).close()
        recovered, requests = log_count(cluster, "is read again"), fake.count
        fake.serve(good)
        cluster.sql("SELECT pg_reload_conf()")
        cluster.wait_for(lambda: fake.count >= requests + cluster.workers, what="every worker's read")
        wait_log(cluster, "is read again", recovered + cluster.workers)


@run
async def test_inline_jwks(cluster, fake):
    reloaded = fake.count
    cluster.reload(**{"resumable_ws.jwt_jwks": jwks(INLINE_RS)})
    wait_log(cluster, "resumable_ws.jwt_jwks keys: inline-rs (RS256)", cluster.workers)
    cluster.wait_for(lambda: fake.count == reloaded + cluster.workers, what="the reload's read of the URL")
    before = fake.count
    user = str(uuid.uuid4())
    await (await ready_as(cluster, token(INLINE_RS, user), user)).close()
    # The URL's keys stay in force beside it.
    user = str(uuid.uuid4())
    await (await ready_as(cluster, token(ES_B, user), user)).close()
    assert fake.count == before


def test_inline_jwks_must_be_public_keys_of_a_jwks(cluster):
    private = json.loads(ES_A.jwk_class.to_jwk(ES_A.key))
    private["kid"] = "leaked"
    for value, detail in [("not json", "not JSON"), ('{"keys": 1}', "not a JWKS"),
                          (json.dumps({"keys": [private]}), "private key material")]:
        with pytest.raises(psycopg2.Error) as error:
            cluster.sql("ALTER SYSTEM SET resumable_ws.jwt_jwks = %s", (value,))
        assert detail in str(error.value), str(error.value)
    # The value in force is unchanged.
    assert "inline-rs" in cluster.sql("SHOW resumable_ws.jwt_jwks")[0][0]


def test_no_key_material_reaches_the_log(cluster):
    # Postgres itself logs the statement that failed (log_min_error_statement),
    # which here holds the private key the test tried to set; the error line
    # does not quote the value.
    ours = [line for line in cluster.log().splitlines() if "STATEMENT:" not in line]
    assert not [line for line in ours if '"d"' in line or '"k"' in line or "BEGIN" in line]
    assert cluster.crash_lines() == []


@run
async def test_a_new_url_on_reload_is_read_at_once(cluster, fake):
    other = FakeJwks()
    elsewhere = SigningKey("elsewhere")
    other.serve(jwks(elsewhere))
    other.start()
    try:
        cluster.reload(**{"resumable_ws.jwt_jwks_url": other.url})
        wait_log(cluster, f"keys of the JWKS at {other.url}: elsewhere (ES256)", cluster.workers)
        assert other.count == cluster.workers
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(elsewhere, user), user)).close()
        # The old URL's keys went with it; the inline key stays.
        await refused(cluster, token(ES_B))
        user = str(uuid.uuid4())
        await (await ready_as(cluster, token(INLINE_RS, user), user)).close()
    finally:
        back = log_count(cluster, f"keys of the JWKS at {fake.url}")
        cluster.reload(**{"resumable_ws.jwt_jwks_url": fake.url})
        wait_log(cluster, f"keys of the JWKS at {fake.url}", count=back + cluster.workers)
        other.stop()
