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
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import InvalidUpdateError
from langgraph.types import Command, Overwrite
from security_servers import FakeOpenAIServer

from router import PolicyRouter, RoutingError, loads_policy
from router.langchain.middleware import PolicyMiddleware, RatchetChannel

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
    "nested": Overwrite({"__overwrite__": Overwrite({})}),
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


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.sampled_from(["false", "0", ""]))
PAYLOADS = st.recursive(
    st.one_of(SCALARS, st.dictionaries(st.sampled_from(["privacy", "offline", "__overwrite__", "type", "value"]),
                                       SCALARS, max_size=3)),
    lambda inner: st.one_of(st.builds(Overwrite, inner), st.dictionaries(
        st.sampled_from(["privacy", "offline", "__overwrite__", "type", "value"]), inner, max_size=3),
        st.lists(inner, max_size=2)),
    max_leaves=6)


@settings(max_examples=400, deadline=None, database=None)
@given(kept=st.sets(st.sampled_from(["privacy", "offline"]), min_size=1), updates=st.lists(PAYLOADS, max_size=4))
def test_property_no_write_removes_a_switch(kept: set[str], updates: list[Any]):
    """Whatever a turn, a Command or a tool writes to the channel, every switch on stays on."""
    channel = RatchetChannel().from_checkpoint(dict.fromkeys(kept, True))
    for update in updates:
        with contextlib.suppress(InvalidUpdateError):
            channel.update([update])
    assert {k for k, v in channel.get().items() if v is True} >= kept
    assert set(channel.get().values()) <= {True}


def test_an_overwrite_of_itself_adds_nothing_and_ends():
    cycle: dict[str, Any] = {}
    cycle["__overwrite__"] = cycle
    channel = RatchetChannel().from_checkpoint({"privacy": True})
    channel.update([cycle])
    assert channel.get() == {"privacy": True}
