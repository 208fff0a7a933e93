"""``provider: instance``: chat model objects bound by name with ``models=`` on every constructor."""

from __future__ import annotations

import textwrap

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_ollama import ChatOllama
from servers.anthropic import AnthropicTestServer
from servers.ollama import OllamaTestServer

from router import PolicyError, PolicyRouter, loads_policy
from router.errors import RoutingError

KEY = "sk-ant-instance-0123456789"
POLICY = textwrap.dedent("""\
    version: 1
    name: objects
    policy:
      cascade: [mine, other]
      on_exhausted: best
    models:
      mine:
        provider: instance
        price: {input: 3, output: 15}
      other:
        provider: instance
        local: true
    """)


@pytest.fixture(scope="module")
def claude():
    with AnthropicTestServer(api_key=KEY) as server:
        yield server


def claude_object(server: AnthropicTestServer) -> ChatAnthropic:
    return ChatAnthropic(model="claude-x", api_key=KEY, base_url=server.base_url, max_retries=0)


def test_every_constructor_takes_models(claude, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    obj = claude_object(claude)
    routers = [PolicyRouter.from_yaml(path, models={"mine": obj}),
               PolicyRouter.from_yaml(path, models={"mine": obj}, reload=True),
               PolicyRouter.from_policy(str(path), models={"mine": obj}),
               PolicyRouter.from_string(POLICY, models={"mine": obj}),
               PolicyRouter(policy=loads_policy(POLICY), models={"mine": obj})]
    for router in routers:
        answer = router.invoke("What is the capital of France?")
        attempt = answer.response_metadata["routing"]["attempts"][0]
        assert (answer.content, attempt["model"], attempt["provider"]) == (
            "Paris is the capital of France.", "mine", "instance")
        assert attempt["cost_usd"] == pytest.approx((attempt["input_tokens"] * 3 + attempt["output_tokens"] * 15) / 1e6)


def test_from_dict_takes_models(claude):
    data = {"version": 1, "name": "d", "policy": {"cascade": ["mine"]},
            "models": {"mine": {"provider": "instance", "price": {"input": 1, "output": 1}}}}
    answer = PolicyRouter.from_dict(data, models={"mine": claude_object(claude)}).invoke("q")
    assert answer.content == "Paris is the capital of France."


def test_an_unbound_entry_is_excluded_saying_how_to_bind_it():
    router = PolicyRouter.from_string(POLICY)
    with pytest.raises(RoutingError, match="no eligible model") as info:
        router.invoke("q")
    reasons = {e.model: e.reason for e in info.value.decision.excluded}
    assert "models={'mine': chat_model}" in reasons["mine"]


def test_a_bound_name_that_is_not_an_instance_entry_is_an_error(claude):
    text = POLICY + "  gpt:\n    provider: openai\n    model: gpt-x\n    price: {input: 1, output: 1}\n"
    with pytest.raises(PolicyError, match="binds only to a provider: instance entry") as info:
        PolicyRouter.from_string(text, models={"gpt": claude_object(claude)})
    assert info.value.key == "models.gpt"
    with pytest.raises(PolicyError, match="names no model") as info:
        PolicyRouter.from_string(POLICY, models={"mien": claude_object(claude)})
    assert info.value.suggestion == "mine"
    with pytest.raises(PolicyError, match="not a LangChain chat model"):
        PolicyRouter.from_string(POLICY, models={"mine": object()})


def test_an_instance_needs_a_price_unless_local():
    with pytest.raises(PolicyError, match="needs price"):
        loads_policy(POLICY.replace("    price: {input: 3, output: 15}\n", ""))


def test_privacy_uses_only_the_local_object(claude):
    with OllamaTestServer() as ollama:
        local = ChatOllama(model="tinyllama", base_url=ollama.base_url)
        router = PolicyRouter.from_string(POLICY.replace("on_exhausted: best", "on_exhausted: best\n  privacy: true"),
                                          models={"mine": claude_object(claude), "other": local})
        before = claude.count()
        answer = router.invoke("my secret")
        assert answer.response_metadata["routing"]["attempts"][0]["model"] == "other"
        assert claude.count() == before and ollama.count() == 1


def test_a_cut_off_answer_of_an_object_escalates(claude):
    with OllamaTestServer() as ollama:
        claude.reset()
        claude.fail("truncate", times=1)
        router = PolicyRouter.from_string(POLICY, models={"mine": claude_object(claude),
                                                          "other": ChatOllama(model="t", base_url=ollama.base_url)})
        answer = router.invoke("q")
        attempts = answer.response_metadata["routing"]["attempts"]
        assert [(a["model"], a["accepted"]) for a in attempts] == [("mine", False), ("other", True)]
