"""A separate OS process for the spend tests: a PolicyRouter from a policy file, driven over
stdin/stdout so the parent test can line processes up and kill one mid-call.

    python _worker.py POLICY_FILE many N C # ready → (go) → N ainvoke, C at a time → {"admitted", "refused"}
    python _worker.py POLICY_FILE hang     # ready → (go) → one call, "settled" → (go) → a call that hangs
"""

from __future__ import annotations

import asyncio
import json
import sys

from router import PolicyRouter, RoutingError


def say(line: str) -> None:
    print(line, flush=True)


def wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go' on stdin")


async def many(router: PolicyRouter, n: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)  # waves, so the two processes' calls interleave

    async def one(i: int) -> object:
        async with gate:
            return await router.ainvoke(f"Question {i}")

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    unexpected = [repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, RoutingError)]
    refused = sum(isinstance(r, RoutingError) for r in results)
    say(json.dumps({"admitted": n - refused - len(unexpected), "refused": refused, "unexpected": unexpected}))


def main() -> None:
    policy_file, mode = sys.argv[1], sys.argv[2]
    router = PolicyRouter.from_yaml(policy_file)
    router.catalog.chat_model("flash")  # import and build the client before the race starts
    say("ready")
    wait_for_go()
    if mode == "many":
        asyncio.run(many(router, int(sys.argv[3]), int(sys.argv[4])))
        return
    router.invoke("First question")
    say("settled")
    wait_for_go()
    router.invoke("This call hangs until the process is killed")
    say("unreachable")


if __name__ == "__main__":
    main()
