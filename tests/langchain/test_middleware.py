"""``PolicyMiddleware`` puts every model call of a ``create_agent`` agent under a policy.

Real parts: LangChain's ``create_agent`` and LangGraph's ``InMemorySaver`` (threads), the bundled
SmolLM2 under llama.cpp as the local rung, ``ChatGoogleGenerativeAI`` over HTTP against our
Gemini test server on 127.0.0.1 as the network rung (its request count proves where a prompt
went), and the router's memory ledger for budgets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NotRequired

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel
from servers.gemini import GeminiTestServer

from router import PolicyRouter, RoutingError, loads_policy
from router.langchain.middleware import PolicyMiddleware, PolicyMiddlewareError, PolicyState
from router.providers.llamacpp import LlamaCppChat, resolve_gguf

# gemma (completion-style) gives a whole short answer; SmolLM2 runs past max_output_tokens, and a
# cut-off answer is no answer (issue 25), so the local rung would end every private turn failed.
LOCAL = """  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    n_threads: 1
"""
GEMINI = """  gemini-flash:
    provider: google_genai
    model: gemini-2.0-flash
    tier: standard
    price: {input: 250, output: 1000}
    max_retries: 0
"""
PRIVACY_POLICY = f"""
version: 1
name: agent-privacy
models:
{LOCAL}{GEMINI}
policy:
  max_output_tokens: 32
  cascade: [gemma, gemini-flash]
  confidence:
    - check: regex
      pattern: '^Paris is the capital'
rules:
  - name: pii-stays-local
    when: {{metadata: {{data_class: pii}}}}
    set: {{privacy: true}}
"""
# One Gemini call fits in each budget: its worst case, (input bound + 32 output tokens) priced
# at $250/M in and $1000/M out (the input bound is one token per UTF-8 byte), is below $0.05;
# the actual cost settled after it leaves less than that.
BUDGET_POLICY = f"""
version: 1
name: agent-budget
models:
{GEMINI}
policy:
  cost_ceiling: 1.0
  max_output_tokens: 32
  cascade: [gemini-flash]
budgets:
  - name: per-key
    period: day
    limit_usd: 0.05
    per: {{per}}
ledger: memory://
"""
QUESTION = "What is the capital of France?"


@dataclass
class Ctx:
    user: str = "anon"
    data_class: str = "public"


class PiiState(PolicyState):
    data_class: NotRequired[str]


@pytest.fixture(scope="module")
def gemini_module() -> Iterator[GeminiTestServer]:
    with GeminiTestServer(api_key="test-gemini-key-mw") as server:
        yield server


@pytest.fixture
def gemini(gemini_module: GeminiTestServer, monkeypatch: pytest.MonkeyPatch) -> GeminiTestServer:
    gemini_module.reset()
    monkeypatch.setenv("GOOGLE_API_KEY", gemini_module.api_key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini_module.base_url)
    for var in ("GEMINI_API_KEY", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)
    return gemini_module


def _agent(policy: str, **kwargs):
    router = PolicyRouter(policy=loads_policy(policy, "agent.yaml"))
    return create_agent(model=router, middleware=[PolicyMiddleware(router)], checkpointer=InMemorySaver(),
                        **{"tools": [], "context_schema": Ctx, **kwargs})


def _turn(agent, thread: str, source: str, data_class: str, text: str = QUESTION) -> dict:
    state: dict = {"messages": [HumanMessage(text)]}
    context = Ctx(user="ann")
    if source == "context":
        context = Ctx(user="ann", data_class=data_class)
    else:
        state["data_class"] = data_class
    out = agent.invoke(state, context=context, config={"configurable": {"thread_id": thread}})
    out["routing"] = out["messages"][-1].response_metadata["routing"]
    return out


@pytest.mark.parametrize("source", ["context", "state"])
def test_pii_flag_turns_privacy_on_for_the_rest_of_the_thread(gemini: GeminiTestServer, source: str):
    agent = _agent(PRIVACY_POLICY, state_schema=PiiState)

    first = _turn(agent, "t1", source, "pii")
    assert first["routing"]["rule"] == "pii-stays-local" and first["routing"]["effective"]["privacy"] is True
    assert {"model": "gemini-flash", "reason": "not local: privacy"} in first["routing"]["excluded"]
    assert first["policy_ratchets"] == {"privacy": True}
    assert gemini.count() == 0

    later = _turn(agent, "t1", source, "public", "And the capital of Italy?")  # the flag is gone
    assert later["routing"]["effective"]["privacy"] is True and later["routing"].get("rule") is None
    assert [a["model"] for a in later["routing"]["attempts"]] == ["gemma"]
    assert gemini.count() == 0

    other = _turn(agent, "t2", source, "public")  # another thread: the policy as written
    assert other["routing"]["effective"]["privacy"] is False
    assert other["routing"]["final_model"] == "gemini-flash" and gemini.count() == 1
    assert not other.get("policy_ratchets")  # no switch on (the reducer's channel starts as {})


async def test_async_agent_runs_under_the_policy(gemini: GeminiTestServer):
    agent = _agent(PRIVACY_POLICY)
    config = {"configurable": {"thread_id": "a1"}}
    out = await asyncio.wait_for(agent.ainvoke({"messages": [HumanMessage(QUESTION)]},
                                               context=Ctx(data_class="pii"), config=config), timeout=120)
    assert out["messages"][-1].response_metadata["routing"]["effective"]["privacy"] is True
    assert gemini.count() == 0
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=Ctx(), config=config)
    assert out["messages"][-1].response_metadata["routing"]["effective"]["privacy"] is True
    assert gemini.count() == 0


CLOUD_ONLY = PRIVACY_POLICY.replace("  cascade: [gemma, gemini-flash]", "  cascade: [gemini-flash]")


def test_a_private_turn_that_fails_still_keeps_the_thread_private(gemini: GeminiTestServer):
    """The pii turn has no local model and fails closed; its message stays in the thread's
    history, so the next (public) turn must not send it to the network model either. On main
    the ratchet was recorded only after a successful call, and the next turn sent it."""
    agent = _agent(CLOUD_ONLY)
    with pytest.raises(RoutingError):
        _turn(agent, "t1", "context", "pii", "My SSN is 123-45-6789")
    with pytest.raises(RoutingError):
        _turn(agent, "t1", "context", "public")
    assert gemini.count() == 0
    assert _turn(agent, "t2", "context", "public")["routing"]["final_model"] == "gemini-flash"  # control


def test_a_turns_input_cannot_turn_a_ratchet_off(gemini: GeminiTestServer):
    agent = _agent(PRIVACY_POLICY)
    assert _turn(agent, "t1", "context", "pii")["policy_ratchets"] == {"privacy": True}
    out = agent.invoke({"messages": [HumanMessage(QUESTION)], "policy_ratchets": {"privacy": False}},
                       context=Ctx(user="ann"), config={"configurable": {"thread_id": "t1"}})
    assert out["policy_ratchets"] == {"privacy": True}
    assert out["messages"][-1].response_metadata["routing"]["effective"]["privacy"] is True
    assert gemini.count() == 0


@pytest.mark.parametrize("per", ["user", "thread_id"])
def test_budget_per_user_or_per_thread(gemini: GeminiTestServer, per: str):
    """``user`` comes from the runtime context, ``thread_id`` from LangGraph's run metadata."""
    agent = _agent(BUDGET_POLICY.replace("{per}", per))

    def ask(user: str, thread: str) -> AIMessage:
        out = agent.invoke({"messages": [HumanMessage(QUESTION)]}, context=Ctx(user=user),
                           config={"configurable": {"thread_id": thread}})
        return out["messages"][-1]

    assert ask("ann", "t1").response_metadata["routing"]["final_model"] == "gemini-flash"
    with pytest.raises(RoutingError) as refused:
        ask("ann", "t1")
    (reason,) = [e.reason for e in refused.value.decision.excluded]
    key = "user='ann'" if per == "user" else "thread_id='t1'"
    assert reason.startswith(f"over budget 'per-key' for {key}")
    assert ask("bob", "t2").response_metadata["routing"]["final_model"] == "gemini-flash"
    assert gemini.count() == 2


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny and 21 C in {city}."


