"""The cost ceiling and budgets against what a provider really bills (a loopback server that
bills like OpenAI): tools and tool-call arguments are input, failed tries are paid for, an
answer's tool calls are output, overruns stop paid calls wherever they happen, a repeated
``finish_reason`` still marks a cut-off answer, and usage handlers see every call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from billing_server import BillingServer, Script, billed_prompt_tokens
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from router import PolicyRouter, RoutingError
from router.providers import get_adapter
from router.routing.charges import merge_chunks
from router.routing.selection import select_candidates
from router.routing.tokens import count_text_tokens, gemini_token_bound

QUESTION = "Capital of France?"
BIG_DESCRIPTION = " ".join(["Returns the weather forecast for the given city, in great detail."] * 150)


@pytest.fixture(scope="module")
def billing_session() -> Iterator[BillingServer]:
    with BillingServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def server(billing_session: BillingServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[BillingServer]:
    billing_session.reset()
    billing_session.billed.clear()
    billing_session.script = lambda body: Script()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    yield billing_session


def model(server: BillingServer, model_id: str, price: float, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": model_id, "base_url": server.base_url, "tier": "basic",
            "price": {"input": price, "output": price}, **extra}


def make_router(server: BillingServer, *, ceiling: float, max_tokens: int, cascade: dict[str, dict[str, Any]],
                budget: float | None = None, confidence: list[dict[str, Any]] | None = None,
                checkers: dict[str, dict[str, Any]] | None = None) -> PolicyRouter:
    """A router whose ``cascade`` models are its rungs; ``checkers`` are models only checks consult."""
    policy: dict[str, Any] = {
        "version": 1, "name": "attacks", "models": {**cascade, **(checkers or {})},
        "policy": {"cost_ceiling": ceiling, "max_output_tokens": max_tokens, "cascade": list(cascade),
                   "confidence": confidence or []}}
    if budget is not None:
        policy |= {"budgets": [{"name": "daily", "period": "day", "limit_usd": budget}],
                   "ledger": f"memory://{uuid.uuid4().hex}"}
    return PolicyRouter(policy=policy)


def record_of(chunks: list[AIMessageChunk]) -> dict[str, Any]:
    return chunks[-1].response_metadata["routing"]


def spent(router: PolicyRouter) -> float:
    return router.spend_guard.status()[0].spent_usd  # type: ignore[union-attr]


@tool(description=BIG_DESCRIPTION)
def weather(city: str) -> str:
    return "sunny"


# -- 1. tools are input ------------------------------------------------------------------------

def test_a_bound_tool_schema_counts_in_the_worst_case(server: BillingServer):
    router = make_router(server, ceiling=0.0005, max_tokens=16, budget=0.0005,
                         cascade={"gpt": model(server, "gpt-x", 10.0)})
    with pytest.raises(RoutingError) as info:
        router.bind_tools([weather]).invoke("What is the weather in Paris?")
    assert [e.reason.split(":")[0] for e in info.value.decision.excluded] == ["over ceiling"]
    assert server.count() == 0 and spent(router) == 0


def test_a_bound_tool_schema_is_within_the_input_bound(server: BillingServer):
    router = make_router(server, ceiling=1.0, max_tokens=16, cascade={"gpt": model(server, "gpt-x", 10.0)})
    msg = router.bind_tools([weather]).invoke("What is the weather in Paris?")
    attempt = msg.response_metadata["routing"]["attempts"][0]
    assert attempt["overrun"] is None
    assert attempt["input_tokens"] == server.billed[0]["prompt_tokens"] > 1000
    gemini = get_adapter("google_genai")
    assert gemini.tool_tokens(None, server.bodies()[0]["tools"]) > len(json.dumps(server.bodies()[0]["tools"]))


def test_selection_counts_the_bound_tools_in_every_worst_case(server: BillingServer):
    router = make_router(server, ceiling=0.0005, max_tokens=16, cascade={"gpt": model(server, "gpt-x", 10.0)})
    plan = router.plan(QUESTION)
    tools = (convert_to_openai_tool(weather),)
    with_tools = select_candidates(plan.catalog, plan.settings, plan.messages, tools=tools)
    assert plan.selection.candidates == ["gpt"] and with_tools.candidates == []
    assert with_tools.input_tokens["gpt"] >= plan.selection.input_tokens["gpt"] + count_text_tokens(json.dumps(tools))


def test_plan_and_explain_count_the_bound_tools(server: BillingServer):
    """What ``explain`` shows is what the cascade will do: the tools' schema is in the worst case,
    so the model is excluded as over the ceiling before any call (``plan`` with the tools bound)."""
    router = make_router(server, ceiling=0.0005, max_tokens=16, cascade={"gpt": model(server, "gpt-x", 10.0)})
    tools = (convert_to_openai_tool(weather),)
    assert router.plan(QUESTION).selection.candidates == ["gpt"]
    planned = router.plan(QUESTION, tools=tools)
    assert planned.selection.candidates == []
    assert [e.reason.split(":")[0] for e in planned.selection.excluded] == ["over ceiling"]
    assert server.count() == 0


def agent_history(args_size: int) -> list[Any]:
    return [HumanMessage("What is the weather in Paris?"),
            AIMessage("", tool_calls=[{"id": "call_1", "name": "weather", "args": {"city": "Paris " + "x" * args_size}}]),
            ToolMessage("sunny", tool_call_id="call_1")]


def test_tool_call_arguments_in_the_history_count_in_the_worst_case(server: BillingServer):
    router = make_router(server, ceiling=0.0005, max_tokens=16, budget=0.0005,
                         cascade={"gpt": model(server, "gpt-x", 10.0)})
    with pytest.raises(RoutingError) as info:
        router.invoke(agent_history(6000))
    assert [e.reason.split(":")[0] for e in info.value.decision.excluded] == ["over ceiling"]
    assert server.count() == 0 and spent(router) == 0


def test_tool_call_arguments_in_the_history_are_within_the_input_bound(server: BillingServer):
    router = make_router(server, ceiling=1.0, max_tokens=16, cascade={"gpt": model(server, "gpt-x", 10.0)})
    attempt = router.invoke(agent_history(6000)).response_metadata["routing"]["attempts"][0]
    assert attempt["overrun"] is None
    assert attempt["input_tokens"] == server.billed[0]["prompt_tokens"] > 700
    assert billed_prompt_tokens(server.bodies()[0]) == server.billed[0]["prompt_tokens"]
    assert gemini_token_bound(agent_history(6000)) > 6000


# -- 2. failed tries are paid for --------------------------------------------------------------

def cut_once(calls: list[int], **extra: Any) -> Any:
    """A script whose first generation's stream breaks after its answer and usage were sent."""

    def script(body: dict[str, Any]) -> Script:
        calls.append(1)
        return Script(text="Paris " * 40, completion_tokens=80, cut_after_usage=len(calls) == 1, **extra)

    return script


