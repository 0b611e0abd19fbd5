import asyncio
import functools

import pytest

from fake_openai import FakeOpenAI
from harness import Cluster


def run(coro_fn):
    """Lets a test be written as `async def` and run without a plugin."""
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(coro_fn(*args, **kwargs), 120))
    return wrapper


def running_cluster(**settings):
    """Starts a cluster, yields it, and fails if any server process crashed."""
    c = Cluster(**settings)
    try:
        c.start()
        yield c
        crashes = c.crash_lines()
        assert not crashes, "server processes crashed:\n" + "\n".join(crashes)
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def cluster():
    """One cluster per test module; the module's tests share it."""
    yield from running_cluster()


@pytest.fixture(scope="module")
def upstream():
    """A fake OpenAI-compatible server on loopback, one per module."""
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


def upstream_settings(upstream, **settings):
    """Cluster settings that send generations to the fake upstream."""
    return {
        "resumable_ws.llm_provider": "openai",
        "resumable_ws.llm_base_url": f"'{upstream.base_url}'",
        "resumable_ws.llm_model": "'fake-model'",
        **settings,
    }
