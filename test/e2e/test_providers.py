"""Provider settings, each on its own cluster because a reload reaches the
worker asynchronously: the offline echo provider, `none`, an upstream that
refuses connections, and the key taken from the postmaster's environment."""
import os

from conftest import run, running_cluster
from fake_openai import FakeOpenAI
from harness import free_port
from answers import answer, check_generation, send_and_answer

ECHO_TEXT = ("You said: \"{}\". This answer comes from the echo provider; set "
             "resumable_ws.llm_provider = openai to talk to a model.")


@run
async def test_echo_provider_streams_a_deterministic_answer_word_by_word():
    for cluster in running_cluster(**{"resumable_ws.llm_provider": "echo"}):
        client = await cluster.new_session()
        reply_to, events = await send_and_answer(client, "hi  there")
        deltas, end = check_generation(events, reply_to)
        assert end["event_type"] == "assistant_done" and end["payload"]["finish_reason"] == "stop"
        assert deltas == ECHO_TEXT.format("hi  there")
        assert len([e for e in events if e["event_type"] == "assistant_delta"]) > 3
        # Cancel works the same way as upstream.
        await client.user_message("a longer message to be cut off in the middle of its answer")
        await client.expect("ack")
        frame = await client.recv()
        while frame.get("event_type") != "assistant_delta":
            frame = await client.recv()
        await client.send({"type": "cancel"})
        events = await answer(client)
        assert events[-1]["payload"]["finish_reason"] == "cancelled"
        await client.close()


@run
async def test_provider_none_stores_messages_and_starts_nothing():
    for cluster in running_cluster(**{"resumable_ws.llm_provider": "none"}):
        client = await cluster.new_session()
        await client.user_message("just store this")
        ack = await client.expect("ack")
        event = await client.expect("event")
        assert event["id"] == ack["event_id"] == 1
        # A ping answered after the event proves nothing else was queued for it.
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
        assert cluster.sql("SELECT count(*) FROM resumable_ws.ws_generations") == [(0,)]
        await client.close()


@run
async def test_refused_connections_are_retried_then_reported():
    closed_port = free_port()
    for cluster in running_cluster(**{
            "resumable_ws.llm_provider": "openai",
            "resumable_ws.llm_base_url": f"'http://127.0.0.1:{closed_port}/v1'",
            "resumable_ws.llm_max_retries": 2}):
        client = await cluster.new_session()
        reply_to, events = await send_and_answer(client, "anyone there?")
        _, end = check_generation(events, reply_to)
        assert end["event_type"] == "assistant_error" and end["payload"]["code"] == "unavailable"
        assert str(closed_port) not in end["payload"]["message"]
        assert cluster.log().count("request failed") == 3  # the try and two retries
        await client.close()


@run
async def test_the_key_comes_from_the_postmasters_environment_when_unset():
    fake = FakeOpenAI()
    fake.start()
    os.environ["OPENAI_API_KEY"] = "sk-from-environment"
    try:
        for cluster in running_cluster(**{"resumable_ws.llm_provider": "openai",
                                          "resumable_ws.llm_base_url": f"'{fake.base_url}'"}):
            client = await cluster.new_session()
            reply_to, events = await send_and_answer(client, "key?")
            assert check_generation(events, reply_to)[1]["event_type"] == "assistant_done"
            assert fake.requests[0].headers["authorization"] == "Bearer sk-from-environment"
            assert "sk-from-environment" not in cluster.log()
            # A non-superuser cannot read either secret.
            cluster.sql("CREATE ROLE plain LOGIN")
            rows = cluster.sql("SET ROLE plain; SELECT name FROM pg_settings WHERE name LIKE 'resumable_ws.%%'")
            assert "resumable_ws.llm_api_key" not in [r[0] for r in rows]
            cluster.sql("RESET ROLE")
            await client.close()
    finally:
        del os.environ["OPENAI_API_KEY"]
        fake.stop()
