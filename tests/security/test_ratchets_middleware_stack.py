"""Below ``PolicyMiddleware``, only the router answers: a middleware that swaps the model is
refused before its model sends anything.

Real parts: ``create_agent``, LangChain's own ``ModelFallbackMiddleware``, ``ChatOpenAI`` over
HTTP against the loopback OpenAI-protocol server, which records every request. On main before
this change the fallback model received the private prompt (the router had failed closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelFallbackMiddleware, wrap_model_call
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from security_servers import FakeOpenAIServer

from router import PolicyRouter, loads_policy
from router.errors import PolicyBypassError
from router.langchain.middleware import PolicyMiddleware

POLICY = """
version: 1
name: agent-stack
models:
  gpt: {provider: openai, model: gpt-3.5-turbo, tier: standard, price: {input: 0.5, output: 1.5}, timeout_s: 5}
policy:
  cost_ceiling: 0.01
  max_output_tokens: 4
  cascade: [gpt]
  on_exhausted: raise
rules:
  - name: pii-stays-local
    when: {metadata: {data_class: pii}}
    set: {privacy: true}
"""
SECRET = "My SSN is 078-05-1120"


@dataclass
class Ctx:
    data_class: str = "public"


def network_model(openai_fake: FakeOpenAIServer) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-fallback", base_url=openai_fake.base_url, api_key="sk-fallback", max_retries=0)


def agent(*below: Any) -> Any:
    router = PolicyRouter(policy=loads_policy(POLICY, "stack.yaml"))
    return create_agent(model=router, tools=[], middleware=[PolicyMiddleware(router), *below], context_schema=Ctx)


def assert_not_sent(openai_fake: FakeOpenAIServer) -> None:
    assert openai_fake.count() == 0
    assert all(SECRET.encode() not in r.body for r in openai_fake.requests)


def test_control_the_router_alone_answers_through_its_network_child(network_env: None, openai_fake: FakeOpenAIServer):
    out = agent().invoke({"messages": [HumanMessage("hi")]}, context=Ctx())
    assert out["messages"][-1].response_metadata["routing"]["final_model"] == "gpt"
    assert [r.model for r in openai_fake.requests] == ["gpt-3.5-turbo"]


def test_model_fallback_below_the_policy_does_not_resend_a_private_prompt(network_env: None,
                                                                           openai_fake: FakeOpenAIServer):
    built = agent(ModelFallbackMiddleware(network_model(openai_fake)))
    with pytest.raises(PolicyBypassError) as info:
        built.invoke({"messages": [HumanMessage(SECRET)]}, context=Ctx("pii"))
    assert "ChatOpenAI" in str(info.value)
    assert_not_sent(openai_fake)


async def test_async_model_fallback_is_refused_too(network_env: None, openai_fake: FakeOpenAIServer):
    built = agent(ModelFallbackMiddleware(network_model(openai_fake)))
    with pytest.raises(PolicyBypassError):
        await built.ainvoke({"messages": [HumanMessage(SECRET)]}, context=Ctx("pii"))
    assert_not_sent(openai_fake)


@pytest.mark.parametrize("data_class", ["pii", "public"])
def test_a_custom_model_swap_is_refused_whatever_the_request(network_env: None, openai_fake: FakeOpenAIServer,
                                                             data_class: str):
    """Default deny: a swapped model would skip the ceiling and budgets too, not only privacy."""
    other = network_model(openai_fake)

    @wrap_model_call
    def swap(request: Any, handler: Any) -> Any:
        return handler(request.override(model=other))

    with pytest.raises(PolicyBypassError):
        agent(swap).invoke({"messages": [HumanMessage(SECRET)]}, context=Ctx(data_class))
    assert_not_sent(openai_fake)


def test_a_middleware_calling_its_own_model_below_the_policy_is_refused(network_env: None,
                                                                         openai_fake: FakeOpenAIServer):
    other = network_model(openai_fake)

    @wrap_model_call
    def select_tools(request: Any, handler: Any) -> Any:
        other.invoke(request.messages)  # like LLMToolSelectorMiddleware's selection call
        return handler(request)

    with pytest.raises(PolicyBypassError):
        agent(select_tools).invoke({"messages": [HumanMessage(SECRET)]}, context=Ctx("pii"))
    assert_not_sent(openai_fake)


def test_a_router_of_another_policy_swapped_in_is_refused(network_env: None, openai_fake: FakeOpenAIServer):
    looser = PolicyRouter(policy=loads_policy(POLICY.replace("name: agent-stack", "name: looser")
                                              .split("rules:")[0], "looser.yaml"))

    @wrap_model_call
    def swap(request: Any, handler: Any) -> Any:
        return handler(request.override(model=looser))

    with pytest.raises(PolicyBypassError):
        agent(swap).invoke({"messages": [HumanMessage(SECRET)]}, context=Ctx("pii"))
    assert_not_sent(openai_fake)
