"""How much of ``router calibrate``'s bound is hindsight: its trees, fitted on the tuned half of the
RouterBench train files, run as fitted on the held-out half.

For each split seed, tree depth (cheap models asked per prompt) and accuracy target (x gpt-4's on
the tuned half), the bound's trees (router.lab.bound: one per task, the mix at the target) are
fitted on the tuned half and replayed on the held-out one; printed: accuracy and cost as ratios to
gpt-4 alone on the same prompts, tuned and held-out. The shipped policy's search, by comparison,
gets 0.968x at 32.7% on seed 0's held-out half (0.968x at 39.3%, 0.990x at 51.3% on seeds 1, 2).
Needs the train files beside the repo (../shared/data/routerbench).

    python bench/bound_trees.py [--seeds 0 1 2] [--depths 2 3] [--targets 0.97 0.98] [--values]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from router import load_policy
from router.lab.bound import answer_bound
from router.lab.calibrate import build_table, combine, split
from router.lab.cascade_table import is_design_check

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT.parent / "shared" / "data" / "routerbench"
FILES = [FULL / "arc_challenge_train.csv", FULL / "winograde_train.csv", FULL / "mbpp_train.csv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.97, 0.975, 0.98])
    parser.add_argument("--values", action="store_true", help="trees that also see which answer each model gave")
    args = parser.parse_args()
    policy = load_policy(ROOT / "policies" / "routed-routerbench.yaml")
    data = combine(FILES)
    table = build_table(policy, data.records, [c for c in policy.policy.confidence if not is_design_check(c)], "choice")
    tasks = np.array([r.task for r in data.records])
    final = table.model_index("gpt-4")
    print(f"{'seed':>4} {'depth':>5} {'target':>6}   {'tuned (bound)':>16}   {'held-out (replayed)':>20}")
    for seed in args.seeds:
        tune_cols, held_cols = split(data, 0.5, seed)
        tune, held = table.take(tune_cols), table.take(held_cols)
        cheap = [m for m in table.models if m != "gpt-4"
                 and tune.cost[tune.model_index(m)].mean() < tune.cost[final].mean()]
        for depth in args.depths:
            for target in args.targets:
                bound = answer_bound(tune, final="gpt-4", cheap=cheap, needed=target * tune.correct[final].sum(),
                                     tasks=tasks[tune_cols], depth=depth, values=args.values,
                                     replay=(held, tasks[held_cols]))
                assert bound.replayed is not None
                print(f"{seed:>4} {depth:>5} {target:>6.3f}   {bound.accuracy_ratio:>7.3f}x {bound.cost_ratio:>7.1%}   "
                      f"{bound.replayed.accuracy_ratio:>11.3f}x {bound.replayed.cost_ratio:>7.1%}", flush=True)


if __name__ == "__main__":
    main()
