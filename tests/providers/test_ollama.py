"""``provider: ollama``: the real ``ChatOllama`` over ``/api/chat`` (JSON and NDJSON streams)
against our loopback server (tests/servers/ollama.py), under the same enforcement as every provider."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from servers.ollama import OllamaTestServer

from router import PolicyError, PolicyRouter, loads_policy
from router.errors import RoutingError
from router.providers import get_adapter


@pytest.fixture(scope="module")
def server():
    with OllamaTestServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server: OllamaTestServer):
    server.reset()


def policy(server: OllamaTestServer, *, cascade=("tiny",), extra: str = "", settings: str = "",
           local: bool = True) -> str:
    """Ollama models on ``server`` (local: true, context_window 2048); ``extra`` joins the last."""
    models = "".join(f"""  {name}:
    provider: ollama
    model: {name}llama
    base_url: {server.base_url}
    context_window: 2048
""" + ("    local: true\n" if local else "    price: {input: 1, output: 2}\n") for name in cascade)
    return textwrap.dedent(f"""\
        version: 1
        name: ollama
        policy:
          cascade: [{", ".join(cascade)}]
          on_exhausted: best
          max_output_tokens: 32
        """) + settings + "models:\n" + models + extra


def routing(message: Any) -> dict[str, Any]:
    return message.response_metadata["routing"]


def test_an_answer_with_usage_num_ctx_and_num_predict(server):
    answer = PolicyRouter.from_string(policy(server)).invoke("What is the capital of France?")
    attempt = routing(answer)["attempts"][0]
    assert answer.content == "Paris is the capital of France."
    assert (attempt["finish_reason"], attempt["accepted"], attempt["cost_estimated"]) == ("stop", True, False)
    options = server.requests[-1].json()["options"]
    assert (options["num_ctx"], options["num_predict"], options["temperature"]) == (2048, 32, 0.0)
    final_usage = answer.usage_metadata
    assert attempt["input_tokens"] == final_usage["input_tokens"] > 0
    assert attempt["output_tokens"] == final_usage["output_tokens"] == 6


def test_stop_and_seed_travel_in_options(server):
    PolicyRouter.from_string(policy(server)).invoke("q", stop=["\n\n"], seed=7)
    options = server.requests[-1].json()["options"]
    assert (options["stop"], options["seed"], options["num_predict"]) == (["\n\n"], 7, 32)


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_a_cut_off_answer_is_never_accepted_nor_streamed(server, mode):
    server.reply("cut off", model="cheapllama")
    server.reply("the full answer", model="tinyllama")
    server.fail("truncate", times=1)  # done_reason: length on the first call
    router = PolicyRouter.from_string(policy(server, cascade=("cheap", "tiny")))

    async def collect() -> str:
        if mode == "ainvoke":
            return (await router.ainvoke("q")).content
        return "".join([c.content async for c in router.astream("q")])

    if mode.startswith("a"):
        text = asyncio.run(collect())
    else:
        text = router.invoke("q").content if mode == "invoke" else "".join(c.content for c in router.stream("q"))
    assert text == "the full answer"
    assert server.count("cheapllama") == server.count("tinyllama") == 1


@pytest.mark.parametrize("fault", ["no_final", "load"])
def test_a_stream_without_its_done_line_or_a_load_is_not_an_answer(server, fault):
    server.reply("never finished", model="cheapllama")
    if fault == "load":
        server.done_reasons["cheapllama"] = "load"
    else:
        server.fail("no_final", times=1)
    router = PolicyRouter.from_string(policy(server, cascade=("cheap", "tiny")))
    answer = router.invoke("q")
    first = routing(answer)["attempts"][0]
    assert (first["model"], first["accepted"]) == ("cheap", False)
    assert first["truncated"] or first["error"]  # cut short, or the client found no answer in it
    assert answer.content == "Paris is the capital of France."


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_a_tool_call(server):
    server.reply(("weather", {"city": "Paris"}))
    answer = PolicyRouter.from_string(policy(server)).bind_tools([weather]).invoke("weather in Paris?")
    assert [(c["name"], c["args"]) for c in answer.tool_calls] == [("weather", {"city": "Paris"})]
    assert server.requests[-1].json()["tools"][0]["function"]["name"] == "weather"


def test_privacy_and_offline_keep_a_local_ollama_and_exclude_a_remote_one(server):
    text = policy(server, settings="  privacy: true\n")
    assert PolicyRouter.from_string(text).invoke("secret").content
    remote = policy(server, settings="  privacy: true\n", local=False)
    with pytest.raises(RoutingError, match="no eligible model"):
        PolicyRouter.from_string(remote).invoke("secret")


def test_local_true_only_on_loopback_and_a_remote_one_needs_a_price(server):
    remote = policy(server).replace(server.base_url, "http://gpu-box.example:11434")
    with pytest.raises(PolicyError, match="loopback") as info:
        loads_policy(remote, "p.yaml")
    assert info.value.key == "models.tiny.local"
    unpriced = policy(server, local=False).replace("    price: {input: 1, output: 2}\n", "")
    with pytest.raises(PolicyError, match="needs price"):
        loads_policy(unpriced, "p.yaml")


def test_the_ceiling_holds_with_the_byte_bound(server):
    router = PolicyRouter.from_string(policy(server, local=False, settings="  cost_ceiling: 0.0001\n"))
    text = "日本語 " * 40
    assert router.catalog.count_tokens("tiny", [HumanMessage(text)]) >= len(text.encode())
    with pytest.raises(RoutingError, match="no eligible model"):
        router.invoke("x" * 400)
    assert server.count() == 0


def test_the_default_endpoint_is_ollama_host(monkeypatch):
    spec = loads_policy(textwrap.dedent("""\
        version: 1
        name: o
        policy: {cascade: [m]}
        models:
          m: {provider: ollama, model: tinyllama, local: true}
        """)).models["m"]
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert get_adapter("ollama").base_url(spec) == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9999")
    assert get_adapter("ollama").base_url(spec) == "http://127.0.0.1:9999"


@pytest.mark.parametrize(("mode", "kind"), [("server", "server"), ("rate_limit", "rate_limit")])
def test_errors_are_typed(server, mode, kind):
    server.fail(mode, times=1)
    with pytest.raises(RoutingError) as info:
        PolicyRouter.from_string(policy(server)).invoke("q")
    assert info.value.last_error.kind == kind


def test_a_server_that_is_down_is_a_connection_error_never_billed(server):
    text = policy(server, local=False).replace(server.base_url, "http://127.0.0.1:9")
    with pytest.raises(RoutingError) as info:
        PolicyRouter.from_string(text).invoke("q")
    attempt = info.value.decision.attempts[0]
    assert info.value.last_error.kind == "connection" and attempt.cost_usd == 0


def test_a_missing_package_is_an_exclusion_naming_the_extra():
    adapter = type(get_adapter("ollama"))()
    adapter.package = "langchain_ollama_not_installed"
    assert "pip install 'policy-router[ollama]'" in adapter.missing_package_reason()
