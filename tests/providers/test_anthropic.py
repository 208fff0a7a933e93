"""``provider: anthropic``: the real ``ChatAnthropic`` over the Messages API (JSON and SSE) against
our loopback server (tests/servers/anthropic.py), under the same enforcement as every provider."""

from __future__ import annotations

import asyncio
import json
import textwrap
from typing import Any

import pytest
from langchain_core.tools import tool
from servers.anthropic import AnthropicTestServer, ToolUse

from router import PolicyError, PolicyRouter, loads_policy
from router.errors import RoutingError
from router.providers import get_adapter

KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture(scope="module")
def server():
    with AnthropicTestServer(api_key=KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server: AnthropicTestServer, monkeypatch):
    server.reset()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def policy(server: AnthropicTestServer, *, cascade=("claude",), extra: str = "", settings: str = "") -> str:
    """A policy whose models are Anthropic models on ``server``; ``extra`` is added to the last."""
    models = "".join(f"""  {name}:
    provider: anthropic
    model: {name}-model
    base_url: {server.base_url}
    price: {{input: 3, output: 15}}
""" for name in cascade)
    return textwrap.dedent(f"""\
        version: 1
        name: anthropic
        policy:
          cascade: [{", ".join(cascade)}]
          on_exhausted: best
          max_output_tokens: 64
        """) + settings + "models:\n" + models + extra


def routing(message: Any) -> dict[str, Any]:
    return message.response_metadata["routing"]


def test_an_answer_with_its_usage_and_stop_reason(server):
    answer = PolicyRouter.from_string(policy(server)).invoke("What is the capital of France?")
    attempt = routing(answer)["attempts"][0]
    assert answer.content == "Paris is the capital of France."
    assert (attempt["finish_reason"], attempt["accepted"], attempt["cost_estimated"]) == ("stop", True, False)
    sent = server.requests[-1].json()
    headers = server.requests[-1].headers
    assert sent["max_tokens"] == 64 and (headers.get("x-api-key") or headers["authorization"]).endswith(KEY)
    assert attempt["input_tokens"] == answer.usage_metadata["input_tokens"]
    assert attempt["cost_usd"] == pytest.approx((attempt["input_tokens"] * 3 + attempt["output_tokens"] * 15) / 1e6)


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_a_cut_off_answer_is_never_accepted_nor_streamed(server, mode):
    server.reply("cut off", model="cheap-model")
    server.reply("the full answer", model="claude-model")
    server.fail("truncate", times=1)  # stop_reason: max_tokens on the first call (cheap)
    router = PolicyRouter.from_string(policy(server, cascade=("cheap", "claude")))

    async def collect() -> str:
        if mode == "ainvoke":
            return (await router.ainvoke("q")).content
        return "".join([c.content async for c in router.astream("q")])

    if mode.startswith("a"):
        text = asyncio.run(collect())
    else:
        text = router.invoke("q").content if mode == "invoke" else "".join(c.content for c in router.stream("q"))
    assert text == "the full answer"
    assert "cut off" not in text
    assert server.count("cheap-model") == server.count("claude-model") == 1


def test_a_stream_without_its_final_event_is_cut_short(server):
    server.reply("never finished", model="cheap-model")
    server.fail("no_final", times=1)
    text = "".join(c.content for c in PolicyRouter.from_string(policy(server, cascade=("cheap", "claude"))).stream("q"))
    assert text == "Paris is the capital of France."


def test_a_refusal_is_not_accepted(server):
    server.stop_reason = "refusal"
    with pytest.raises(RoutingError) as info:  # nothing complete: failed, never the filtered answer
        PolicyRouter.from_string(policy(server)).invoke("q")
    attempt = info.value.decision.to_dict()["attempts"][0]
    assert (attempt["finish_reason"], attempt["accepted"]) == ("content_filter", False)


