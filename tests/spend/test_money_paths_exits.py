"""Every budget hold is settled on every exit (issue 24, point 6): a request cancelled while its
retry's hold is being reserved gives that hold back; Ctrl-C during a paid sync call charges the
call's worst case (as an asyncio cancel does); a stream the consumer leaves is charged, never
left reserved. Real ledgers (memory, SQLite, Redis), the real ChatOpenAI client, a loopback
server that answers as slowly as the test needs."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from money_server import MoneyServer, Reply

from router import PolicyRouter, RoutingError
from router.policy import loads_policy
from router.routing.model_call import ModelCall
from router.spend import BudgetGuard

PRICE = 10.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("redis_url"))


def policy_text(server: MoneyServer, ledger: str, *, retries: int = 0) -> str:
    return f"""
version: 1
name: exits
models:
  gpt:
    provider: openai
    model: gpt-x
    base_url: {server.base_url}
    tier: basic
    price: {{input: {PRICE}, output: {PRICE}}}
    max_retries: {retries}
policy:
  cost_ceiling: 1.0
  max_output_tokens: 50
  cascade: [gpt]
  confidence: []
breaker:
  max_retry_wait_s: 0.1
budgets:
  - name: daily
    period: day
    limit_usd: 10.0
ledger: "{ledger}"
"""


class SlowRetryHold(BudgetGuard):
    """A real guard whose second reservation (a retry's hold) waits until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reserving = threading.Event()
        self.go = threading.Event()
        self.reserved = threading.Event()
        self.count = 0

    def reserve(self, call: ModelCall, config: RunnableConfig) -> Any:
        self.count += 1
        if self.count == 2:
            self.reserving.set()
            self.go.wait(10)
            hold = super().reserve(call, config)
            self.reserved.set()
            return hold
        return super().reserve(call, config)


def status(guard: BudgetGuard) -> tuple[float, float]:
    state = guard.status()[0]
    return state.spent_usd, state.reserved_usd


async def test_a_cancel_while_a_retry_hold_is_reserved_gives_it_back(server: MoneyServer, ledger: str):
    server.script(Reply(status=500), Reply())
    policy = loads_policy(policy_text(server, ledger, retries=1))
    guard = SlowRetryHold(policy.budgets, policy.ledger, policy=policy.name)
    router = PolicyRouter(policy=policy, spend_guard=guard)
    task = asyncio.create_task(router.ainvoke("Capital of France?"))
    assert await asyncio.to_thread(guard.reserving.wait, 10), "the retry never asked for its hold"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    guard.go.set()  # the thread now takes the retry's hold, for a request that is gone
    assert await asyncio.to_thread(guard.reserved.wait, 10)
    deadline = time.monotonic() + 10
    while status(guard)[1] > 0:
        assert time.monotonic() < deadline, "the cancelled request's retry hold was never given back"
        await asyncio.sleep(0.05)
    assert status(guard) == (0.0, 0.0)  # the first try was refused (500): nothing spent
    assert server.count() == 1


def test_ctrl_c_during_a_paid_sync_call_charges_its_worst_case(server: MoneyServer, ledger: str):
    server.script(Reply(delay_s=5.0))
    router = PolicyRouter(policy=loads_policy(policy_text(server, ledger)))
    worst = router.plan("Capital of France?").selection.worst_case_usd["gpt"]
    main = threading.get_ident()

    def press_ctrl_c() -> None:
        if server.arrived.wait(10):
            signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        router.invoke("Capital of France?")
    assert time.monotonic() - started < 4, "Ctrl-C did not interrupt the call"
    spent, reserved = status(router.spend_guard)  # type: ignore[arg-type]
    assert reserved == 0
    assert spent == pytest.approx(worst, rel=1e-6), "a call interrupted by Ctrl-C was not charged"


async def test_an_asyncio_cancel_during_a_paid_call_charges_its_worst_case(server: MoneyServer, ledger: str):
    server.script(Reply(delay_s=5.0))
    router = PolicyRouter(policy=loads_policy(policy_text(server, ledger)))
    worst = router.plan("Capital of France?").selection.worst_case_usd["gpt"]
    task = asyncio.create_task(router.ainvoke("Capital of France?"))
    assert await asyncio.to_thread(server.arrived.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while status(router.spend_guard)[1] > 0:  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert status(router.spend_guard)[0] == pytest.approx(worst, rel=1e-6)  # type: ignore[arg-type]


async def test_an_async_stream_left_mid_way_is_charged_not_left_reserved(server: MoneyServer, ledger: str):
    server.script(Reply(text="one, two, three, four"))
    router = PolicyRouter(policy=loads_policy(policy_text(server, ledger)))
    worst = router.plan("Count").selection.worst_case_usd["gpt"]
    stream = router.astream("Count")
    async for chunk in stream:
        if chunk.content:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while status(router.spend_guard)[1] > 0:  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "a stream left mid-way kept its hold"
        await asyncio.sleep(0.05)
    spent = status(router.spend_guard)[0]  # type: ignore[arg-type]
    assert 0 < spent <= worst + 1e-9


def test_a_failed_call_settles_every_hold(server: MoneyServer, ledger: str):
    server.script(Reply(status=500))
    router = PolicyRouter(policy=loads_policy(policy_text(server, ledger, retries=1)))
    with pytest.raises(RoutingError):
        router.invoke("Capital of France?")
    assert status(router.spend_guard) == (0.0, 0.0)  # type: ignore[arg-type]
    assert server.count() == 2
