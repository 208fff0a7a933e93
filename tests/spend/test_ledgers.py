"""The ledger contract, on every backend: in-memory, SQLite (a real file) and Redis (a real
redis-server of our own). Reserve is all-or-nothing across buckets, holds expire after their
TTL, settle records what was spent, and threads hammering one budget never overspend it."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from router.spend import Bucket, Hold, Ledger, open_ledger
from router.spend.ledger import to_units

NOW = 1_800_000_000.0


@pytest.fixture(params=["memory", "sqlite", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path) -> Iterator[Ledger]:
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("redis_url")
    store = open_ledger(url)
    yield store
    store.close()


def bucket(name: str = "daily", limit: float = 1.0, subject: str | None = None) -> Bucket:
    return Bucket(name, subject, "2027-01-15", to_units(limit))


def hold(*buckets: Bucket, usd: float, ttl: float = 60.0, model: str = "flash") -> Hold:
    return Hold(uuid.uuid4().hex, buckets, to_units(usd, round_up=True), NOW + ttl, "p", model,
                labels=tuple(b.budget for b in buckets))


def test_reserve_fits_until_the_limit_then_names_the_short_bucket(ledger: Ledger):
    daily = bucket(limit=1.0)
    assert ledger.reserve(hold(daily, usd=0.6), NOW) is None
    short = ledger.reserve(hold(daily, usd=0.5), NOW)
    assert short is not None and short.bucket == daily and short.left == to_units(0.4)
    assert ledger.reserve(hold(daily, usd=0.4), NOW) is None  # exactly what is left still fits
    usage = ledger.usage(daily, NOW)
    assert (usage.spent, usage.reserved) == (0, to_units(1.0))


def test_reserve_is_all_or_nothing_across_buckets(ledger: Ledger):
    daily, ann = bucket("daily", 10.0), bucket("per-user", 1.0, subject="ann")
    assert ledger.reserve(hold(daily, ann, usd=0.8), NOW) is None
    short = ledger.reserve(hold(daily, ann, usd=0.5), NOW)
    assert short is not None and short.bucket == ann
    # The refused hold took nothing from the bucket that had room.
    assert ledger.usage(daily, NOW).reserved == to_units(0.8)
    # Another user is a different bucket of the same budget.
    assert ledger.reserve(hold(daily, bucket("per-user", 1.0, subject="bob"), usd=0.5), NOW) is None


def test_settle_moves_the_hold_to_actual_spending_and_records_an_entry(ledger: Ledger):
    daily = bucket(limit=1.0)
    h = hold(daily, usd=0.5, model="gpt-4")
    assert ledger.reserve(h, NOW) is None
    ledger.settle(h, to_units(0.125), NOW + 1)
    usage = ledger.usage(daily, NOW + 1)
    assert (usage.spent, usage.reserved) == (to_units(0.125), 0)
    [entry] = ledger.entries()
    assert (entry.model, entry.policy, entry.budgets, entry.ts) == ("gpt-4", "p", ("daily",), NOW + 1)
    assert entry.cost_usd == 0.125 and entry.worst_case_usd == 0.5
    assert ledger.entries(since=NOW + 2) == []


def test_release_frees_the_hold_and_records_nothing(ledger: Ledger):
    daily = bucket(limit=1.0)
    h = hold(daily, usd=0.9)
    assert ledger.reserve(h, NOW) is None
    ledger.release(h)
    ledger.release(h)  # harmless twice
    assert ledger.usage(daily, NOW).reserved == 0 and ledger.entries() == []
    assert ledger.reserve(hold(daily, usd=1.0), NOW) is None


def test_a_hold_expires_after_its_ttl(ledger: Ledger):
    daily = bucket(limit=1.0)
    assert ledger.reserve(hold(daily, usd=1.0, ttl=30), NOW) is None
    assert ledger.reserve(hold(daily, usd=0.1), NOW + 29) is not None
    assert ledger.reserve(hold(daily, usd=1.0), NOW + 30) is None  # the dead hold no longer counts


def test_threads_racing_for_one_budget_never_overspend(ledger: Ledger):
    daily = bucket(limit=0.05)
    admitted: list[int] = []

    def worker() -> None:
        for _ in range(25):
            h = hold(daily, usd=0.001)
            if ledger.reserve(h, NOW) is None:
                admitted.append(1)
                ledger.settle(h, to_units(0.001), NOW)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 50
    assert ledger.usage(daily, NOW).spent == to_units(0.05)
    assert len(ledger.entries()) == 50


def test_memory_ledgers_are_shared_by_url_within_a_process():
    url = f"memory://{uuid.uuid4().hex}"
    assert open_ledger(url) is open_ledger(url)
    assert open_ledger(url) is not open_ledger(url + "-other")


def test_redis_url_password_never_shows(redis_url: str):
    url = redis_url.replace("redis://", "redis://:s3cret-pw@")
    store = open_ledger(url)
    assert "s3cret-pw" not in repr(store) and "s3cret-pw" not in store.url


def test_an_unreachable_ledger_fails_closed(caplog: pytest.LogCaptureFixture):
    from langchain_core.messages import HumanMessage

    from router.routing.model_call import ModelCall
    from router.spend import Budget, BudgetGuard

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    guard = BudgetGuard([Budget(name="daily", period="day", limit_usd=10)],
                        f"redis://:pw-never-logged@127.0.0.1:{port}/0", policy="p")
    call = ModelCall("flash", (HumanMessage("hi"),), worst_case_usd=0.01)
    assert guard.reserve(call, {}) == "budget ledger unavailable (redis): refused a paid call"
    assert guard.reserve(ModelCall("gemma", (), worst_case_usd=0.0), {}) is None  # free calls need no ledger
    assert "pw-never-logged" not in caplog.text and "budget check failed closed" in caplog.text


def test_the_default_ledger_is_sqlite_in_the_user_state_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from router.spend import default_ledger_url

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    url = default_ledger_url()
    assert url == f"sqlite:///{tmp_path / 'policy-router' / 'ledger.db'}"
    store = open_ledger(None)
    assert store.url == url and (tmp_path / "policy-router" / "ledger.db").exists()
    store.close()


def test_a_ledger_that_cannot_be_opened_fails_closed(tmp_path):
    from langchain_core.messages import HumanMessage

    from router.routing.model_call import ModelCall
    from router.spend import Budget, BudgetGuard

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger's directory should be")
    guard = BudgetGuard([Budget(name="daily", period="day", limit_usd=10)],
                        f"sqlite:///{blocker / 'ledger.db'}", policy="p")
    call = ModelCall("flash", (HumanMessage("hi"),), worst_case_usd=0.01)
    assert guard.reserve(call, {}) == "budget ledger unavailable (sqlite): refused a paid call"
