"""Durable settles and a ledger that fails closed, on real parts: a SQLite file write-locked by
a second OS process (``_locker.py``) while the router settles a paid call, a real redis-server
paused under a settle, and a ledger file deleted or truncated under a running router. Calls go
through the real router and ChatGoogleGenerativeAI to the Gemini test server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from spend_support import MAX_TOKENS, OUTPUT_PRICE, full_length_reply, gemini_policy

from router import PolicyRouter, RoutingError, loads_policy
from router.spend import Bucket, BudgetGuard, Hold, LedgerLostError, open_ledger, spend_report
from router.spend.ledger import to_units
from router.spend.owner import current_owner
from router.spend.periods import period_key
from router.spend.redis_ledger import RedisLedger
from router.spend.sqlite_ledger import SQLiteLedger

LOCKER = Path(__file__).with_name("_locker.py")
WORST_CASE = MAX_TOKENS * OUTPUT_PRICE / 1e6  # $0.001, also each call's actual cost
LIMIT = 3 * WORST_CASE


def paid_calls_until_refused(router: PolicyRouter, gemini, most: int = 10) -> int:
    for _ in range(most):
        try:
            router.invoke("One more question")
        except RoutingError:
            break
    return gemini.count()


class Locker:
    """The second process: ``lock`` takes SQLite's write lock, ``release`` commits and then
    tries, as another router would, to reserve ``room`` in the day's budget."""

    def __init__(self, path: Path, room: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(LOCKER), str(path), str(to_units(LIMIT)), str(room)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.expect("ready")

    def say(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self.proc.stdout.readline().strip()  # type: ignore[union-attr]

    def expect(self, line: str) -> None:
        got = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert got == line, f"locker said {got!r}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_a_settle_blocked_by_another_process_lands_later_and_the_budget_holds(gemini, tmp_path: Path):
    path = tmp_path / "ledger.db"
    ttl_s = 1.0
    policy = loads_policy(gemini_policy(gemini.base_url, f"sqlite:///{path}", limit=LIMIT))
    ledger = SQLiteLedger(path, ttl_s=ttl_s, busy_timeout_s=0.2)  # gives up on a lock quickly
    guard = BudgetGuard.from_policy(policy, ledger=ledger)
    router = PolicyRouter(policy=policy, spend_guard=guard)
    locker = Locker(path, room=to_units(1.5 * WORST_CASE))
    try:
        router.invoke("First question")  # settled: $0.001 spent

        def lock_then_answer(model: str, request: dict) -> str:
            assert locker.say("lock") == "locked"  # the call is reserved and in flight
            return full_length_reply(model, request)

        gemini.reply(lock_then_answer)
        router.invoke("Second question")  # answered; its settle meets the lock
        gemini.reply(full_length_reply)
        assert [p.hold.model for p in guard.pending_settles] == ["flash"]
        time.sleep(ttl_s + 0.3)  # the hold's TTL passes while the ledger is still locked
        assert guard.pending_settles, "nothing could have been written under the lock"
        # The lock goes; the other process at once asks for $0.0015. Spent $0.001 plus the
        # pending call's $0.001 leave $0.001: refused, whether or not our retry landed first.
        assert locker.say("release") == "refused"
        deadline = time.monotonic() + 10
        while guard.pending_settles:
            assert time.monotonic() < deadline, "the pending settle never landed"
            time.sleep(0.05)
        today = Bucket("daily", None, period_key("day", time.time()), to_units(LIMIT))
        usage = ledger.usage(today, time.time())
        assert (usage.spent, usage.reserved) == (to_units(2 * WORST_CASE), 0)
        paid = paid_calls_until_refused(router, gemini)
    finally:
        locker.close()
    settled = spend_report(f"sqlite:///{path}").total_usd
    print(f"\nlost-settle scenario: {paid} calls paid against a limit of {round(LIMIT / WORST_CASE)} "
          f"(${LIMIT:.6f}); ledger records ${settled:.6f}")
    assert paid == 3 and settled == pytest.approx(LIMIT)


def test_a_hold_of_a_running_process_outlives_its_ttl_and_a_dead_ones_does_not(tmp_path: Path):
    ledger = SQLiteLedger(tmp_path / "ledger.db", ttl_s=1.0)
    now = time.time()
    daily = Bucket("daily", None, "2027-01-15", to_units(1.0))
    dead = subprocess.run([sys.executable, "-c", "from router.spend.owner import current_owner; "
                           "print(current_owner())"], capture_output=True, text=True, check=True).stdout.strip()
    assert dead != current_owner()
    for owner in (current_owner(), dead, ""):
        assert ledger.reserve(Hold(uuid.uuid4().hex, (daily,), to_units(0.25), now + 1, "p", "m",
                                   owner=owner), now) is None
    later = now + 5  # every TTL has passed: only the live process's hold still counts
    assert ledger.usage(daily, later).reserved == to_units(0.25)


def test_settling_the_same_hold_twice_counts_once(tmp_path: Path, redis_url: str):
    for store in (SQLiteLedger(tmp_path / "ledger.db"), open_ledger(redis_url)):
        daily = Bucket("daily", None, "2027-01-15", to_units(1.0))
        hold = Hold(uuid.uuid4().hex, (daily,), to_units(0.5), time.time() + 60, "p", "m")
        assert store.reserve(hold, time.time()) is None
        store.settle(hold, to_units(0.2), time.time())
        store.settle(hold, to_units(0.2), time.time())  # a retry of a settle that did land
        assert store.usage(daily, time.time()).spent == to_units(0.2)
        assert len(store.entries()) == 1
        store.close()


def test_a_settle_during_a_redis_outage_is_retried_until_it_lands(gemini, redis_url: str):
    import redis

    policy = loads_policy(gemini_policy(gemini.base_url, redis_url, limit=LIMIT))
    ledger = RedisLedger(redis_url, timeout_s=0.2, prefix=f"t{uuid.uuid4().hex[:8]}")
    guard = BudgetGuard.from_policy(policy, ledger=ledger)
    router = PolicyRouter(policy=policy, spend_guard=guard)
    admin = redis.Redis.from_url(redis_url)

    def pause_then_answer(model: str, request: dict) -> str:
        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # Redis answers nobody for 1.5 s
        return full_length_reply(model, request)

    try:
        gemini.reply(pause_then_answer)
        router.invoke("A question")
        gemini.reply(full_length_reply)
        assert len(guard.pending_settles) == 1
        deadline = time.monotonic() + 15
        while guard.pending_settles:
            assert time.monotonic() < deadline, "the pending settle never landed"
            time.sleep(0.05)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    [entry] = ledger.entries()
    assert entry.cost_usd == pytest.approx(WORST_CASE)
    assert paid_calls_until_refused(router, gemini) == 3


@pytest.mark.parametrize("what", ["deleted", "truncated", "cut short", "replaced"])
def test_a_ledger_file_lost_under_a_running_router_fails_closed(gemini, tmp_path: Path, what: str):
    path = tmp_path / "ledger.db"
    policy = loads_policy(gemini_policy(gemini.base_url, f"sqlite:///{path}", limit=LIMIT))
    router = PolicyRouter(policy=policy)
    router.invoke("First question")  # opens the ledger and spends $0.001 in it
    if what == "cut short":  # a ledger of many pages loses its tail, header intact
        ledger = router.spend_guard.ledger
        filler = sqlite3.connect(path)
        filler.executemany("INSERT INTO entries VALUES (?, 0, 'p', 'm', 'answer', 0, 0, '[]', '{}')",
                           [(f"filler-{i}-{'x' * 200}",) for i in range(300)])
        filler.commit()
        filler.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler.close()
        assert ledger.usage(Bucket("daily", None, "2027-01-15", 1), time.time()).spent == 0  # sees it whole
        assert path.stat().st_size > 8 * 4096
        os.truncate(path, 2 * 4096)
        what = "truncated"
    elif what == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif what == "truncated":
        os.truncate(path, 0)
    else:
        fresh = tmp_path / "fresh.db"
        SQLiteLedger(fresh).close()
        os.replace(fresh, path)
    with pytest.raises(LedgerLostError) as info:
        router.invoke("Second question")
    assert info.value.what == what and info.value.path == str(path)
    assert "refused" in str(info.value) and str(path) in str(info.value)
    assert gemini.count() == 1  # the paid call was never made
    with pytest.raises(LedgerLostError):  # and it stays closed
        router.invoke("Third question")
    assert gemini.count() == 1


def test_a_settle_blocked_by_another_process_is_retried(gemini, tmp_path: Path):
    # A timed-out call may have been billed, so it is charged its worst case (it used to be
    # released at $0): that settle, refused while another process holds the lock, lands later.
    path = tmp_path / "ledger.db"
    text = gemini_policy(gemini.base_url, f"sqlite:///{path}", limit=LIMIT).replace(
        "max_retries: 0", "max_retries: 0\n    timeout_s: 0.5")
    policy = loads_policy(text)
    ledger = SQLiteLedger(path, busy_timeout_s=0.2)
    guard = BudgetGuard.from_policy(policy, ledger=ledger)
    router = PolicyRouter(policy=policy, spend_guard=guard)
    worst = to_units(router.plan("A question").selection.worst_case_usd["flash"])
    locker = Locker(path, room=to_units(LIMIT))
    today = Bucket("daily", None, period_key("day", time.time()), to_units(LIMIT))

    def lock_then_hang(model: str, request: dict) -> str:
        assert locker.say("lock") == "locked"
        time.sleep(1.0)  # past the client's timeout: the call fails and is charged its worst case
        return "too late"

    try:
        gemini.reply(lock_then_hang)
        with pytest.raises(RoutingError):
            router.invoke("A question")
        assert [p.cost for p in guard.pending_settles] == [worst]  # a settle, waiting for the lock
        assert locker.say("release") == "refused"  # the failed call's hold still holds meanwhile
        deadline = time.monotonic() + 10
        while guard.pending_settles:
            assert time.monotonic() < deadline, "the pending settle never landed"
            time.sleep(0.05)
    finally:
        locker.close()
    usage = ledger.usage(today, time.time())
    assert (usage.spent, usage.reserved) == (worst, 0)


async def test_a_request_cancelled_while_reserving_gives_its_reservation_back(gemini, tmp_path: Path):
    import asyncio

    path = tmp_path / "ledger.db"
    policy = loads_policy(gemini_policy(gemini.base_url, f"sqlite:///{path}", limit=LIMIT))
    ledger = SQLiteLedger(path, busy_timeout_s=10)
    router = PolicyRouter(policy=policy, spend_guard=BudgetGuard.from_policy(policy, ledger=ledger))
    router.catalog.chat_model("flash")
    locker = Locker(path, room=0)
    try:
        assert locker.say("lock") == "locked"  # the reservation waits for the lock in its thread
        task = asyncio.create_task(router.ainvoke("A question"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert locker.say("release") == "fitted"  # the thread now gets the lock and reserves ...
    finally:
        locker.close()
    today = Bucket("daily", None, period_key("day", time.time()), to_units(LIMIT))
    deadline = time.monotonic() + 10
    while ledger.usage(today, time.time()).reserved:  # ... and the cancelled request gives it back
        assert time.monotonic() < deadline, "the cancelled request's hold was never given back"
        await asyncio.sleep(0.05)
    assert gemini.count() == 0
