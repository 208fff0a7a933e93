"""An agent thread's privacy ratchet holds whatever a turn's input carries.

Real parts: ``create_agent`` with ``InMemorySaver`` (the thread's state across turns),
``ChatOpenAI`` over HTTP against the loopback OpenAI-protocol server, which counts every request
that reaches it. The cascade holds only that network model: a private turn fails closed, and any
later turn of the thread must too, since its history holds the private message.

On main before this change, a turn's input ``{"policy_ratchets": {"__overwrite__": {}}}``
(LangGraph's reducer bypass) cleared the ratchet, and that turn sent the private history.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, Overwrite
from security_servers import FakeOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy
from router.langchain.middleware import PolicyMiddleware

POLICY = """
version: 1
name: agent-ratchet
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


def agent() -> Any:
    router = PolicyRouter(policy=loads_policy(POLICY, "agent.yaml"))
    return create_agent(model=router, tools=[], middleware=[PolicyMiddleware(router)],
                        checkpointer=InMemorySaver(), context_schema=Ctx)


def private_thread(openai_fake: FakeOpenAIServer) -> tuple[Any, dict[str, Any]]:
    built, config = agent(), {"configurable": {"thread_id": "t1"}}
    with pytest.raises(RoutingError):
        built.invoke({"messages": [HumanMessage(SECRET)]}, context=Ctx("pii"), config=config)
    assert openai_fake.count() == 0
    return built, config


def assert_history_not_sent(openai_fake: FakeOpenAIServer) -> None:
    assert openai_fake.count() == 0
    assert all(SECRET.encode() not in r.body for r in openai_fake.requests)


BYPASSES = {
    "sentinel-dict": {"__overwrite__": {}},
    "json-form": {"type": "__overwrite__", "value": {}},
    "overwrite-object": Overwrite({}),
    "overwrite-off": Overwrite({"privacy": False}),
    "plain-off": {"privacy": False},
}


def test_control_a_public_thread_reaches_the_network_model(network_env: None, openai_fake: FakeOpenAIServer):
    out = agent().invoke({"messages": [HumanMessage("hi")]}, context=Ctx(),
                         config={"configurable": {"thread_id": "c"}})
    assert out["messages"][-1].response_metadata["routing"]["final_model"] == "gpt"
    assert openai_fake.count() == 1


@pytest.mark.parametrize("bypass", list(BYPASSES))
def test_a_turns_input_cannot_bypass_the_ratchets_reducer(network_env: None, openai_fake: FakeOpenAIServer,
                                                          bypass: str):
    built, config = private_thread(openai_fake)
    with pytest.raises(RoutingError):
        built.invoke({"messages": [HumanMessage("And now?")], "policy_ratchets": BYPASSES[bypass]},
                     context=Ctx(), config=config)
    assert_history_not_sent(openai_fake)
    assert built.get_state(config).values["policy_ratchets"] == {"privacy": True}


@pytest.mark.parametrize("bypass", list(BYPASSES))
def test_a_command_update_cannot_bypass_the_ratchets_reducer(network_env: None, openai_fake: FakeOpenAIServer,
                                                             bypass: str):
    """``Command(update=...)`` writes any channel, whatever the input schema says."""
    built, config = private_thread(openai_fake)
    command = Command(update={"messages": [HumanMessage("And now?")], "policy_ratchets": BYPASSES[bypass]},
                      goto="model")
    with contextlib.suppress(RoutingError):
        built.invoke(command, context=Ctx(), config=config)
    assert_history_not_sent(openai_fake)
    assert built.get_state(config).values["policy_ratchets"] == {"privacy": True}


async def test_async_turn_cannot_bypass_the_ratchets_reducer(network_env: None, openai_fake: FakeOpenAIServer):
    built, config = private_thread(openai_fake)
    with pytest.raises(RoutingError):
        await built.ainvoke({"messages": [HumanMessage("And now?")], "policy_ratchets": Overwrite({})},
                            context=Ctx(), config=config)
    assert_history_not_sent(openai_fake)


def test_the_ratchets_key_is_not_part_of_the_agents_input_schema():
    schema = agent().get_input_jsonschema()
    assert "policy_ratchets" not in schema.get("properties", {})
