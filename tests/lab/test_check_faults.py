"""A check that raises or misbehaves fails that check, recorded on the attempt; the request goes
on (issue 9, item 5). Real local model (the bundled Gemma-3-270M), real cascade."""

from __future__ import annotations

from typing import Any

import pytest

from router import PolicyRouter, loads_policy
from router.checks.builtin import Answer, CheckResult, CheckSpec, ModelCall, register_check

POLICY = """
version: 1
name: check-faults
models:
  gemma:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
  gemma-again:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    local: true
policy:
  max_output_tokens: 12
  cascade: [gemma, gemma-again]
  confidence:
    - check: {check}
  on_exhausted: best
"""


def raises(answer: Answer) -> bool:
    raise RuntimeError("bug in a custom check")


def wrong_type(answer: Answer) -> Any:
    return {"ok": True}


def ok(answer: Answer) -> bool:
    return True


@register_check("test-consult-then-raise")
class ConsultThenRaise(CheckSpec):
    """Consults a model, then crashes on its reply."""

    def run(self, answer: Answer, ctx: Any):
        yield ModelCall("gemma-again", answer.prompt, purpose=self.check)
        raise KeyError("verdict")


@register_check("test-yields-junk")
class YieldsJunk(CheckSpec):
    def run(self, answer: Answer, ctx: Any):
        yield "not a model call"
        return CheckResult(self.check, True)


def route(check: str) -> dict[str, Any]:
    router = PolicyRouter(policy=loads_policy(POLICY.format(check=check), allow_code=True))
    return router.invoke("What is the capital of France?").response_metadata["routing"]


@pytest.mark.parametrize(("check", "error"), [
    ('"test_check_faults:raises"', "RuntimeError: bug in a custom check"),
    ('"test_check_faults:wrong_type"', "TypeError: custom check test_check_faults:wrong_type returned dict"),
    ("test-consult-then-raise", "KeyError: 'verdict'"),
    ("test-yields-junk", "returned str, expected CheckResult"),
])
def test_a_broken_check_fails_itself_with_its_error_recorded(check: str, error: str):
    routing = route(check)
    first, second = routing["attempts"]
    for attempt in (first, second):
        (result,) = attempt["checks"]
        assert result["passed"] is False and attempt["accepted"] is False
    # The returned (flagged) answer's check keeps its error; the rejected rung's keeps the exception's
    # type only (a message may quote the answer it judged: router.langchain.answer.withhold_rejected).
    assert error in second["checks"][0]["error"]
    assert first["checks"][0]["error"].split(":")[0] == error.split(":")[0] or error in first["checks"][0]["error"]
    assert routing["status"] == "exhausted" and routing["final_model"] is not None


def test_a_working_custom_check_still_decides():
    routing = route('"test_check_faults:ok"')
    assert routing["status"] == "accepted" and routing["attempts"][0]["checks"][0] == {
        "check": "test_check_faults:ok", "passed": True, "score": None}