def test_the_router_answers_every_model_call_not_the_agents_model():
    """The agent's own model here is Gemma, which would copy the call pattern forever (see
    test_agents); the middleware's router (SmolLM2, offline) answers every turn instead."""
    router = PolicyRouter(policy=loads_policy(PRIVACY_POLICY.replace("  cascade: [gemma, gemini-flash]",
                                                                     "  offline: true\n  cascade: [gemma]")))
    gemma = LlamaCppChat(model_path=str(resolve_gguf("bundled:gemma-3-270m")), chat_format="qa", n_threads=1)
    agent = create_agent(model=gemma, tools=[get_weather], middleware=[PolicyMiddleware(router)])
    demo = [HumanMessage("What is the weather in Rome?"),
            AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "demo-1"}]),
            ToolMessage("Rainy, 12 C.", tool_call_id="demo-1", name="get_weather"),
            AIMessage("It is rainy and 12 C in Rome.")]
    out = agent.invoke({"messages": [*demo, HumanMessage("What is the weather in Paris?")]},
                       config={"recursion_limit": 6})
    call, result, answer = out["messages"][len(demo) + 1:]
    assert call.tool_calls[0]["args"] == {"city": "Paris"} and isinstance(result, ToolMessage)
    assert "sunny" in answer.content.lower()
    assert {m.response_metadata["routing"]["final_model"] for m in (call, answer)} == {"gemma"}


class Capital(BaseModel):
    """The capital city of a country."""

    country: str
    city: str


def test_structured_output_goes_through_the_agents_own_handling():
    router = PolicyRouter(policy=loads_policy(PRIVACY_POLICY.replace("  cascade: [gemma, gemini-flash]",
                                                                     "  offline: true\n  cascade: [gemma]")))
    agent = create_agent(model=router, tools=[], middleware=[PolicyMiddleware(router)],
                         response_format=ToolStrategy(Capital))
    out = agent.invoke({"messages": [HumanMessage("The capital of France is Paris. Fill in the country and city.")]},
                       config={"recursion_limit": 6})
    assert isinstance(out["structured_response"], Capital)
    assert out["messages"][1].response_metadata["routing"]["final_model"] == "gemma"


def test_without_a_router_the_agents_model_must_be_one():
    gemma = LlamaCppChat(model_path=str(resolve_gguf("bundled:gemma-3-270m")), chat_format="qa", n_threads=1)
    agent = create_agent(model=gemma, tools=[], middleware=[PolicyMiddleware()])
    with pytest.raises(PolicyMiddlewareError, match="needs a router"):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})
    router = PolicyRouter(policy=loads_policy(PRIVACY_POLICY.replace("  cascade: [gemma, gemini-flash]",
                                                                     "  offline: true\n  cascade: [gemma]")))
    out = create_agent(model=router, tools=[], middleware=[PolicyMiddleware()]).invoke(
        {"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].response_metadata["routing"]["effective"]["offline"] is True