def test_an_unknown_stop_reason_is_not_a_complete_answer(server):
    server.stop_reason = "pause_turn"
    with pytest.raises(RoutingError) as info:
        PolicyRouter.from_string(policy(server)).invoke("q")
    attempt = info.value.decision.to_dict()["attempts"][0]
    assert (attempt["truncated"], attempt["accepted"]) == (True, False)


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call(server, stream):
    server.reply(ToolUse("weather", {"city": "Paris"}))
    router = PolicyRouter.from_string(policy(server)).bind_tools([weather])
    if stream:
        merged = None
        for chunk in router.stream("weather in Paris?"):
            merged = chunk if merged is None else merged + chunk
        answer = merged
    else:
        answer = router.invoke("weather in Paris?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("weather", {"city": "Paris"})]
    assert server.requests[-1].json()["tools"][0]["name"] == "weather"


def test_the_input_bound_counts_bytes_and_tools(server):
    router = PolicyRouter.from_string(policy(server))
    text = "日本語のテキスト " * 20
    from langchain_core.messages import HumanMessage

    bare = router.catalog.count_tokens("claude", [HumanMessage(text)])
    assert bare >= len(text.encode())
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    assert router.catalog.count_tokens("claude", [HumanMessage(text)], tools) > bare + 600


def test_the_ceiling_holds_with_the_byte_bound(server):
    text = policy(server, settings="  cost_ceiling: 0.0002\n")
    with pytest.raises(RoutingError, match="no eligible model") as info:
        PolicyRouter.from_string(text).invoke("x" * 200)
    assert "ceiling" in info.value.decision.excluded[0].reason
    assert server.count() == 0


@pytest.mark.parametrize("flag", ["privacy: true", "offline: true"])
def test_privacy_and_offline_exclude_it(server, flag):
    with pytest.raises(RoutingError, match="no eligible model"):
        PolicyRouter.from_string(policy(server, settings=f"  {flag}\n")).invoke("secret")
    assert server.count() == 0


def test_local_true_only_on_loopback(server):
    loads_policy(policy(server, extra="    local: true\n"))
    bad = policy(server).replace(server.base_url, "https://claude.example") + "    local: true\n"
    with pytest.raises(PolicyError, match="loopback") as info:
        loads_policy(bad, "p.yaml", allow_env={"ANTHROPIC_API_KEY"})
    assert info.value.key == "models.claude.local" and info.value.line


@pytest.mark.parametrize(("mode", "kind", "status"), [("rate_limit", "rate_limit", 429),
                                                        ("unavailable", "server", 529),
                                                        ("server", "server", 500)])
def test_errors_are_typed_with_retry_after(server, mode, kind, status):
    server.fail(mode, times=1, retry_after_s=2)
    with pytest.raises(RoutingError) as info:
        PolicyRouter.from_string(policy(server)).invoke("q")
    error = info.value.last_error
    assert (error.kind, error.status_code) == (kind, status)
    if status != 500:
        assert error.retry_after_s == 2
    assert info.value.decision.attempts[0].cost_usd == 0  # refused: not billed


def test_a_wrong_key_is_auth_and_no_key_shows(server, monkeypatch, caplog):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-987654321")
    with pytest.raises(RoutingError) as info:
        PolicyRouter.from_string(policy(server)).invoke("q")
    assert info.value.last_error.kind == "auth"
    shown = str(info.value) + json.dumps(info.value.decision.to_dict(), default=str) + caplog.text
    assert "sk-ant-wrong-key-987654321" not in shown and KEY not in shown


def test_no_key_excludes_it_by_name(server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(RoutingError, match="ANTHROPIC_API_KEY not set"):
        PolicyRouter.from_string(policy(server)).invoke("q")


def test_usage_is_counted_once_when_streamed(server):
    from langchain_core.callbacks import UsageMetadataCallbackHandler

    handler = UsageMetadataCallbackHandler()
    chunks = list(PolicyRouter.from_string(policy(server)).stream("q", config={"callbacks": [handler]}))
    reported = [c.usage_metadata for c in chunks if c.usage_metadata]
    total_in = sum(u["input_tokens"] for u in reported)
    attempt = routing(chunks[-1])["attempts"][0] if "routing" in chunks[-1].response_metadata else None
    assert total_in == (attempt["input_tokens"] if attempt else total_in)
    assert sum(u["input_tokens"] for u in handler.usage_metadata.values()) == total_in


def test_a_missing_package_is_an_exclusion_naming_the_extra():
    adapter = type(get_adapter("anthropic"))()
    adapter.package = "langchain_anthropic_not_installed"
    assert adapter.missing_package_reason() == ("unavailable: package langchain_anthropic_not_installed not "
                                                "installed (pip install 'policy-router[anthropic]')")


def test_the_breaker_opens_on_a_failing_endpoint(server):
    from router.providers.breaker import reset_process_breakers

    reset_process_breakers()
    dead = AnthropicTestServer(api_key=KEY).start()
    dead.fail("server", times=None)
    text = policy(server, cascade=("claude", "other")).replace(server.base_url, dead.base_url, 1)
    router = PolicyRouter.from_string(text)
    runs = [routing(router.invoke("q")) for _ in range(5)]
    dead.stop()
    for run in runs[:3]:
        assert run["attempts"][0]["error"]["kind"] == "server" and run["final_model"] == "other"
    for run in runs[3:]:  # open: the failing model is not called
        assert [a["model"] for a in run["attempts"]] == ["other"]
        assert {e["model"]: e["reason"] for e in run["excluded"]}["claude"].startswith("cooling down")
    assert dead.count("claude-model") == 3 and server.count("other-model") == 5
    reset_process_breakers()
