"""LangChain's LLM cache never applies to the router nor to the models it calls.

After ``set_llm_cache(...)`` (in memory, SQLite, a real Redis), a public answer was returned to
a later request whose policy forbade the model that gave it (privacy, offline, a higher tier, a
zero ceiling) — 0 new calls, the record copied — and a private request's prompt and answer were
written into the shared cache (by the router's run and by its child model's). The models are
loopback fakes: ``pub`` a network model, ``loc`` a local one, ``prem`` a premium network one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from security_servers import FakeOpenAIServer

from router import PolicyRouter, loads_policy
from router.langchain import CacheNotAllowedError

PUBLIC_ANSWER, LOCAL_ANSWER, PREMIUM_ANSWER = "public-network-answer", "local-answer", "premium-answer"
PRIVATE_PROMPT = "Summarise the Nightingale merger memo"
POLICY = """\
version: 1
name: cached
models:
  pub: {{provider: openai, model: m-pub, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, tier: standard,
        price: {{input: 1, output: 1}}}}
  prem: {{provider: openai, model: m-prem, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, tier: premium,
         price: {{input: 2, output: 2}}}}
  loc: {{provider: openai, model: m-loc, base_url: "{url}", api_key_env: LOCAL_GPT_KEY, local: true, tier: basic,
        price: {{input: 0, output: 0}}}}
policy:
  max_output_tokens: 8
  quality_tier: standard
  cascade: [loc, pub, prem]
  on_exhausted: best
"""
# Under privacy/offline/a zero ceiling only ``loc`` is eligible (a basic model: the tier is lowered
# with it); under premium only ``prem``.
OVERRIDES = [({"privacy": True, "quality_tier": "basic"}, "loc"), ({"offline": True, "quality_tier": "basic"}, "loc"),
             ({"quality_tier": "premium"}, "prem"), ({"cost_ceiling": 0, "quality_tier": "basic"}, "loc")]


class RecordingCache(InMemoryCache):
    """An in-memory cache that keeps every prompt and answer it was asked to store."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[str] = []

    def update(self, prompt: str, llm_string: str, return_val: Any) -> None:
        self.stored.append(prompt + repr(return_val))
        super().update(prompt, llm_string, return_val)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("LOCAL_GPT_KEY", "sk-local-dummy")
    scripts = {"m-pub": (PUBLIC_ANSWER, "stop"), "m-loc": (LOCAL_ANSWER, "stop"), "m-prem": (PREMIUM_ANSWER, "stop")}
    with FakeOpenAIServer(scripts=scripts) as fake:
        yield fake


def _router(server: FakeOpenAIServer) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url), allow_env=["LOCAL_GPT_KEY"]))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client, deadline = redis.Redis(host="127.0.0.1", port=port), time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def _cache(kind: str, tmp_path: Path, redis_url: str | None) -> tuple[Any, Any]:
    """The cache, and a function returning everything it holds as bytes."""
    if kind == "memory":
        cache = RecordingCache()
        return cache, lambda: "\n".join(cache.stored).encode()
    if kind == "sqlite":
        from langchain_community.cache import SQLiteCache

        path = tmp_path / "cache.db"
        return SQLiteCache(database_path=str(path)), lambda: path.read_bytes()
    import redis
    from langchain_community.cache import RedisCache

    client = redis.Redis.from_url(redis_url)
    client.flushall()

    def held() -> bytes:
        return b"\n".join(repr(client.hgetall(k) if client.type(k) == b"hash" else client.get(k)).encode()
                          for k in client.keys("*"))

    return RedisCache(client), held


@pytest.fixture(params=["memory", "sqlite", "redis"])
def global_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    before = get_llm_cache()
    cache, held = _cache(request.param, tmp_path, url)
    set_llm_cache(cache)
    try:
        yield cache, held
    finally:
        set_llm_cache(before)


@pytest.mark.parametrize(("overrides", "model"), OVERRIDES, ids=["privacy", "offline", "premium", "ceiling0"])
def test_a_cached_public_answer_is_not_served_under_another_policy(server: FakeOpenAIServer, global_cache: Any,
                                                                  overrides: dict[str, Any], model: str):
    router = _router(server)
    first = router.invoke("What is the capital of France?")
    assert first.content == PUBLIC_ANSWER and server.count() == 1
    later = router.invoke("What is the capital of France?", config={"configurable": overrides})
    routing = later.response_metadata["routing"]
    assert routing["final_model"] == model, routing
    assert server.count() == 2 and server.count(f"m-{model}") == 1  # a fresh call, to the allowed model
    assert later.content != PUBLIC_ANSWER
    for key, value in overrides.items():
        assert routing["effective"][key] == value


@pytest.mark.parametrize("entry", ["invoke", "ainvoke", "stream", "batch"])
def test_a_private_request_writes_nothing_into_the_cache(server: FakeOpenAIServer, global_cache: Any, entry: str):
    import asyncio

    _, held = global_cache
    router = _router(server)
    config: Any = {"configurable": {"privacy": True, "quality_tier": "basic"}}
    if entry == "invoke":
        router.invoke(PRIVATE_PROMPT, config=config)
    elif entry == "ainvoke":
        asyncio.run(router.ainvoke(PRIVATE_PROMPT, config=config))
    elif entry == "stream":
        list(router.stream(PRIVATE_PROMPT, config=config))
    else:
        router.batch([PRIVATE_PROMPT, PRIVATE_PROMPT], config=config)
    assert server.count("m-loc") >= 1
    stored = held()
    assert PRIVATE_PROMPT.encode() not in stored and LOCAL_ANSWER.encode() not in stored
    # Nothing at all is cached by the router or its models, so the next identical request calls again.
    calls = server.count()
    router.invoke(PRIVATE_PROMPT, config=config)
    assert server.count() == calls + 1


@pytest.mark.parametrize("cache", [True, InMemoryCache()], ids=["true", "instance"])
def test_a_cache_given_to_the_router_is_refused(server: FakeOpenAIServer, cache: Any):
    with pytest.raises(CacheNotAllowedError, match="does not use LangChain's LLM cache"):
        PolicyRouter(policy=loads_policy(POLICY.format(url=server.base_url), allow_env=["LOCAL_GPT_KEY"]), cache=cache)
    router = _router(server)
    assert router.cache is False
    router.cache = cache  # set after construction: refused when used, before any call
    with pytest.raises(CacheNotAllowedError):
        router.invoke("q")
    assert server.count() == 0
