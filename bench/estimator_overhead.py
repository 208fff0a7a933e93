"""What a policy's ``routing:`` block adds per request, against ``PolicyRouter.plan``.

One process, two routers on the same policy (``policies/routed-routerbench.yaml`` and its
estimator): one with the routing block, one with it removed. For every prompt of the shipped
RouterBench sample (three tasks, 260 prompts; recorded models, so no model is called), both
plan the request, interleaved, several rounds; the estimator is loaded before timing (it is
loaded once per process, lazily). Reported: the median ``plan`` time of each, the median of
the per-request difference (the estimator's overhead: featurise, two sparse dot products,
decide), and the ratio of the medians. The goal (issue 11): at most 1 ms median overhead.

    python bench/estimator_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from router import PolicyRouter, load_policy
from router.lab.calibrate import combine
from router.lab.simulate import bind_dataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "routerbench-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--policy", default=str(ROOT / "policies" / "routed-routerbench.yaml"))
    args = parser.parse_args()
    data = combine([SAMPLE / "arc_challenge.jsonl", SAMPLE / "winogrande.jsonl", SAMPLE / "mbpp.jsonl"])
    policy = bind_dataset(load_policy(args.policy), data)
    routed = PolicyRouter(policy=policy)
    plain = PolicyRouter(policy=policy.model_copy(update={"routing": None}))
    prompts = [r.prompt for r in data.records]
    for prompt in prompts[:20]:  # warm: the estimator file, token-count caches
        routed.plan(prompt), plain.plan(prompt)
    with_routing, without, overhead = [], [], []
    for _ in range(args.rounds):
        for prompt in prompts:
            start = time.perf_counter()
            plain.plan(prompt)
            middle = time.perf_counter()
            routed.plan(prompt)
            end = time.perf_counter()
            without.append(middle - start)
            with_routing.append(end - middle)
            overhead.append((end - middle) - (middle - start))
    ms = 1000
    print(f"{len(prompts)} prompts x {args.rounds} rounds, policy {policy.name}, "
          f"estimator {routed.plan(prompts[0]).estimator}")
    def p95(xs: list[float]) -> float:
        return sorted(xs)[int(0.95 * len(xs))] * ms

    print(f"plan without routing: median {statistics.median(without) * ms:.3f} ms, p95 {p95(without):.3f} ms")
    print(f"plan with routing:    median {statistics.median(with_routing) * ms:.3f} ms, p95 {p95(with_routing):.3f} ms")
    print(f"overhead per request: median {statistics.median(overhead) * ms:.3f} ms, "
          f"p95 {p95(overhead):.3f} ms; "
          f"ratio of medians {statistics.median(with_routing) / statistics.median(without):.2f}")


if __name__ == "__main__":
    main()
