"""Restarts and crashes (issue 2 §9): clients are told to come back, nothing
acknowledged is lost, the worker survives errors inside a batch."""
import asyncio
import os
import signal

import psycopg2

from conftest import run
from harness import TIMEOUT, Closed, connect_when_back



async def expect_restart_notice(client):
    code, frames = await client.close_code(timeout=15)
    assert code == 1012, (code, frames)
    notice = frames[-1]
    assert notice["type"] == "server_restarting"
    assert 500 <= notice["retry_after_ms"] <= 5000
    return notice["retry_after_ms"]


@run
async def test_sigterm_of_worker_notifies_and_comes_back(cluster):
    clients = [await cluster.new_session() for _ in range(5)]
    sessions = [c.session_id for c in clients]
    for session in sessions:
        cluster.sql("SELECT resumable_ws.publish(%s, 'before', '{}')", (session,))
    for client in clients:
        assert (await client.expect("event"))["id"] == 1
    # Every worker: each client is told, whichever worker serves it.
    old_pids = cluster.terminate_workers(cluster.worker_pids())
    delays = [await expect_restart_notice(c) for c in clients]
    assert len(set(delays)) > 1, "retry_after_ms is not jittered"

    # Events published while the worker is away are not lost.
    for session in sessions:
        cluster.sql("SELECT resumable_ws.publish(%s, 'while_away', '{}')", (session,))
    for client, session in zip(clients, sessions):
        back = await connect_when_back(cluster, user=client.user, session_id=session, last_event_id=1)
        assert (await back.expect("event"))["event_type"] == "while_away"
        assert (await back.expect("replay_done"))["last_event_id"] == 2
        await back.close()
    cluster.wait_workers_replaced(old_pids)
    # ws_live_connections was cleared at start: only rows of open connections.
    cluster.wait_for(lambda: cluster.sql("SELECT count(*) FROM resumable_ws.ws_live_connections")[0][0] == 0,
                     what="no live rows once every client left")


@run
async def test_pg_ctl_restart_fast(cluster):
    client = await cluster.new_session()
    key = await client.user_message("before restart")
    assert (await client.expect("ack"))["event_id"] == 1
    await client.expect("event")

    restart = asyncio.get_running_loop().run_in_executor(None, cluster.restart, "fast")
    await expect_restart_notice(client)
    await asyncio.wait_for(restart, 60)

    back = await connect_when_back(cluster, user=client.user, session_id=client.session_id,
                                   last_event_id=0)
    event = await back.expect("event")
    assert event["id"] == 1 and event["payload"]["idempotency_key"] == key
    await back.expect("replay_done")
    # Idempotency survives the restart too.
    await back.user_message("before restart", key)
    assert (await back.expect("ack"))["duplicate"] is True
    await back.close()


@run
async def test_acknowledged_messages_survive_immediate_stop(cluster):
    """Every ack means committed: after a crash-like stop, each acked message
    is in the log with its content, and ids are dense."""
    clients = [await cluster.new_session() for _ in range(4)]
    acked = {}  # (session, event_id) -> content

    async def chat(client):
        for n in range(25):
            content = f"{client.session_id}:{n}"
            key = await client.user_message(content)
            while True:
                frame = await client.recv()
                if frame["type"] == "ack":
                    assert frame["idempotency_key"] == key
                    acked[(client.session_id, frame["event_id"])] = content
                    break

    await asyncio.gather(*(chat(c) for c in clients))
    # And some that may or may not be acked when the stop hits.
    for client in clients:
        for n in range(5):
            await client.user_message(f"in flight {n}")
    await asyncio.get_running_loop().run_in_executor(None, cluster.stop, "immediate")
    for client in clients:
        try:
            await client.close_code(timeout=10)
        except Closed:
            pass
    cluster.start()

    for (session, event_id), content in acked.items():
        rows = cluster.sql("SELECT payload->>'content' FROM resumable_ws.ws_events "
                           "WHERE session_id = %s AND id = %s", (session, event_id))
        assert rows == [(content,)], (session, event_id)
    for client in clients:
        dense = cluster.sql("SELECT count(*) = max(id) AND max(id) = (SELECT last_event_id FROM "
                            "resumable_ws.ws_sessions WHERE id = %s) FROM resumable_ws.ws_events "
                            "WHERE session_id = %s", (client.session_id, client.session_id))
        assert dense == [(True,)]
        back = await connect_when_back(cluster, user=client.user, session_id=client.session_id,
                                       last_event_id=0)
        rows = cluster.sql("SELECT last_event_id FROM resumable_ws.ws_sessions WHERE id = %s",
                           (client.session_id,))[0][0]
        await back.events(0, rows)
        await back.close()


