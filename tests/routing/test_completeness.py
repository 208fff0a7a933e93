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
def test_a_list_cut_at_max_output_tokens_is_only_exhausted(stream: bool):
    text, routing = route(4, stream=stream)
    (attempt,) = routing["attempts"]
    assert attempt["output_tokens"] == 4 and attempt["finish_reason"] == "length"
    assert attempt["truncated"] is True and attempt["accepted"] is False
    assert routing["status"] == "exhausted" and routing["truncated"] is True
    assert "," in text  # " 2, 3," -- passes min_length, yet is not accepted


def test_a_cut_answer_escalates_and_raise_means_raise():
    with pytest.raises(RoutingError) as raised:
        route(4, on_exhausted="raise")
    assert raised.value.decision.attempts[0].truncated is True
    _, routing = route(4, cascade="[gemma, gemma-long]")
    assert [(a["model"], a["truncated"]) for a in routing["attempts"]] == [("gemma", True), ("gemma-long", True)]


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
    out = router.with_structured_output(Primes, include_raw=True).invoke(PRIMES)
    routing = out["raw"].response_metadata["routing"]
    (attempt,) = routing["attempts"]
    assert attempt["truncated"] is True and attempt["accepted"] is False
    assert routing["status"] == "exhausted" and routing["truncated"] is True
    strict = PolicyRouter(policy=loads_policy(POLICY.format(max_tokens=6, cascade="[gemma]", on_exhausted="raise")))
    with pytest.raises(RoutingError) as raised:
        strict.with_structured_output(Primes).invoke(PRIMES)
    assert raised.value.decision.attempts[0].truncated is True
