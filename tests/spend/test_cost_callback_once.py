"""``get_cost_callback()`` counts each request once, wherever its record shows up.

Before, a step *after* the router that passed its message on (``RunnablePassthrough``, a guard,
a logger) ended with the same record and counted it again: ``router | RunnablePassthrough()``
gave 2x the cost, ``router | f | g`` 3x.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from router import PolicyRouter
from router.spend import get_cost_callback

PROMPT = "What is the capital of France?"
COST = 0.0042


@pytest.fixture
def router(tmp_path: Path) -> PolicyRouter:
    dataset = tmp_path / "paid.jsonl"
    dataset.write_text(json.dumps({"id": "q", "prompt": PROMPT, "models": {
        "paid": {"response": "Paris", "correct": True, "cost_usd": COST}}}) + "\n")
    return PolicyRouter(policy={
        "version": 1, "name": "paid-replay",
        "models": {"paid": {"provider": "recorded", "model": "paid", "dataset": str(dataset), "local": True,
                            "price": {"input": 1.0, "output": 1.0}}},
        "policy": {"cost_ceiling": 1.0, "max_output_tokens": 8, "cascade": ["paid"]}})


def keep(message):
    return message


@pytest.mark.parametrize("after", [
    pytest.param(lambda: [RunnablePassthrough()], id="passthrough"),
    pytest.param(lambda: [RunnableLambda(keep), RunnableLambda(keep)], id="guard-then-logger"),
    pytest.param(lambda: [RunnableLambda(keep), StrOutputParser()], id="step-then-parser"),
])
def test_steps_after_the_router_that_pass_its_message_on_count_it_once(router: PolicyRouter, after):
    chain = router
    for step in after():
        chain = chain | step
    with get_cost_callback() as cb:
        chain.invoke(PROMPT)
    assert cb.requests == 1
    assert cb.total_usd == pytest.approx(COST)
    assert cb.by_model == {"paid": pytest.approx(COST)}


async def test_two_requests_through_the_same_chain_count_twice(router: PolicyRouter):
    chain = router | RunnablePassthrough() | RunnableLambda(keep)
    with get_cost_callback() as cb:
        chain.invoke(PROMPT)
        await chain.ainvoke(PROMPT)
        chain.batch([PROMPT, PROMPT])
    assert cb.requests == 4 and cb.total_usd == pytest.approx(4 * COST)

