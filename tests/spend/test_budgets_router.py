"""Budgets through the router on the real bundled llama.cpp model, priced so it counts as a
paid model: per-user budgets keep users apart, periods roll over at the UTC boundary (an
injected clock), escalation re-checks the budget before the fallback model, streaming settles
to its actual cost, and the per-run cost callback totals every router call in a block."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from router import PolicyRouter, RoutingError, loads_policy
from router.spend import BudgetGuard, get_cost_callback, open_ledger, spend_report

QUESTION = "What is the capital of France?"
MAX_TOKENS = 16
# Output-priced only: a call's worst case is 16 tokens × price; its actual cost is what it wrote.
CHEAP, DEAR = 100.0, 1000.0  # USD / 1M output tokens → worst cases $0.0016 and $0.016
WORST_CHEAP, WORST_DEAR = MAX_TOKENS * CHEAP / 1e6, MAX_TOKENS * DEAR / 1e6

POLICY = """
version: 1
name: budget-local
models:
  cheap:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: basic
    local: true
    context_window: 2048
    price: {{input: 0, output: {cheap}}}
  dear:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    chat_format: qa
    tier: standard
    local: true
    context_window: 2048
    price: {{input: 0, output: {dear}}}
policy:
  cost_ceiling: 1.0
  max_output_tokens: {max_tokens}
  cascade: {cascade}
  confidence:
{checks}
budgets:
{budgets}
ledger: {ledger}
"""
PASS = "    - check: min_length\n      chars: 1"
FAIL = "    - check: regex\n      pattern: '^NEVER-MATCHES$'"


def policy_text(ledger: str, budgets: str, *, cascade: str = "[cheap]", checks: str = PASS) -> str:
    return POLICY.format(cheap=CHEAP, dear=DEAR, max_tokens=MAX_TOKENS, cascade=cascade, checks=checks,
                         budgets=budgets, ledger=ledger)


def budget(name: str, limit: float, *, period: str = "day", per: str | None = None) -> str:
    text = f"  - name: {name}\n    period: {period}\n    limit_usd: {limit!r}\n"
    return text + (f"    per: {per}\n" if per else "")


@pytest.fixture
def ledger_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def routing(message) -> dict:
    return message.response_metadata["routing"]


def test_per_user_budgets_keep_users_apart(ledger_url: str):
    # Room for one worst case per user, not two: whatever the first answer cost (>= 1 token),
    # the second call of the same user cannot fit.
    router = PolicyRouter(policy=loads_policy(policy_text(
        ledger_url, budget("per-user", WORST_CHEAP * 1.03, per="user"))))
    ann = {"metadata": {"user": "ann"}}
    first = router.invoke(QUESTION, config=ann)
    assert routing(first)["status"] == "accepted"

    with pytest.raises(RoutingError) as refused:
        router.invoke(QUESTION, config=ann)
    [excluded] = refused.value.decision.excluded
    assert excluded.model == "cheap"
    assert excluded.reason.startswith("over budget 'per-user' for user='ann' (day ")
    assert "left of $0.001648" in excluded.reason

    bob = router.invoke(QUESTION, config={"metadata": {"user": "bob"}})  # bob's budget is untouched
    assert routing(bob)["status"] == "accepted"
    by_user = {row.key: row for row in spend_report(ledger_url, by="user").rows}
    assert set(by_user) == {"ann", "bob"} and by_user["ann"].calls == by_user["bob"].calls == 1
    assert by_user["ann"].cost_usd == pytest.approx(routing(first)["total_cost_usd"])


def test_a_paid_call_without_the_per_key_fails_closed_but_free_calls_pass(ledger_url: str):
    router = PolicyRouter(policy=loads_policy(policy_text(ledger_url, budget("per-user", 1.0, per="user"))))
    with pytest.raises(RoutingError) as refused:
        router.invoke(QUESTION)
    assert refused.value.decision.excluded[0].reason == (
        "budget 'per-user': no 'user' in the call's metadata (a per-user budget refuses untagged paid calls)")
    free = PolicyRouter(policy=loads_policy(policy_text(ledger_url, budget("per-user", 0.0, per="user"))
                                            .replace(f"output: {CHEAP}", "output: 0")))
    assert routing(free.invoke(QUESTION))["status"] == "accepted"  # $0 worst case: no budget needed
    assert open_ledger(ledger_url).entries() == []


def test_the_period_rolls_over_at_the_utc_day_boundary(ledger_url: str):
    now = [datetime(2027, 3, 31, 23, 59, 58, tzinfo=timezone.utc).timestamp()]
    policy = loads_policy(policy_text(ledger_url, budget("daily", WORST_CHEAP * 1.03)))
    guard = BudgetGuard.from_policy(policy, clock=lambda: now[0])
    router = PolicyRouter(policy=policy, spend_guard=guard)

    assert routing(router.invoke(QUESTION))["status"] == "accepted"
    now[0] += 1  # 23:59:59: same day, no room for another worst case
    with pytest.raises(RoutingError) as refused:
        router.invoke(QUESTION)
    assert "(day 2027-03-31)" in refused.value.decision.excluded[0].reason

    now[0] += 1  # 00:00:00 on April 1st: a new period, the whole limit again
    assert routing(router.invoke(QUESTION))["status"] == "accepted"
    [today] = guard.status()
    assert today.period == "2027-04-01" and 0 < today.spent_usd <= WORST_CHEAP
    assert [row.key for row in spend_report(ledger_url, by="day").rows] in (
        ["2027-03-31", "2027-04-01"], ["2027-04-01", "2027-03-31"])


def test_escalation_rechecks_the_budget_before_the_fallback_model(ledger_url: str):
    # The first rung fits the budget and fails its check; the fallback's worst case does not
    # fit what is left, so it is excluded, not called (LiteLLM checks only the requested model).
    router = PolicyRouter(policy=loads_policy(policy_text(
        ledger_url, budget("daily", 0.01), cascade="[cheap, dear]", checks=FAIL)))
    message = router.invoke(QUESTION)
    record = routing(message)
    assert [a["model"] for a in record["attempts"]] == ["cheap"]
    [excluded] = record["excluded"]
    assert excluded["model"] == "dear" and excluded["reason"].startswith("over budget 'daily' (day ")
    assert f"worst case ${WORST_DEAR:.6f}" in excluded["reason"]
    assert record["status"] == "exhausted"
    spent = spend_report(ledger_url)
    assert [r.key for r in spent.rows] == ["cheap"] and spent.total_usd <= 0.01

    # With room for both, the same request escalates: the budget, not the cascade, said no.
    roomy = PolicyRouter(policy=loads_policy(policy_text(
        ledger_url.replace("ledger.db", "roomy.db"), budget("daily", 1.0), cascade="[cheap, dear]",
        checks=FAIL)))
    assert [a["model"] for a in routing(roomy.invoke(QUESTION))["attempts"]] == ["cheap", "dear"]


async def test_streaming_settles_to_the_actual_cost(ledger_url: str):
    router = PolicyRouter(policy=loads_policy(policy_text(ledger_url, budget("daily", 1.0))))
    chunks = [c async for c in router.astream(QUESTION, config={"metadata": {"user": "ann"}})]
    record = chunks[-1].response_metadata["routing"]
    [entry] = open_ledger(ledger_url).entries()
    assert entry.cost_usd == pytest.approx(record["total_cost_usd"], abs=1e-9)
    assert 0 < entry.cost_usd < entry.worst_case_usd == pytest.approx(WORST_CHEAP)
    assert router.spend_guard.status()[0].reserved_usd == 0


def test_a_stream_left_mid_way_is_charged_its_worst_case(ledger_url: str):
    """The consumer breaks after the first chunk: the live rung stops, nothing is left reserved,
    and the budget is charged the call's worst case (a paid provider may bill the whole answer of
    a request the client left), never nothing."""
    text = policy_text(ledger_url, budget("daily", 1.0), checks="    []")
    router = PolicyRouter(policy=loads_policy(text))
    stream = router.stream("Count from 1 to 100, separated by commas.")
    assert next(c for c in stream if c.content).content
    stream.close()
    [entry] = open_ledger(ledger_url).entries()
    assert entry.cost_usd == pytest.approx(entry.worst_case_usd) == pytest.approx(WORST_CHEAP)
    assert router.spend_guard.status()[0].reserved_usd == 0


def test_cost_callback_totals_every_router_call_in_a_block_once(ledger_url: str):
    router = PolicyRouter(policy=loads_policy(policy_text(ledger_url, budget("daily", 1.0))))
    chain = ChatPromptTemplate.from_template("{q}") | router | StrOutputParser()
    outside = router.invoke(QUESTION)
    with get_cost_callback() as cb:
        chain.invoke({"q": QUESTION})              # the chain ends with the same record: counted once
        router.invoke("What is the capital of Italy?")
        router.batch([QUESTION, QUESTION])
    assert cb.requests == 4
    settled = spend_report(ledger_url).total_usd - routing(outside)["total_cost_usd"]
    assert cb.total_usd == pytest.approx(settled, abs=1e-8) and cb.total_usd > 0
    assert set(cb.by_model) == {"cheap"}


async def test_cost_callback_counts_async_runs_and_refused_requests(ledger_url: str):
    # on_exhausted: raise → the request pays for its first rung, then raises RoutingError: the
    # money spent still counts.
    router = PolicyRouter(policy=loads_policy(policy_text(
        ledger_url, budget("daily", 0.01), cascade="[cheap, dear]", checks=FAIL).replace(
        "  confidence:", "  on_exhausted: raise\n  confidence:")))
    with get_cost_callback() as cb:
        with pytest.raises(RoutingError) as refused:
            await router.ainvoke(QUESTION)
        with get_cost_callback() as inner, pytest.raises(RoutingError) as refused_again:
            await router.ainvoke(QUESTION)
    paid = [refused.value.decision.total_cost_usd, refused_again.value.decision.total_cost_usd]
    assert all(p > 0 for p in paid)
    assert cb.requests == 2 and cb.total_usd == pytest.approx(sum(paid))
    assert inner.requests == 1 and inner.total_usd == pytest.approx(paid[1])
    assert cb.total_usd == pytest.approx(spend_report(ledger_url).total_usd, abs=1e-8)


def test_a_check_that_consults_a_paid_model_is_held_to_the_budget_too(ledger_url: str):
    verifier = "    - check: verifier\n      model: dear\n      max_tokens: 4"
    worst_verifier = 4 * DEAR / 1e6  # $0.004: fits a fresh $0.004 budget, not one the answer drew on
    router = PolicyRouter(policy=loads_policy(policy_text(ledger_url, budget("daily", worst_verifier),
                                                          checks=verifier)))
    record = routing(router.invoke(QUESTION))
    [check] = record["attempts"][0]["checks"]
    assert check["passed"] is False and check["calls"][0]["model"] == "dear"
    assert check["calls"][0]["skipped"].startswith("over budget 'daily'")
    assert [e.purpose for e in open_ledger(ledger_url).entries()] == ["answer"]

    roomy_url = ledger_url.replace("ledger.db", "roomy.db")
    roomy = PolicyRouter(policy=loads_policy(policy_text(roomy_url, budget("daily", 1.0), checks=verifier)))
    record = routing(roomy.invoke(QUESTION))
    assert record["attempts"][0]["checks"][0]["calls"][0]["skipped"] is None
    entries = open_ledger(roomy_url).entries()
    assert [(e.model, e.purpose) for e in entries] == [("cheap", "answer"), ("dear", "verifier")]
    assert sum(e.cost_usd for e in entries) == pytest.approx(record["total_cost_usd"], abs=1e-8)
