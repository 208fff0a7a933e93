"""Per-task routing thresholds (``routing.tasks:``) searched on a shared cascade design.

One cascade serves every task, but each task (a kind of prompt the policy recognises with a
regular expression) gets its own ``skip_below``/``skip_gap``/``trust_gap`` per rung; with
``skip_below: 1`` (always skip) and ``trust_gap: 1`` (always trust) a task can start the cascade
at another rung or stop at it. The search:

1. per task, coordinate descent (:func:`router.lab.joint.tune_thresholds`) on that task's prompts
   toward several accuracy targets; every point it scores is kept and reduced to the task's
   Pareto frontier (cost, accuracy);
2. one frontier point per task is chosen so that the mix costs least while its accuracy meets
   the target (plus ``margin``), no task costing more than the final model alone on it.

Estimates are out-of-fold, as in :mod:`router.lab.joint`.

Example:
    >>> found = task_search(tune, p_oof, tasks, target, designs=[design], final="gpt-4")
    >>> {t: [str(r) for r in rules] for t, rules in found.rules.items()}
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from router.lab.cascade_table import (
    CalibrationError,
    Design,
    OutcomeTable,
    RoutingMasks,
    RungCache,
    Scored,
    evaluate,
    routing_masks,
)
from router.lab.joint import Point, pareto
from router.lab.targets import Target
from router.policy.routing_block import Thresholds

# How the router recognises the RouterBench tasks in a prompt (first match wins; checked on the
# data by :func:`task_patterns` before a policy uses them).
TASK_PATTERNS: dict[str, str] = {
    "arc-challenge": r'from "A" or "B" or "C" or "D"',
    "winogrande": r'from "A" or "B" without',
    "mbpp": r"(?i)\b(function|python|lists?|arrays?|strings?|matrix)\b",  # after the choice formats
}

# Safety margin on the pooled accuracy (out-of-fold): the per-task search has more freedom than
# the joint one, so it is held half a point above the target.
MARGIN = 0.005

# "Always skip" and "always trust" let a task leave a rung out or stop at it.
TASK_GRID: dict[str, tuple[float | None, ...]] = {
    "skip_below": (0.0, 0.5, 0.6, 0.7, 0.8, 1.0), "skip_gap": (None, 0.1, 0.2, 0.3),
    "trust_gap": (None, 0.0, 0.05, 0.1, 0.2, 1.0)}


@dataclass(frozen=True)
class TaskResult:
    """The chosen design, each task's thresholds (per rung), and the tuned share's figures."""

    design: Design
    rules: Mapping[str, tuple[Thresholds, ...]]
    accuracy: float
    cost: float
    met: bool
    evaluated: int


def task_patterns(prompts: Sequence[str], tasks: np.ndarray) -> dict[str, str]:
    """The :data:`TASK_PATTERNS` of ``tasks``' names, in matching order, after checking that the
    first matching pattern names every prompt's own task; :class:`CalibrationError` otherwise."""
    names = [t for t in TASK_PATTERNS if t in set(tasks.tolist())]
    unknown = sorted(set(tasks.tolist()) - set(names))
    if unknown:
        raise CalibrationError(f"no prompt pattern for task(s) {', '.join(unknown)}: known {', '.join(TASK_PATTERNS)}")
    compiled = [(t, re.compile(TASK_PATTERNS[t])) for t in names]
    wrong = [(task, got) for prompt, task in zip(prompts, tasks.tolist(), strict=True)
             if (got := next((t for t, rx in compiled if rx.search(prompt)), None)) != task]
    if wrong:
        task, got = wrong[0]
        raise CalibrationError(f"task patterns misclassify {len(wrong)} prompt(s), e.g. one of {task} as {got}")
    return {t: TASK_PATTERNS[t] for t in names}