@run
async def test_error_inside_a_batch_is_contained(cluster):
    cluster.sql("""
        CREATE FUNCTION public.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->>'content' = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_boom BEFORE INSERT ON resumable_ws.ws_events
            FOR EACH ROW EXECUTE FUNCTION public.refuse_boom();
    """)
    try:
        pids = cluster.worker_pids()
        bad = await cluster.new_session()
        good = await cluster.new_session()
        # Both in one pass: the failing one must not take the other down.
        await bad.user_message("boom")
        await good.user_message("fine")
        error = await bad.expect("error")
        assert error["code"] == "internal_error"
        assert "boom" not in error["message"]  # no internal detail to clients
        assert (await good.expect("ack"))["event_id"] == 1
        await bad.user_message("fine too")
        assert (await bad.expect("ack"))["event_id"] == 1
        assert cluster.worker_pids() == pids
        assert "boom refused" in cluster.log()
        await bad.close()
        await good.close()
    finally:
        cluster.sql("DROP TRIGGER refuse_boom ON resumable_ws.ws_events; DROP FUNCTION public.refuse_boom()")


@run
async def test_a_failed_batch_keeps_a_waiting_message_first(cluster):
    """Message A waits for its session's row lock, held by another
    transaction. In the same pass a request fails, so the worker runs the pass
    again one request at a time; the lock is released just before C, a later
    message of A's session, runs. C must still commit after A, never first."""
    cluster.sql("""
        CREATE SEQUENCE public.boom_calls;
        CREATE FUNCTION public.boom_then_release() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->>'content' = 'boom' THEN
                -- The second try is the one-at-a-time run: the lock goes now.
                IF nextval('public.boom_calls') = 2 THEN
                    PERFORM pg_terminate_backend(pid, 5000) FROM pg_stat_activity
                     WHERE application_name = 'rws_locker';
                END IF;
                RAISE EXCEPTION 'boom refused';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER boom_then_release BEFORE INSERT ON resumable_ws.ws_events
            FOR EACH ROW EXECUTE FUNCTION public.boom_then_release();
    """)
    locker = None
    try:
        # All three on one worker, so that B and C can reach it in one pass.
        first, pid = await cluster.connect_placed()
        second = await cluster.connect_on(pid, user=first.user, session_id=first.session_id)
        bad = await cluster.connect_on(pid)
        locker = psycopg2.connect(host=cluster.dir, port=cluster.pg_port, user="postgres", dbname="postgres",
                                  application_name="rws_locker", connect_timeout=TIMEOUT)
        locker.cursor().execute("SELECT 1 FROM resumable_ws.ws_sessions WHERE id = %s FOR UPDATE",
                                (first.session_id,))
        await first.user_message("A")
        # B and C reach the worker together: it reads both in one pass.
        os.kill(pid, signal.SIGSTOP)
        try:
            await bad.user_message("boom")
            await second.user_message("C")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await bad.expect("error"))["code"] == "internal_error"

        async def ack(client):  # events of the session may come first
            while (frame := await client.recv())["type"] != "ack":
                assert frame["type"] == "event", frame
            return frame
        ack_c = await ack(second)
        ack_a = await ack(first)
        assert ack_a["event_id"] < ack_c["event_id"], (ack_a, ack_c)
        stored = cluster.sql("SELECT payload->>'content' FROM resumable_ws.ws_events "
                             "WHERE session_id = %s ORDER BY id", (first.session_id,))
        assert [row[0] for row in stored] == ["A", "C"]
        for c in (first, second, bad):
            await c.close()
    finally:
        if locker is not None:
            locker.close()
        cluster.sql("DROP TRIGGER boom_then_release ON resumable_ws.ws_events; "
                    "DROP FUNCTION public.boom_then_release(); DROP SEQUENCE public.boom_calls")


@run
async def test_sighup_keeps_connections(cluster):
    client = await cluster.new_session()
    pids = cluster.worker_pids()
    cluster.reload(**{"resumable_ws.heartbeat_interval": "7s"})
    # The worker applies it at its next wake: new connections then see it.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        fresh = await cluster.connect()
        if (await fresh.ready())["heartbeat_interval_ms"] == 7000:
            break
        await fresh.close()
        assert asyncio.get_running_loop().time() < deadline, "reload not applied"
    other = await connect_when_back(cluster)
    assert cluster.worker_pids() == pids
    # The connection from before the reload is still served.
    await client.send({"type": "ping"})
    await client.expect("pong")
    for c in (client, other, fresh):
        await c.close()
    cluster.sql("ALTER SYSTEM RESET ALL")
    cluster.sql("SELECT pg_reload_conf()")
