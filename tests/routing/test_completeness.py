"""The real local model stopped by ``max_output_tokens`` is never accepted (issue 9, item 1)."""

from __future__ import annotations

import pytest

from router import PolicyRouter, RoutingError, loads_policy
from router.routing.completeness import completeness, normalise_finish_reason

POLICY = """
version: 1
name: local-truncation
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
  gemma-long:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
    tier: standard
policy:
  max_output_tokens: {max_tokens}
  cascade: {cascade}
  confidence: [{{check: min_length, chars: 2}}]
  on_exhausted: {on_exhausted}
"""
PRIMES = "List the first twenty prime numbers, separated by commas."


def route(max_tokens: int, cascade: str = "[gemma]", on_exhausted: str = "best", *, stream: bool = False,
          prompt: str = PRIMES):
    router = PolicyRouter(policy=loads_policy(POLICY.format(max_tokens=max_tokens, cascade=cascade,
                                                            on_exhausted=on_exhausted)))
    if stream:
        chunks = list(router.stream(prompt))
        return "".join(str(c.content) for c in chunks), chunks[-1].response_metadata["routing"]
    msg = router.invoke(prompt)
    return str(msg.content), msg.response_metadata["routing"]


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_a_list_cut_at_max_output_tokens_is_no_answer(stream: bool):
    """Cut off is never accepted, and never returned as "best" either (issue 25): with nothing
    complete the request fails with the record."""
    with pytest.raises(RoutingError) as raised:
        route(4, stream=stream)
    decision = raised.value.decision
    (attempt,) = decision.attempts
    assert attempt.output_tokens == 4 and attempt.finish_reason == "length"
    assert attempt.truncated is True and attempt.accepted is False
    assert decision.status == "failed" and decision.final_model is None


def test_a_cut_answer_escalates_and_raise_means_raise():
    with pytest.raises(RoutingError) as raised:
        route(4, on_exhausted="raise")
    assert raised.value.decision.attempts[0].truncated is True
    with pytest.raises(RoutingError) as raised:
        route(4, cascade="[gemma, gemma-long]")
    assert [(a.model, a.truncated) for a in raised.value.decision.attempts] == [("gemma", True), ("gemma-long", True)]


def test_a_whole_answer_is_complete():
    _, routing = route(64, prompt="What is the capital of France?")
    (attempt,) = routing["attempts"]
    assert attempt["finish_reason"] == "stop" and attempt["truncated"] is False
    assert routing["status"] == "accepted" and routing["truncated"] is False


@pytest.mark.parametrize(("raw", "normal"), [
    ("stop", "stop"), ("STOP", "stop"), ("length", "length"), ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"), ("content_filter", "content_filter"), ("tool_calls", "tool_calls"),
    ("function_call", "tool_calls"), ("OTHER", "unknown"), (None, "unknown"),
])
def test_finish_reasons_are_normalised(raw, normal):
    assert normalise_finish_reason(raw) == normal


def test_an_unparsed_tool_call_is_not_complete():
    from langchain_core.messages import AIMessage

    msg = AIMessage("", invalid_tool_calls=[{"name": "get_weather", "args": '{"city": "Par', "id": "1",
                                             "error": "bad json", "type": "invalid_tool_call"}],
                    response_metadata={"finish_reason": "tool_calls"})
    verdict = completeness(msg)
    assert verdict.finish_reason == "tool_calls" and verdict.problem == "tool call did not parse: get_weather"


def test_structured_output_cut_at_the_token_limit_is_not_accepted():
    """A forced tool call (with_structured_output) whose JSON runs into max_output_tokens."""
    from pydantic import BaseModel

    class Primes(BaseModel):
        primes: list[int]

    router = PolicyRouter(policy=loads_policy(POLICY.format(max_tokens=6, cascade="[gemma]", on_exhausted="best")))
    with pytest.raises(RoutingError) as raised:  # a cut tool call is no answer, not even "best"
        router.with_structured_output(Primes, include_raw=True).invoke(PRIMES)
    (attempt,) = raised.value.decision.attempts
    assert attempt.truncated is True and attempt.accepted is False
    assert raised.value.decision.status == "failed"
    strict = PolicyRouter(policy=loads_policy(POLICY.format(max_tokens=6, cascade="[gemma]", on_exhausted="raise")))
    with pytest.raises(RoutingError) as raised:
        strict.with_structured_output(Primes).invoke(PRIMES)
    assert raised.value.decision.attempts[0].truncated is True


