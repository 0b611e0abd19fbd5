"""The worker is a superuser in a database other roles can write to: nothing a
plain role plants may run with the worker's or an API caller's rights.

A role with CREATE on `public` (PostgreSQL 15 no longer grants it to PUBLIC,
but many installations do, Supabase among them) defines overloads that match
the calls of the worker and the SQL API better than pg_catalog's own
functions. Each records who ran it; none may ever run as a superuser."""
import uuid

import psycopg2
import pytest

from answers import send_and_answer
from conftest import run, running_cluster
from harness import TIMEOUT

ROLE = "rws_mallory"

# Overloads with exact argument types, so that they beat pg_catalog's
# variadic or polymorphic functions in overload resolution. Each logs
# current_user, then does what the real function does.
PLANTED = [
    # The worker's event frames: json_build_object(VARIADIC "any").
    ("json_build_object", "a text, b text, c text, d bigint, e text, f text, g text, h jsonb, i text, j text",
     "json", "pg_catalog.json_build_object(a, b, c, d, e, f, g, h, i, j)"),
    # Batched writes: unnest(anyarray).
    ("unnest", "a uuid[]", "SETOF uuid", "pg_catalog.unnest(a)"),
    ("unnest", "a bigint[]", "SETOF bigint", "pg_catalog.unnest(a)"),
    ("unnest", "a text[]", "SETOF text", "pg_catalog.unnest(a)"),
    ("unnest", "a jsonb[]", "SETOF jsonb", "pg_catalog.unnest(a)"),
    # Timestamps, counting, ids, settings, sizes.
    ("to_char", "a timestamp, b text", "text", "pg_catalog.to_char(a, b)"),
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("gen_random_uuid", "", "uuid", "pg_catalog.gen_random_uuid()"),
    ("current_setting", "a text, b boolean", "text", "pg_catalog.current_setting(a, b)"),
    ("pg_size_bytes", "a text", "bigint", "pg_catalog.pg_size_bytes(a)"),
    ("octet_length", "a jsonb", "integer", "pg_catalog.octet_length(a::text)"),
]


def plant(cluster):
    """As the plain role: a log table anyone may write, and the overloads."""
    cluster.sql(f"DROP ROLE IF EXISTS {ROLE}")
    cluster.sql(f"CREATE ROLE {ROLE} LOGIN")
    cluster.sql(f"GRANT CREATE ON SCHEMA public TO {ROLE}")
    cluster.sql(f"GRANT USAGE ON SCHEMA resumable_ws TO {ROLE}")
    conn = cluster.connect_sql()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"SET ROLE {ROLE}")
        cur.execute("CREATE TABLE public.ran_planted_code (who text, what text)")
        cur.execute("GRANT INSERT ON public.ran_planted_code TO PUBLIC")
        for name, args, returns, body in PLANTED:
            cur.execute(
                f"CREATE FUNCTION public.{name}({args}) RETURNS {returns} LANGUAGE sql VOLATILE AS $$ "
                f"INSERT INTO public.ran_planted_code VALUES (current_user, '{name}'); SELECT {body} $$")
    conn.close()


def planted_runs(cluster):
    return cluster.sql("SELECT DISTINCT who, what FROM public.ran_planted_code ORDER BY 1, 2")


@pytest.fixture(scope="module")
def cluster():
    for c in running_cluster(**{"resumable_ws.llm_provider": "echo"}):
        plant(c)
        yield c


def test_the_planted_code_is_reachable_by_name(cluster):
    """The test itself: a superuser who calls these names unqualified, with the
    default search_path, does run the planted code (so the checks below can
    fail)."""
    cluster.sql("SELECT json_build_object('type', 'event', 'id', 1::bigint, 'event_type', 'x'::text, "
                "'payload', '{}'::jsonb, 'created_at', 'y'::text)")
    assert ("postgres", "json_build_object") in planted_runs(cluster)
    cluster.sql("TRUNCATE public.ran_planted_code")


@run
async def test_the_worker_never_runs_planted_code(cluster):
    """Sessions, messages, an answer (batched writes), replay, publish and
    close: the worker's statements and the API's functions all ran."""
    client = await cluster.new_session()
    await send_and_answer(client, "first question")
    await send_and_answer(client, "second question")
    session = client.session_id
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', '{\"n\": 1}')", (session,))
    head = cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s", (session,))[0][0]
    replay = await cluster.connect(user=client.user, session_id=session, last_event_id=0)
    await replay.ready()
    await replay.events(0, head, allow=("replay_done",))
    other = cluster.sql("SELECT resumable_ws.create_session(gen_random_uuid(), '{\"a\": 1}')")[0][0]
    cluster.sql("SELECT resumable_ws.publish(%s, 'note', NULL)", (other,))
    cluster.sql("SELECT resumable_ws.close_session(%s)", (other,))
    cluster.sql("SELECT resumable_ws.cleanup('1 day')")
    cluster.sql("SELECT resumable_ws.sign_token(gen_random_uuid(), '1 hour')")
    await client.close()
    await replay.close()
    # The worker has committed what the last pass wrote (the detach of the
    # closed connections) once the live rows are gone.
    cluster.wait_for(lambda: cluster.sql("SELECT count(*) FROM resumable_ws.ws_live_connections")[0][0] == 0,
                     what="the connections to be detached")
    assert planted_runs(cluster) == []


def test_a_plain_role_cannot_wake_the_worker(cluster):
    """_wake_at_commit is internal: with USAGE on the schema a role could
    otherwise overflow the wake ring on every commit and keep the worker
    re-reading every live session."""
    conn = psycopg2.connect(host=cluster.dir, port=cluster.pg_port, user=ROLE, dbname="postgres",
                            connect_timeout=TIMEOUT)
    conn.autocommit = True
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT resumable_ws._wake_at_commit(%s, false)", (str(uuid.uuid4()),))
    finally:
        conn.close()


def test_every_api_function_pins_its_search_path(cluster):
    rows = cluster.sql("""
        SELECT p.proname, p.proconfig FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'resumable_ws' AND p.prolang <> (SELECT oid FROM pg_catalog.pg_language
                                                              WHERE lanname = 'c')
         ORDER BY 1""")
    assert rows, "the API has SQL functions"
    for name, config in rows:
        assert config and "search_path=pg_catalog, pg_temp" in config, (name, config)
