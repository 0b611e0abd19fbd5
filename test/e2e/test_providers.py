"""Provider settings, each on its own cluster because a reload reaches the
worker asynchronously: the offline echo provider, `none`, an upstream that
refuses connections, and the key taken from the postmaster's environment."""
import os

from conftest import run, running_cluster
from fake_openai import FakeOpenAI, Stream
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


@run
async def test_beyond_max_concurrency_messages_wait_in_order_and_can_be_cancelled_while_waiting():
    fake = FakeOpenAI()
    fake.start()
    try:
        for cluster in running_cluster(**{"resumable_ws.llm_provider": "openai",
                                          "resumable_ws.llm_base_url": f"'{fake.base_url}'",
                                          "resumable_ws.llm_max_concurrency": 1}):
            fake.script(Stream(["first ", "holds ", "the slot"], stall_after=1), Stream(["third"]))
            first, second, third = [await cluster.new_session() for _ in range(3)]
            await first.user_message("first")
            await first.expect("ack")
            fake.wait_requests(1)
            await second.user_message("second")
            second_ack = await second.expect("ack")
            await third.user_message("third")
            third_ack = await third.expect("ack")
            await second.expect("event")  # its user_message; no assistant_started while it waits
            await second.send({"type": "ping"})
            assert (await second.recv())["type"] == "pong"

            # Cancelled while waiting: started and an empty cancelled answer, no upstream call.
            await second.send({"type": "cancel"})
            events = await answer(second)
            deltas, end = check_generation(events, second_ack["event_id"])
            assert deltas == "" and end["payload"]["finish_reason"] == "cancelled"
            assert len(fake.requests) == 1

            # The slot frees when the first answer is cancelled; the third goes next.
            await first.send({"type": "cancel"})
            await answer(first)
            events = await answer(third)
            deltas, end = check_generation([e for e in events if e["id"] > third_ack["event_id"]],
                                           third_ack["event_id"])
            assert deltas == "third" and end["event_type"] == "assistant_done"
            assert fake.wait_requests(2)[1].body["messages"][-1]["content"] == "third"
            for client in (first, second, third):
                await client.close()
    finally:
        fake.stop()