def retrying(server: BillingServer) -> dict[str, dict[str, Any]]:
    return {"gpt": model(server, "gpt-x", 100.0, max_retries=1), "gpt4": model(server, "gpt-y", 100.0)}


@pytest.mark.parametrize("how", ["stream", "astream"])
async def test_a_failed_try_is_charged_and_a_retry_must_fit_the_ceiling(server: BillingServer, how: str):
    server.script = cut_once([])
    router = make_router(server, ceiling=0.012, max_tokens=80, budget=1.0, cascade=retrying(server),
                         confidence=[{"check": "min_length", "chars": 2}])
    with pytest.raises(RoutingError) as info:
        if how == "stream":
            list(router.stream(QUESTION))
        else:
            [c async for c in router.astream(QUESTION)]
    record = info.value.decision.to_dict()
    billed = sum(u["prompt_tokens"] + u["completion_tokens"] for u in server.billed) * 100 / 1e6
    assert server.count() == 1  # a retry's worst case did not fit what was left: not made
    assert record["total_cost_usd"] == pytest.approx(billed) and billed <= 0.012
    assert spent(router) == pytest.approx(billed)
    note = record["attempts"][0]["retries"][0]
    assert (note["action"], note["reason"].split(":")[0]) == ("escalated", "over ceiling")


