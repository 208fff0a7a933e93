"""A recorded model charges its recorded cost, so its worst case (what the ceiling and the
budgets are checked against before the call) is at least that cost, whatever ``price:`` says.

Before, the worst case came from ``price:`` alone (0 when omitted): under a $0.001 ceiling every
request was charged $0.004 by the recording, and a $0.001 budget was never touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router import PolicyRouter, RoutingError
from router.policy.policy_file import load_policy
from router.providers.recorded import recorded_cost_bound

PROMPTS = {"What is 2+2?": 0.004, "What is 3+3?": 0.0005}


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    path = tmp_path / "costs.jsonl"
    rows = [{"id": f"q{i}", "prompt": prompt, "models": {"paid": {"response": "4", "correct": True, "cost_usd": cost}}}
            for i, (prompt, cost) in enumerate(PROMPTS.items())]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def policy(dataset: str, *, ceiling: float, budget: float | None = None, price: bool = False) -> dict:
    spec = {"provider": "recorded", "model": "paid", "dataset": dataset, "local": True}
    if price:
        spec["price"] = {"input": 1.0, "output": 1.0}
    data = {"version": 1, "name": "replay", "models": {"paid": spec},
            "policy": {"cost_ceiling": ceiling, "max_output_tokens": 8, "cascade": ["paid"]}}
    if budget is not None:
        data |= {"budgets": [{"name": "daily", "period": "day", "limit_usd": budget}], "ledger": "memory://"}
    return data


@pytest.mark.parametrize("price", [False, True])
def test_the_worst_case_of_a_recorded_model_covers_its_recorded_cost(dataset: str, price: bool):
    spec = load_policy(policy(dataset, ceiling=1.0, price=price)).models["paid"]
    assert recorded_cost_bound(spec) == 0.004
    assert spec.worst_case_usd(10, 8) >= max(PROMPTS.values())  # the dearest answer, known before any call


def test_a_recorded_model_is_not_called_over_the_ceiling(dataset: str):
    router = PolicyRouter(policy=policy(dataset, ceiling=0.001))
    with pytest.raises(RoutingError) as info:
        router.invoke("What is 2+2?")
    [excluded] = info.value.decision.excluded
    assert excluded.model == "paid" and excluded.reason.startswith("over ceiling: worst case $0.004000")
    assert info.value.decision.total_cost_usd == 0


def test_a_recorded_model_is_reserved_against_the_budget(dataset: str):
    router = PolicyRouter(policy=policy(dataset, ceiling=1.0, budget=0.001))
    with pytest.raises(RoutingError) as info:
        router.invoke("What is 2+2?")
    assert "over budget 'daily'" in info.value.decision.excluded[0].reason
    roomy = PolicyRouter(policy=policy(dataset, ceiling=1.0, budget=1.0))
    record = roomy.invoke("What is 2+2?").response_metadata["routing"]
    assert record["total_cost_usd"] == pytest.approx(0.004)
    assert record["estimated_cost_usd"] >= record["total_cost_usd"]  # never charged above its worst case
    assert roomy.spend_guard.status()[0].spent_usd == pytest.approx(0.004)
