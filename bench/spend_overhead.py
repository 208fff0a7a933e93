"""Reserve+settle overhead per paid call, for each ledger backend, against a baseline.

One run; for each backend, the median (and p95) of many reserve+settle pairs through
``BudgetGuard`` — the path ``Caller`` takes before and after every paid model call — with two
budgets (a daily one and a per-user one). The baseline, measured in the same process, is the
router's own planning of one request (``PolicyRouter.plan``: rules, selection, token
counting), so a ratio of 1.0 means "budgets double the router's per-request overhead"; a
model call itself is milliseconds to seconds more.

    python bench/spend_overhead.py [--calls 3000] [--redis-url redis://127.0.0.1:6379/0]

Without ``--redis-url`` it starts its own redis-server on a free loopback port (no
persistence) when one is installed, and skips Redis otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from langchain_core.messages import HumanMessage

from router import PolicyRouter, loads_policy
from router.routing.model_call import ModelCall
from router.spend import BudgetGuard

POLICY = """
version: 1
name: bench
models:
  flash:
    provider: google_genai
    model: gemini-2.0-flash
    price: {input: 0.10, output: 0.40}
policy:
  max_output_tokens: 256
  cascade: [flash]
budgets:
  - {name: daily, period: day, limit_usd: 1000000}
  - {name: per-user, period: day, limit_usd: 1000000, per: user}
"""
PROMPT = "Summarise the attached contract in three bullet points, and flag any unusual clauses."
CONFIG = {"metadata": {"user": "ann"}}


def timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def reserve_settle(guard: BudgetGuard) -> Callable[[], object]:
    call = ModelCall("flash", (HumanMessage(PROMPT),), worst_case_usd=0.0001)

    def once() -> None:
        hold = guard.reserve(call, CONFIG)  # type: ignore[arg-type]
        assert not isinstance(hold, str), hold
        guard.settle(hold, 0.00004)

    return once


def off_loop(guard: BudgetGuard) -> Callable[[], object]:
    """The async path: the same pair, each half in ``asyncio.to_thread`` as ``Caller.acall`` does."""
    loop = asyncio.new_event_loop()
    call = ModelCall("flash", (HumanMessage(PROMPT),), worst_case_usd=0.0001)

    async def once() -> None:
        hold = await asyncio.to_thread(guard.reserve, call, CONFIG)  # type: ignore[arg-type]
        await asyncio.to_thread(guard.settle, hold, 0.00004)

    return lambda: loop.run_until_complete(once())


@contextmanager
def own_redis() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                 "--appendonly", "no", "--dir", workdir],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    os.environ.setdefault("GOOGLE_API_KEY", "bench-key-not-used")  # planning only: no call is made

    policy = loads_policy(POLICY, "bench.yaml")
    router = PolicyRouter(policy=policy)
    router.plan(PROMPT, CONFIG)  # warm the tokenizer
    baseline = statistics.median(timed(lambda: router.plan(PROMPT, CONFIG), args.calls))

    with tempfile.TemporaryDirectory() as tmp, own_redis() as started_redis:
        ledgers = {"memory": "memory://bench", "sqlite": f"sqlite:///{Path(tmp) / 'ledger.db'}"}
        redis_url = args.redis_url or started_redis
        if redis_url:
            ledgers["redis"] = redis_url
        print(f"spend overhead: {args.calls} reserve+settle pairs per backend, two budgets each\n"
              f"baseline (PolicyRouter.plan of one request): median {baseline * 1e6:.0f} us\n")
        print(f"{'backend':<16} {'median us':>10} {'p95 us':>8} {'x baseline':>11}")
        for name, url in ledgers.items():
            guard = BudgetGuard(policy.budgets, url, policy="bench")
            for label, fn in ((name, reserve_settle(guard)), (f"{name} (async)", off_loop(guard))):
                timed(fn, 50)  # warm up: open the ledger, load scripts
                samples = sorted(timed(fn, args.calls))
                median = statistics.median(samples)
                p95 = samples[int(len(samples) * 0.95)]
                print(f"{label:<16} {median * 1e6:>10.0f} {p95 * 1e6:>8.0f} {median / baseline:>11.2f}")
            guard.ledger.close()
        if not redis_url:
            print("redis: skipped (no redis-server installed and no --redis-url)")


if __name__ == "__main__":
    main()
