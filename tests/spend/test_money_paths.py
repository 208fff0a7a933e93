"""Money on every path (issue 24, point 6): usage a provider reports is believed only when it is
a token count (a negative, NaN or 1e30 figure is an overrun charged at the worst case, never a
credit nor a lost charge), and only an explicit stop or tool-call finish is a complete answer.
The real ChatOpenAI client talks to a loopback server that says whatever the test scripts."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from money_server import MoneyServer, Reply

from router import PolicyRouter, RoutingError
from router.routing.completeness import completeness
from router.routing.usage import MAX_CREDIBLE_TOKENS, Incredible, read_usage

PRICE = 10.0  # USD per 1M tokens, input and output
MAX_TOKENS = 50


def make_router(server: MoneyServer, *, rungs: int = 2, ledger: str | None = None) -> PolicyRouter:
    models = {f"gpt{i}": {"provider": "openai", "model": f"gpt-{i}", "base_url": server.base_url, "tier": "basic",
                          "price": {"input": PRICE, "output": PRICE}, "max_retries": 0} for i in range(rungs)}
    return PolicyRouter(policy={
        "version": 1, "name": "money", "models": models,
        "policy": {"cost_ceiling": 1.0, "max_output_tokens": MAX_TOKENS, "cascade": list(models),
                   "confidence": [{"check": "min_length", "chars": 20}], "on_exhausted": "raise"},
        "budgets": [{"name": "daily", "period": "day", "limit_usd": 10.0}],
        "ledger": ledger or f"memory://{uuid.uuid4().hex}"})


def spent(router: PolicyRouter) -> float:
    return router.spend_guard.status()[0].spent_usd  # type: ignore[union-attr]


HOSTILE = [
    {"prompt_tokens": -10_000_000, "completion_tokens": -9_999_000, "total_tokens": -19_999_000},
    {"prompt_tokens": float("nan"), "completion_tokens": 2, "total_tokens": float("nan")},
    {"prompt_tokens": 10, "completion_tokens": 1e30, "total_tokens": 1e30},
    {"prompt_tokens": float("inf"), "completion_tokens": float("-inf"), "total_tokens": 0},
    {"prompt_tokens": 10.5, "completion_tokens": 2, "total_tokens": 12.5},
]


@pytest.mark.parametrize("usage", HOSTILE, ids=["negative", "nan", "1e30", "inf", "fraction"])
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_hostile_usage_is_an_overrun_charged_at_the_worst_case(server: MoneyServer, usage: dict[str, Any],
                                                               stream: bool):
    """The first rung's answer fails its check (too short), so the cascade would go on: after a
    usage figure that is not a count it must not (an overrun), and the try costs its worst case."""
    server.script(Reply(usage=usage))
    router = make_router(server)
    with pytest.raises(RoutingError) as info:
        list(router.stream("Capital of France?")) if stream else router.invoke("Capital of France?")
    decision = info.value.decision
    attempt = decision.attempts[0]
    assert attempt.cost_usd >= attempt.worst_case_usd > 0
    assert math.isfinite(decision.total_cost_usd) and decision.total_cost_usd >= attempt.worst_case_usd
    assert spent(router) == pytest.approx(decision.total_cost_usd, abs=1e-9)
    if attempt.error is None:  # the client read the figures: an overrun, and no further paid call
        assert "not a token count" in (attempt.overrun or "")
        assert server.count() == 1, "a further paid call followed a hostile usage report"
    else:  # the client refused the figures (a streamed NaN): a failed try that ran, at its worst case
        assert attempt.cost_estimated and server.count() == 2


def test_plain_usage_is_charged_as_reported(server: MoneyServer):
    router = make_router(server, rungs=1)
    server.script(Reply(text="Paris is the capital of France, on the Seine."))
    attempt = router.invoke("Capital of France?").response_metadata["routing"]["attempts"][0]
    assert (attempt["input_tokens"], attempt["output_tokens"], attempt["overrun"]) == (10, 2, None)
    assert attempt["cost_usd"] == pytest.approx(12 * PRICE / 1e6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)),
       st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70), st.floats()))
def test_read_usage_never_credits_nor_raises(raw_in: Any, raw_out: Any):
    read = read_usage({"input_tokens": raw_in, "output_tokens": raw_out})
    if read is None or isinstance(read, Incredible):
        return
    used_in, used_out = read
    assert isinstance(used_in, int) and isinstance(used_out, int)
    assert 0 <= used_in <= MAX_CREDIBLE_TOKENS and 0 <= used_out <= MAX_CREDIBLE_TOKENS


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_costing_any_reported_usage_is_a_finite_charge_at_least_zero(raw_in: float, raw_out: float):
    """The caller's costing of a reply whose usage says anything: finite and never negative."""
    from router.routing.caller import Caller

    router = _offline_router()
    plan = router.plan("Capital of France?")
    call = _call(plan)
    message = AIMessage.model_construct(  # unvalidated, as a client may build it
        content="Paris", response_metadata={"finish_reason": "stop"}, tool_calls=[], invalid_tool_calls=[],
        usage_metadata={"input_tokens": raw_in, "output_tokens": raw_out, "total_tokens": 0}, additional_kwargs={})
    outcome = Caller(plan, {})._finished(call, message, [], 0.0)
    assert math.isfinite(outcome.cost_usd) and outcome.cost_usd >= 0
    if outcome.overrun is not None and "not a token count" in outcome.overrun:
        assert outcome.cost_usd >= call.worst_case_usd


