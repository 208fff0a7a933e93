"""Budgets across OS processes: two processes racing for one SQLite budget, and a process
killed with SIGKILL mid-call whose reservation expires after the ledger's TTL. The workers
(``_worker.py``) run the real router and ChatGoogleGenerativeAI against the Gemini test server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spend_support import GEMINI_KEY, MAX_TOKENS, OUTPUT_PRICE, gemini_policy

from router.spend import Bucket, Hold, open_ledger, spend_report
from router.spend.ledger import to_units
from router.spend.periods import period_key

WORKER = Path(__file__).with_name("_worker.py")
WORST_CASE = MAX_TOKENS * OUTPUT_PRICE / 1e6


def start_worker(policy_file: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "GOOGLE_API_KEY": GEMINI_KEY}
    return subprocess.Popen([sys.executable, str(WORKER), str(policy_file), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def expect(proc: subprocess.Popen[str], line: str) -> None:
    got = proc.stdout.readline().strip()  # type: ignore[union-attr]
    assert got == line, f"worker said {got!r}, expected {line!r}"


def send(proc: subprocess.Popen[str], line: str) -> None:
    proc.stdin.write(line + "\n")  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def test_two_processes_share_one_sqlite_budget(gemini, tmp_path: Path):
    limit = 0.03
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(gemini_policy(gemini.base_url, ledger_url, limit=limit))
    workers = [start_worker(policy_file, "many", "40", "4") for _ in range(2)]
    try:
        for w in workers:
            expect(w, "ready")
        for w in workers:  # both are loaded: start the race together
            send(w, "go")
        outcomes = [json.loads(w.stdout.readline()) for w in workers]  # type: ignore[union-attr]
    finally:
        for w in workers:
            w.kill()
            w.wait()
    assert all(o["unexpected"] == [] for o in outcomes), outcomes
    admitted = sum(o["admitted"] for o in outcomes)
    settled = spend_report(ledger_url).total_usd
    print(f"\ntwo processes: admitted {[o['admitted'] for o in outcomes]}, server calls {gemini.count()}, "
          f"settled ${settled:.6f}, limit ${limit:.6f}")
    assert admitted == round(limit / WORST_CASE) == 30
    assert gemini.count() == admitted
    assert min(o["admitted"] for o in outcomes) > 0  # both drew on the one budget
    assert settled <= limit + 1e-12 and settled == pytest.approx(admitted * WORST_CASE)


def test_a_process_killed_mid_call_loses_its_reservation_after_the_ttl(gemini, tmp_path: Path):
    ttl_s, limit = 1.5, 0.0035
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}?ttl_s={ttl_s}"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(gemini_policy(gemini.base_url, ledger_url, limit=limit))
    ledger = open_ledger(ledger_url)
    today = Bucket("daily", None, period_key("day", time.time()), to_units(limit))
    worker = start_worker(policy_file, "hang")
    try:
        expect(worker, "ready")
        send(worker, "go")
        expect(worker, "settled")
        gemini.fail("hang", times=None, hang_s=ttl_s + 3)
        send(worker, "go")
        deadline = time.monotonic() + 20
        while gemini.count() < 2:  # the second call is reserved and in flight
            assert time.monotonic() < deadline, "the worker never made its second call"
            time.sleep(0.02)
        held = ledger.usage(today, time.time())
        assert held.reserved == to_units(WORST_CASE) and held.spent == to_units(WORST_CASE)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
        killed_at = time.time()
        # Still held right after the kill: nobody released it ...
        assert ledger.usage(today, time.time()).reserved == to_units(WORST_CASE)
        # ... and gone once the TTL has passed. Nothing else is lost.
        time.sleep(max(0.0, killed_at + ttl_s - time.time()) + 0.1)
        after = ledger.usage(today, time.time())
        assert (after.spent, after.reserved) == (to_units(WORST_CASE), 0)
        [entry] = ledger.entries()
        assert entry.model == "flash" and entry.cost_usd == pytest.approx(WORST_CASE)
        room = Hold("after-ttl", (today,), to_units(limit - WORST_CASE), time.time() + 60, "p", "flash")
        assert ledger.reserve(room, time.time()) is None  # the whole remainder is free again
    finally:
        worker.kill()
        worker.wait()
        gemini.heal()
