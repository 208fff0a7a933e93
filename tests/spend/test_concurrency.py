"""Budgets under concurrency, end to end: the real router, the real ChatGoogleGenerativeAI
client over HTTP to the Gemini test server on 127.0.0.1, and real ledgers (SQLite, Redis).

The test server reports exactly ``maxOutputTokens`` output tokens and the model has no input
price, so every call costs exactly its reserved worst case ($0.001): a $0.05 budget admits
exactly 50 calls however the 200 requests interleave, and any overspend or over-admission
shows as a wrong count.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from spend_support import MAX_TOKENS, OUTPUT_PRICE, gemini_policy

from router import PolicyRouter, RoutingError, loads_policy
from router.spend import BudgetGuard, Ledger, open_ledger, spend_report

WORST_CASE = MAX_TOKENS * OUTPUT_PRICE / 1e6
LIMIT = 0.05
CALLS = 200


def admitted_and_refused(results: list[object]) -> tuple[int, list[RoutingError]]:
    refused = [r for r in results if isinstance(r, RoutingError)]
    others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, RoutingError)]
    assert not others, f"unexpected errors: {others[:3]}"
    return len(results) - len(refused), refused


class ThreadRecordingLedger:
    """A real ledger, wrapped to record which thread each reserve/settle/release ran on."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.threads: list[int] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("reserve", "settle", "release"):
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.get_ident())
            return attr(*args, **kwargs)

        return recorded


async def _ainvoke_many(routers: list[PolicyRouter], n: int) -> list[object]:
    for router in routers:  # build the client first: its import takes seconds, on the loop
        router.catalog.chat_model("flash")
    return list(await asyncio.gather(*(routers[i % len(routers)].ainvoke(f"Question {i}: say words.")
                                       for i in range(n)), return_exceptions=True))


async def test_200_concurrent_ainvoke_never_overspend_one_budget(gemini, tmp_path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    policy = loads_policy(gemini_policy(gemini.base_url, ledger_url, limit=LIMIT))
    ledger = ThreadRecordingLedger(open_ledger(ledger_url))
    router = PolicyRouter(policy=policy, spend_guard=BudgetGuard.from_policy(policy, ledger=ledger))

    results = await _ainvoke_many([router], CALLS)

    admitted, refused = admitted_and_refused(results)
    expected = math.floor(LIMIT / WORST_CASE + 1e-9)
    settled = spend_report(ledger_url).total_usd
    print(f"\n200 concurrent ainvoke: admitted {admitted}, refused {len(refused)}, server calls "
          f"{gemini.count()}, settled ${settled:.6f}, limit ${LIMIT:.6f}")
    reasons = sorted({str(r)[:200] for r in refused})[:3]
    assert admitted == expected == 50, f"refusals: {reasons}"
    assert gemini.count() == admitted  # the server saw no call the budget did not admit
    assert settled <= LIMIT + 1e-12 and settled == pytest.approx(admitted * WORST_CASE)
    reasons = {e.decision.excluded[0].reason for e in refused}
    assert all(r.startswith("over budget 'daily' (day ") and "left of $0.050000" in r for r in reasons)
    costs = sum(r.response_metadata["routing"]["total_cost_usd"] for r in results
                if not isinstance(r, BaseException))
    assert costs == pytest.approx(settled)
    # Ledger I/O is blocking: none of it may run on the event loop's thread.
    assert len(ledger.threads) == CALLS + admitted
    assert threading.get_ident() not in ledger.threads


async def test_two_router_instances_share_one_redis_budget(gemini, redis_url):
    text = gemini_policy(gemini.base_url, redis_url, limit=LIMIT)
    first, second = (PolicyRouter(policy=loads_policy(text)) for _ in range(2))
    assert first.spend_guard is not second.spend_guard

    results = await _ainvoke_many([first, second], 120)

    admitted, _ = admitted_and_refused(results)
    per_router = [sum(1 for i, r in enumerate(results) if i % 2 == k and not isinstance(r, BaseException))
                  for k in (0, 1)]
    ledger = open_ledger(redis_url)
    settled = spend_report(ledger).total_usd
    assert admitted == 50 and gemini.count() == 50
    assert min(per_router) > 0, per_router  # both instances drew on the one budget
    assert settled <= LIMIT + 1e-12 and settled == pytest.approx(50 * WORST_CASE)
    status = first.spend_guard.status()[0]
    assert status.spent_usd == pytest.approx(LIMIT) and status.reserved_usd == 0


async def test_concurrent_streams_settle_their_streamed_usage(gemini, tmp_path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    router = PolicyRouter(policy=loads_policy(gemini_policy(gemini.base_url, ledger_url, limit=0.01)))
    router.catalog.chat_model("flash")

    async def stream(i: int) -> object:
        try:
            return [c async for c in router.astream(f"Stream {i}")]
        except RoutingError as err:
            return err

    results = await asyncio.gather(*(stream(i) for i in range(20)))
    streamed = [r for r in results if isinstance(r, list)]
    assert len(streamed) == 10 and gemini.count() == 10
    assert all(r.path.endswith(":streamGenerateContent?alt=sse") for r in gemini.requests)
    entries = open_ledger(ledger_url).entries()
    assert len(entries) == 10 and all(e.cost_usd == pytest.approx(WORST_CASE) for e in entries)
    assert spend_report(ledger_url).total_usd == pytest.approx(0.01)