def test_on_exhausted_best_prefers_a_complete_answer_to_a_cut_one():
    """Driven by hand (the cascade is sans-IO): the first rung's answer is cut at the limit and
    more confident, the second is whole; both fail the checks. ``best`` returns the whole one
    (a truncated tool call's JSON, say, is no tool call at all)."""
    from langchain_core.messages import AIMessage

    from router.routing.cascade import drive, run_cascade
    from router.routing.model_call import CallOutcome

    text = POLICY.format(max_tokens=8, cascade="[gemma, gemma-long]", on_exhausted="best")
    router = PolicyRouter(policy=loads_policy(text.replace("chars: 2", "chars: 500")))
    replies = {"gemma": (AIMessage("2, 3, 5, 7,", response_metadata={"finish_reason": "length"}), -0.1),
               "gemma-long": (AIMessage("Primes.", response_metadata={"finish_reason": "stop"}), -3.0)}

    def answer(call):
        message, logprob = replies[call.model]
        return CallOutcome(call.model, message=message, output_tokens=4, token_logprobs=(logprob,) * 4)

    result = drive(run_cascade(router.plan(PRIMES)), answer)
    assert [a.truncated for a in result.decision.attempts] == [True, False]
    assert result.decision.status == "exhausted"
    assert result.decision.final_model == "gemma-long" and result.message.content == "Primes."


MAGIC = {"type": "function", "function": {"name": "magic_function", "description": "Apply a magic function.",
                                           "parameters": {"type": "object", "required": ["input"], "properties": {
                                               "input": {"type": "integer", "exclusiveMinimum": -1000,
                                                         "exclusiveMaximum": 1000}}}}}


def _call(name: str, args: dict):
    from langchain_core.messages import AIMessage

    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "c1", "type": "tool_call"}],
                     response_metadata={"finish_reason": "tool_calls"})


@pytest.mark.parametrize(("args", "name", "problem"), [
    ({"input": 3}, "magic_function", None),
    ({"input": 1000000000000000}, "magic_function",
     "tool call arguments of magic_function break its schema: input fails exclusiveMaximum 1000"),
    ({}, "magic_function", "tool call arguments of magic_function break its schema: (arguments) fails required ['input']"),
    ({"input": "three"}, "magic_function", "tool call arguments of magic_function break its schema: input fails type 'integer'"),
    ({"input": 3}, "other_function", "tool call names no bound tool: other_function"),
])
def test_tool_calls_are_checked_against_the_bound_schemas(args, name, problem):
    verdict = completeness(_call(name, args), tools=[MAGIC])
    assert verdict.problem == problem
    assert "1000000000000000" not in str(verdict.problem) and "three" not in str(verdict.problem)  # no values


def test_a_tool_call_breaking_its_schema_escalates():
    """Driven by hand: the first rung calls the tool with an out-of-range argument (what the 270M
    model does for magic_function(3)); the second rung's valid call is accepted."""
    from router.routing.cascade import drive, run_cascade
    from router.routing.model_call import CallOutcome

    router = PolicyRouter(policy=loads_policy(POLICY.format(max_tokens=24, cascade="[gemma, gemma-long]",
                                                            on_exhausted="raise")))
    replies = {"gemma": _call("magic_function", {"input": 1000000000000000}),
               "gemma-long": _call("magic_function", {"input": 3})}
    plan = router.plan("What is magic_function(3)?", tools=[MAGIC])
    result = drive(run_cascade(plan), lambda call: CallOutcome(call.model, message=replies[call.model], output_tokens=9))
    first, second = result.decision.attempts
    assert first.accepted is False and first.checks[0].detail.endswith("input fails exclusiveMaximum 1000")
    assert second.accepted is True and result.decision.final_model == "gemma-long"
    assert result.message.tool_calls[0]["args"] == {"input": 3}