@pytest.mark.parametrize("how", ["stream", "astream"])
async def test_a_retry_that_fits_is_charged_for_every_try(server: BillingServer, how: str):
    server.script = cut_once([])
    router = make_router(server, ceiling=1.0, max_tokens=80, budget=1.0, cascade=retrying(server),
                         confidence=[{"check": "min_length", "chars": 2}])
    chunks = list(router.stream(QUESTION)) if how == "stream" else [c async for c in router.astream(QUESTION)]
    record = record_of(chunks)
    billed = sum(u["prompt_tokens"] + u["completion_tokens"] for u in server.billed) * 100 / 1e6
    assert server.count() == 2 and record["status"] == "accepted"
    assert record["total_cost_usd"] == pytest.approx(billed) == pytest.approx(spent(router))
    assert record["estimated_cost_usd"] >= record["total_cost_usd"]


def test_a_retry_needs_a_budget_hold_of_its_own(server: BillingServer):
    server.script = cut_once([])
    worst = (10 + 80) * 100 / 1e6
    router = make_router(server, ceiling=1.0, max_tokens=80, budget=1.5 * worst, cascade=retrying(server),
                         confidence=[{"check": "min_length", "chars": 2}])
    with pytest.raises(RoutingError) as info:
        list(router.stream(QUESTION))
    note = info.value.decision.attempts[0].retries[0]
    assert server.count() == 1 and (note["action"], note["reason"].split(" ")[:2]) == ("escalated", ["over", "budget"])
    assert spent(router) == pytest.approx(info.value.decision.total_cost_usd)
    assert spent(router) <= 1.5 * worst


def test_a_malformed_reply_is_charged_its_worst_case(server: BillingServer):
    server.script = lambda body: Script(malformed=True)
    router = make_router(server, ceiling=1.0, max_tokens=16, budget=1.0,
                         cascade={"gpt": model(server, "gpt-x", 100.0)})
    with pytest.raises(RoutingError) as info:
        router.invoke(QUESTION)
    worst = router.plan(QUESTION).selection.worst_case_usd["gpt"]
    attempt = info.value.decision.attempts[0]
    assert (attempt.error["kind"], attempt.cost_usd, attempt.cost_estimated) == ("malformed", worst, True)
    assert info.value.decision.total_cost_usd == pytest.approx(worst) == pytest.approx(spent(router))


# -- 3. a streamed tool call without usage is output --------------------------------------------

def test_a_streamed_tool_call_without_usage_is_costed_by_its_arguments(server: BillingServer):
    args = {"city": "Paris", "notes": "word " * 300}
    server.script = lambda body: Script(tool_call=("weather", args), finish_events=("tool_calls",), usage=False)

    @tool
    def weather(city: str, notes: str = "") -> str:
        """Weather for a city."""
        return "sunny"

    router = make_router(server, ceiling=1.0, max_tokens=512, budget=1.0, cascade={"gpt": model(server, "gpt-x", 100.0)})
    attempt = record_of(list(router.bind_tools([weather]).stream("Weather in Paris?")))["attempts"][0]
    assert attempt["cost_estimated"] and attempt["output_tokens"] >= count_text_tokens(json.dumps(args))
    assert spent(router) == pytest.approx(attempt["cost_usd"])
    assert attempt["cost_usd"] >= 300 * 100 / 1e6


# -- 4./5. an overrun stops paid calls, wherever it happens -------------------------------------

