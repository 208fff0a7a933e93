"""A local model on a loopback ``base_url`` never goes through an environment proxy; network
models still do.

``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` point at a loopback server that counts what it
receives (and answers as an OpenAI server, so a proxied call succeeds). On main, the
``local: true`` model's prompt and key went through it.
"""

from __future__ import annotations

import asyncio

import pytest
from security_servers import FakeOpenAIServer

from router import PolicyRouter, loads_policy

POLICY = """\
version: 1
name: proxied
models:
  local-gpt:
    provider: openai
    model: gpt-3.5-turbo
    local: true
    base_url: {local_url}
    api_key_env: LOCAL_GPT_KEY
    timeout_s: 10
  cloud-gpt:
    provider: openai
    model: gpt-4
    tier: standard
    base_url: http://api.openai-gateway.example/v1
    api_key_env: LOCAL_GPT_KEY
    price: {{input: 30, output: 60}}
    timeout_s: 10
policy:
  max_output_tokens: 8
  cascade: [{cascade}]
"""


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAIServer(reply="answered through the proxy") as server:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(var, server.origin)
        for var in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("LOCAL_GPT_KEY", "sk-local-dummy-key")
        yield server


def router_for(openai_fake: FakeOpenAIServer, cascade: str) -> PolicyRouter:
    return PolicyRouter(policy=loads_policy(POLICY.format(local_url=openai_fake.base_url, cascade=cascade),
                                            allow_env=["LOCAL_GPT_KEY"]))


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke"])
async def test_a_local_loopback_model_bypasses_the_proxy(proxy: FakeOpenAIServer, openai_fake: FakeOpenAIServer,
                                                         mode: str):
    router = router_for(openai_fake, "local-gpt")
    config = {"configurable": {"privacy": True}}
    if mode == "invoke":
        content = router.invoke("a private question", config=config).content
    elif mode == "stream":
        content = "".join(str(c.content) for c in router.stream("a private question", config=config))
    else:
        content = (await router.ainvoke("a private question", config=config)).content
    assert content == openai_fake.reply
    assert (proxy.count(), openai_fake.count()) == (0, 1)


def test_control_a_network_model_still_uses_the_proxy(proxy: FakeOpenAIServer, openai_fake: FakeOpenAIServer):
    message = router_for(openai_fake, "cloud-gpt").invoke("a public question")
    assert message.content == "answered through the proxy"
    [request] = proxy.requests
    assert request.path == "http://api.openai-gateway.example/v1/chat/completions"
    assert openai_fake.count() == 0


def test_a_network_model_works_through_the_proxy_across_event_loops(proxy: FakeOpenAIServer,
                                                                    openai_fake: FakeOpenAIServer):
    """A remote endpoint gets HTTP clients of its own too (built by the router, proxies honoured),
    so one router serves several ``asyncio.run`` loops: no pooled connection outlives its loop."""
    router = router_for(openai_fake, "cloud-gpt")
    for _ in range(3):
        assert asyncio.run(router.ainvoke("a public question")).content == "answered through the proxy"
    assert router.invoke("a public question").content == "answered through the proxy"
    assert (proxy.count(), openai_fake.count()) == (4, 0)