def task_masks(table: OutcomeTable, design: Design, p: np.ndarray, tasks: np.ndarray,
               rules: Mapping[str, Sequence[Thresholds]]) -> RoutingMasks:
    """Routing masks with each prompt's task's thresholds (a task without rules: no routing)."""
    skip = np.zeros((len(design.rungs), table.n), bool)
    trust = np.zeros_like(skip)
    for task, per_rung in rules.items():
        cols = tasks == task
        masks = routing_masks(table, design, p[:, cols], per_rung)
        skip[:, cols], trust[:, cols] = masks.skip, masks.trust
    return RoutingMasks(skip, trust)


def rung_options() -> list[Thresholds]:
    """Every combination of :data:`TASK_GRID`'s values (one rung's choices)."""
    names = list(TASK_GRID)
    return [Thresholds(**dict(zip(names, values, strict=True))) for values in itertools.product(*TASK_GRID.values())
            if not (values[0] == 1.0 and (values[1] is not None or values[2] is not None))]  # skipped anyway


def _frontier(table: OutcomeTable, design: Design, p: np.ndarray, final: str) -> tuple[list[Point], int]:
    """Every threshold combination of the guarded rungs scored on one task's prompts; the
    Pareto frontier of those costing no more than ``final`` alone."""
    cache: RungCache = {}
    options = rung_options()
    cap = float(table.cost[table.model_index(final)].sum())
    seen = []
    count = 0
    for per in itertools.product(options, repeat=len(design.rungs) - 1):
        rules = (*per, Thresholds())
        s = evaluate(table, design, cache=cache, routing=routing_masks(table, design, p, rules))
        count += 1
        if s.cost <= cap:
            seen.append(Point(s.accuracy, s.cost, design, rules))
    return pareto(seen), count


def _combine(fronts: Mapping[str, list[Point]], sizes: Mapping[str, int],
             need: float) -> tuple[dict[str, Point], float, float] | None:
    """Cheapest choice of one point per task whose pooled accuracy is at least ``need``."""
    names = list(fronts)
    total = sum(sizes.values())
    best = None
    for pick in itertools.product(*(fronts[t] for t in names)):
        accuracy = sum(pt.accuracy * sizes[t] for pt, t in zip(pick, names, strict=True)) / total
        cost = sum(pt.cost for pt in pick)
        if accuracy >= need and (best is None or cost < best[2]):
            best = (dict(zip(names, pick, strict=True)), accuracy, cost)
    return best


def task_search(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, target: Target, *,
                designs: Sequence[Design], final: str, margin: float = MARGIN) -> TaskResult:
    """Best design and per-task thresholds for an ``accuracy>=R*MODEL`` ``target``; the pooled
    accuracy must reach ``R + margin`` times the model's on these (out-of-fold) estimates."""
    accuracy = next(c for c in target.constraints if c.metric == "accuracy")
    need = accuracy.bound(table) * (1 + margin / accuracy.value)
    sizes = {str(t): int((tasks == t).sum()) for t in np.unique(tasks)}
    best: TaskResult | None = None
    evaluated = 0
    for design in designs:
        fronts = {}
        for task in sizes:
            cols = np.flatnonzero(tasks == task)
            fronts[task], n = _frontier(table.take(cols), design, p[:, cols], final)
            evaluated += n
        chosen = _combine(fronts, sizes, need)
        if chosen is not None and (best is None or chosen[2] < best.cost):
            picks, acc, cost = chosen
            best = TaskResult(design, {t: pt.thresholds for t, pt in picks.items()}, acc, cost, True, evaluated)
    if best is None:
        plain = evaluate(table, designs[0])
        return TaskResult(designs[0], {}, plain.accuracy, plain.cost, False, evaluated)
    return TaskResult(best.design, best.rules, best.accuracy, best.cost, True, evaluated)


def scored(table: OutcomeTable, found: TaskResult, p: np.ndarray, tasks: np.ndarray) -> Scored:
    """``found`` scored on ``table`` with estimates ``p``."""
    return evaluate(table, found.design, routing=task_masks(table, found.design, p, tasks, found.rules))


__all__ = ["MARGIN", "TASK_GRID", "TASK_PATTERNS", "rung_options", "task_patterns", "TaskResult", "scored", "task_masks", "task_search"]