_ROUTER: list[PolicyRouter] = []


def _offline_router() -> PolicyRouter:
    if not _ROUTER:
        _ROUTER.append(PolicyRouter(policy={
            "version": 1, "name": "costing", "models": {"gpt": {
                "provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1", "tier": "basic",
                "api_key_env": "OPENAI_API_KEY", "price": {"input": PRICE, "output": PRICE}}},
            "policy": {"cost_ceiling": 1.0, "max_output_tokens": MAX_TOKENS, "cascade": ["gpt"]}}))
    return _ROUTER[0]


def _call(plan: Any) -> Any:
    from router.routing.model_call import ModelCall

    return ModelCall("gpt", plan.messages, worst_case_usd=0.001)


# -- only an explicit stop or tool-call finish is complete -------------------------------------

@pytest.mark.parametrize("finish", ["model_length", "insufficient_system_resource", "error", "weird", "", None])
def test_an_unknown_finish_reason_is_not_a_complete_answer(server: MoneyServer, finish: str | None):
    server.script(Reply(text="Paris is the capital of France, on the Seine.", finish_reason=finish),
                  Reply(text="Paris is the capital of France, on the Seine.", finish_reason="stop"))
    router = make_router(server)
    record = router.invoke("Capital of France?").response_metadata["routing"]
    first, second = record["attempts"]
    assert (first["accepted"], first["finish_reason"], first["truncated"]) == (False, "unknown", True)
    assert first["checks"][0]["check"] == "complete"
    assert (second["accepted"], second["finish_reason"]) == (True, "stop")


@pytest.mark.parametrize(("raw", "complete"), [("stop", True), ("STOP", True), ("tool_calls", True),
                                               ("end_turn", True), ("length", False), ("MAX_TOKENS", False),
                                               ("model_length", False), ("OTHER", False),
                                               ("FINISH_REASON_UNSPECIFIED", False), ("error", False)])
def test_completeness_table(raw: str, complete: bool):
    ended = completeness(AIMessage("x", response_metadata={"finish_reason": raw}))
    assert (ended.problem is None) is complete


@given(st.text(max_size=30))
def test_no_unknown_string_is_complete(raw: str):
    ended = completeness(AIMessage("x", response_metadata={"finish_reason": raw}))
    if ended.problem is None:
        assert ended.finish_reason in ("stop", "tool_calls")


@pytest.mark.parametrize("prompt_tokens", [-10_000_000, 10**30], ids=["negative", "1e30"])
def test_hostile_gemini_usage_metadata_is_never_a_credit(gemini: Any, prompt_tokens: int):
    """Gemini's ``usageMetadata`` through the real langchain-google-genai client: it drops the
    hostile figures (the router then counts the call itself) or they are an overrun."""
    from spend_support import gemini_policy

    from router.policy import loads_policy

    gemini.prompt_counter = lambda prompt: prompt_tokens
    try:
        router = PolicyRouter(policy=loads_policy(gemini_policy(gemini.base_url, f"memory://{uuid.uuid4().hex}",
                                                                limit=1.0)))
        attempt = router.invoke("Capital of France?").response_metadata["routing"]["attempts"][0]
        assert math.isfinite(attempt["cost_usd"]) and attempt["cost_usd"] > 0
        assert attempt["cost_estimated"] or "not a token count" in (attempt["overrun"] or "")
        assert 0 <= attempt["input_tokens"] < 1000
        assert spent(router) == pytest.approx(attempt["cost_usd"], abs=1e-9)
    finally:
        gemini.prompt_counter = None