def test_an_estimated_count_over_max_tokens_is_an_overrun(server: BillingServer):
    server.script = lambda body: Script(text=("word " * 400) if body["model"] == "gpt-a" else "Paris", usage=False)
    router = make_router(server, ceiling=0.05, max_tokens=16,
                         cascade={"a": model(server, "gpt-a", 10.0), "b": model(server, "gpt-b", 10.0)},
                         confidence=[{"check": "regex", "pattern": "Paris"}])
    record = record_of(list(router.stream(QUESTION)))
    assert record["attempts"][0]["overrun"] == "output 401 > max_tokens 16"
    assert server.count("gpt-b") == 0
    assert record["excluded"][0]["reason"].startswith("no paid call after an overrun (a: output 401")


def test_an_overrun_on_a_check_call_is_recorded_and_stops_paid_calls(server: BillingServer):
    def script(body: dict[str, Any]) -> Script:
        if "Reply yes or no" in body["messages"][-1]["content"]:
            return Script(text="no", completion_tokens=900)
        return Script(text="Paris")

    server.script = script
    router = make_router(server, ceiling=1.0, max_tokens=32,
                         cascade={"a": model(server, "gpt-a", 1.0), "b": model(server, "gpt-b", 1.0)},
                         confidence=[{"check": "verifier", "model": "v", "apply_to": ["a"]}],
                         checkers={"v": model(server, "gpt-v", 1.0)})
    record = router.invoke(QUESTION).response_metadata["routing"]
    call = record["attempts"][0]["checks"][0]["calls"][0]
    assert call["model"] == "v" and call["overrun"].startswith("output 900 > max_tokens")
    assert server.count("gpt-b") == 0
    assert record["excluded"][0]["reason"].startswith("no paid call after an overrun (v: output 900")


# -- 6. a repeated finish_reason ----------------------------------------------------------------

def test_a_repeated_finish_reason_still_marks_a_cut_off_answer(server: BillingServer):
    server.script = lambda body: Script(text="The answer is a long explanation that was cut",
                                        finish_events=("length", "length"), completion_tokens=16)
    router = make_router(server, ceiling=1.0, max_tokens=16, cascade={"gpt": model(server, "gpt-x", 1.0)},
                         confidence=[{"check": "min_length", "chars": 2}])
    with pytest.raises(RoutingError) as raised:  # cut off: no answer at all (issue 25), not exhausted
        list(router.stream("Explain"))
    attempt = raised.value.decision.attempts[0]
    assert (attempt.finish_reason, attempt.truncated, attempt.accepted) == ("length", True, False)
    chunks = [AIMessageChunk("a", response_metadata={"finish_reason": "length", "model_name": "m"}),
              AIMessageChunk("", response_metadata={"finish_reason": "length", "model_name": "m"})]
    assert merge_chunks(chunks).response_metadata == {"finish_reason": "length", "model_name": "m"}


# -- 7. usage handlers see streamed calls without usage ------------------------------------------

@pytest.mark.parametrize("how", ["stream", "astream"])
async def test_usage_callback_counts_streamed_calls_without_usage(server: BillingServer, how: str):
    def script(body: dict[str, Any]) -> Script:
        last = body["messages"][-1]["content"]
        return Script(text="no" if "Reply yes or no" in last else "Paris is the capital.", usage=False)

    server.script = script
    router = make_router(server, ceiling=1.0, max_tokens=32,
                         cascade={"a": model(server, "gpt-a", 1.0), "b": model(server, "gpt-b", 1.0)},
                         confidence=[{"check": "verifier", "model": "v", "apply_to": ["a"]}],
                         checkers={"v": model(server, "gpt-v", 1.0)})
    with get_usage_metadata_callback() as cb:
        chunks = list(router.stream(QUESTION)) if how == "stream" else [c async for c in router.astream(QUESTION)]
    record = record_of(chunks)
    expected = {a["model"]: a["input_tokens"] + a["output_tokens"] for a in record["attempts"]}
    verifier = record["attempts"][0]["checks"][0]
    assert verifier["calls"][0]["model"] == "v"
    assert {k: u["total_tokens"] for k, u in cb.usage_metadata.items() if k != "v"} == expected
    assert set(cb.usage_metadata) == {"a", "b", "v"} and cb.usage_metadata["v"]["total_tokens"] > 0
