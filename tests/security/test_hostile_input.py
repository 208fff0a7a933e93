"""Bounded work on hostile model output (issue 24, point 7): tool-call arguments nested 300 deep
and a schema ``pattern`` with catastrophic backtracking are rejected in bounded time, never a
RecursionError nor seconds doubling per character. The real ChatOpenAI client reads the tool
call from a loopback server; the model's arguments are whatever the server writes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from spend.money_server import MoneyServer, Reply

from router import PolicyRouter, RoutingError
from router.routing.completeness import completeness
from router.routing.tokens import count_answer_tokens, count_openai_tokens
from router.routing.tool_args import MAX_DEPTH, args_problem, dumps

RECURSIVE = {"type": "function", "function": {"name": "walk", "description": "Walk a tree.", "parameters": {
    "type": "object", "properties": {"node": {"$ref": "#/$defs/Node"}},
    "$defs": {"Node": {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"},
                                                                             {"type": "null"}]}}}}}}}
BACKTRACKING = {"type": "function", "function": {"name": "spell", "description": "Spell a word.", "parameters": {
    "type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"},
                                     "code": {"type": "string", "pattern": "^(a|aa|aaa)+$"}},
    "patternProperties": {"^(b+)+$": {"type": "string"}}, "additionalProperties": False}}}


@pytest.fixture(scope="module")
def money() -> Iterator[MoneyServer]:
    with MoneyServer() as running:
        yield running  # type: ignore[misc]


@pytest.fixture
def server(money: MoneyServer, monkeypatch: pytest.MonkeyPatch) -> MoneyServer:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return money


def make_router(server: MoneyServer) -> PolicyRouter:
    return PolicyRouter(policy={
        "version": 1, "name": "hostile", "models": {"gpt": {
            "provider": "openai", "model": "gpt-x", "base_url": server.base_url, "tier": "basic",
            "api_key_env": "OPENAI_API_KEY", "price": {"input": 1.0, "output": 1.0}}},
        "policy": {"cost_ceiling": 1.0, "cascade": ["gpt"], "on_exhausted": "raise"}})


def nested(depth: int) -> str:
    return '{"node": ' + '{"child": ' * depth + "null" + "}" * depth + "}"


@pytest.mark.parametrize("depth", [300, 900])
def test_deeply_nested_tool_arguments_are_a_rejected_answer(server: MoneyServer, depth: int):
    server.script(Reply(tool_call=("walk", nested(depth)), finish_reason="tool_calls"))
    with pytest.raises(RoutingError) as info:
        make_router(server).bind_tools([RECURSIVE]).invoke("Walk it.")
    [attempt] = info.value.decision.attempts
    assert attempt.checks[0].check == "complete" and not attempt.checks[0].passed
    assert f"nested deeper than {MAX_DEPTH} levels" in (attempt.checks[0].detail or "")


def test_a_catastrophic_pattern_is_bounded_in_time(server: MoneyServer):
    router = make_router(server).bind_tools([BACKTRACKING])
    timings = []
    for n in (24, 28, 32):
        server.script(Reply(tool_call=("spell", json.dumps({"word": "a" * n + "b"})), finish_reason="tool_calls"))
        started = time.perf_counter()
        with pytest.raises(RoutingError) as info:
            router.invoke("Spell it.")
        timings.append(time.perf_counter() - started)
        detail = info.value.decision.attempts[0].checks[0].detail or ""
        assert "ran out of time" in detail or "fails pattern" in detail
    assert max(timings) < 2.0, timings  # on re: ~1.0 s at 24 characters, x20 per 4 more


def test_a_pattern_that_runs_out_of_time_is_not_accepted(server: MoneyServer):
    router = make_router(server).bind_tools([BACKTRACKING])
    server.script(Reply(tool_call=("spell", json.dumps({"word": "aa", "code": "a" * 40 + "!"})),
                        finish_reason="tool_calls"))
    started = time.perf_counter()
    with pytest.raises(RoutingError) as info:
        router.invoke("Spell it.")
    assert time.perf_counter() - started < 2.0
    assert "ran out of time" in (info.value.decision.attempts[0].checks[0].detail or "")


def test_a_catastrophic_property_name_is_bounded_in_time():
    message = AIMessage("", tool_calls=[{"name": "spell", "args": {"word": "a", "b" * 40 + "c": "x"}, "id": "1"}],
                        response_metadata={"finish_reason": "tool_calls"})
    started = time.perf_counter()
    ended = completeness(message, tools=[BACKTRACKING])
    assert time.perf_counter() - started < 2.0
    assert ended.problem is not None


def test_a_valid_call_still_passes():
    message = AIMessage("", tool_calls=[{"name": "spell", "args": {"word": "aaaa", "bbb": "x"}, "id": "1"}],
                        response_metadata={"finish_reason": "tool_calls"})
    assert completeness(message, tools=[BACKTRACKING]).problem is None
    bad = AIMessage("", tool_calls=[{"name": "spell", "args": {"word": "ab"}, "id": "1"}],
                    response_metadata={"finish_reason": "tool_calls"})
    assert "fails pattern" in (completeness(bad, tools=[BACKTRACKING]).problem or "")


def test_deep_arguments_in_the_history_are_counted_not_a_crash():
    """A conversation's earlier tool call nested 5,000 deep: token counting (selection, and the
    estimate of an answer's usage) serializes it without recursion."""
    args: Any = None
    for _ in range(5000):
        args = {"child": args}
    message = AIMessage("", tool_calls=[{"name": "walk", "args": args, "id": "1"}])
    assert count_openai_tokens([message]) > 5000
    assert count_answer_tokens(message) > 5000


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=4),
                           max_leaves=40)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_dumps_is_json_dumps(value: Any):
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert json.loads(dumps(value)) == value


@settings(max_examples=100, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=2000))
def test_any_arguments_are_checked_without_a_crash(value: Any, depth: int):
    args: Any = {"node": value}
    for _ in range(depth):
        args = {"child": args}
    message = AIMessage("", tool_calls=[{"name": "walk", "args": args, "id": "1"}],
                        response_metadata={"finish_reason": "tool_calls"})
    ended = completeness(message, tools=[RECURSIVE])
    if args_problem(args) is not None:
        assert ended.problem is not None


def test_an_answer_nested_too_deep_fails_the_json_check_cleanly():
    from router.checks.builtin import Answer, JsonCheck

    text = "[" * 100_000 + "]" * 100_000
    result = JsonCheck(check="json").run(Answer(model="m", text=text, message=AIMessage(text)), None)
    assert (result.passed, result.detail) == (False, "not JSON: nested too deep to parse")


def test_a_local_tool_reply_nested_too_deep_stays_text():
    from langchain_core.messages import HumanMessage

    from router.providers.llama_tools import plan_tools

    plan = plan_tools([HumanMessage("go")], [RECURSIVE], "walk")
    text = '{"name": "walk", "arguments": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert plan.reply(text) == (text, [])
