"""The joint search behind ``router calibrate --routing``: cascade designs and, per rung, the
``routing:`` thresholds that skip or trust it, scored together on the outcome table.

Estimates for the tuned prompts are *out-of-fold* (each prompt predicted by an estimator fitted
without it), so the thresholds are chosen on estimates as wrong as they will be on new prompts.
Per rung, ``skip_below``, ``skip_gap`` and ``trust_gap`` are tuned by coordinate descent over
small grids (up to three passes, rungs in order), starting from no routing; every design the plain agreement search
ranks best is tried, plus single-model designs. A design must also never cost more than the
final model alone on any task of the table (``tasks``), when tasks are known.

Example:
    >>> found = joint_search(tune, p_tune, target, final="gpt-4", cheap=cheap, tiers=tiers,
    ...                      tasks=task_of_each_prompt)
    >>> print(found.best.design, [str(t) for t in found.thresholds])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from router.lab.calibrate_search import ranking, staged
from router.lab.cascade_table import (
    Design,
    OutcomeTable,
    Rung,
    RungCache,
    Scored,
    evaluate_many,
    routing_masks,
)
from router.lab.targets import Target
from router.policy.routing_block import Thresholds

SKIP_BELOW: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SKIP_GAPS: tuple[float | None, ...] = (None, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
TRUST_GAPS: tuple[float | None, ...] = (None, 0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15)
GRID: dict[str, tuple[float | None, ...]] = {"skip_below": SKIP_BELOW, "skip_gap": SKIP_GAPS, "trust_gap": TRUST_GAPS}


@dataclass(frozen=True)
class Point:
    """One scored (design, thresholds) of the search."""

    accuracy: float
    cost: float
    design: Design
    thresholds: tuple[Thresholds, ...]


@dataclass
class JointResult:
    best: Scored
    thresholds: tuple[Thresholds, ...]
    met: bool
    evaluated: int
    frontier: list[Point] = field(default_factory=list)  # Pareto-optimal points on the tuned share


def pareto(points: Sequence[Point]) -> list[Point]:
    """Points no other point beats on both cost and accuracy, cheapest first."""
    out: list[Point] = []
    for point in sorted(points, key=lambda p: (p.cost, -p.accuracy)):
        if not out or point.accuracy > out[-1].accuracy:
            out.append(point)
    return out


def task_excess(scored: Scored, table: OutcomeTable, final: str, tasks: np.ndarray | None) -> float:
    """How much more than ``final`` alone the design spends on its worst task (relative; 0 when never)."""
    if tasks is None:
        return 0.0
    ref = table.cost[table.model_index(final)]
    worst = 0.0
    for task in np.unique(tasks):
        cols = tasks == task
        cap = float(ref[cols].sum())
        if cap > 0:
            worst = max(worst, float(scored.cost_each[cols].sum()) / cap - 1.0)
    return worst


def score(table: OutcomeTable, design: Design, p: np.ndarray, trials: Sequence[Sequence[Thresholds]], *,
          cache: RungCache, raise_on_exhausted: bool) -> list[Scored]:
    """``design`` scored with each of ``trials`` (per-rung thresholds), together."""
    masks = [routing_masks(table, design, p, per) if any(str(t) != "no routing" for t in per) else None
             for per in trials]
    return evaluate_many(table, [design] * len(trials), cache=cache, routings=masks,
                         raise_on_exhausted=raise_on_exhausted)


def _key(s: Scored, rank_of: Callable[[Scored], tuple[float, ...]], table: OutcomeTable, final: str,
         tasks: np.ndarray | None) -> tuple[float, ...]:
    return (task_excess(s, table, final, tasks), *rank_of(s))


def tune_thresholds(table: OutcomeTable, design: Design, p: np.ndarray, target: Target, *, final: str,
                    tasks: np.ndarray | None, cache: RungCache, raise_on_exhausted: bool = False,
                    passes: int = 3, seen: list[Point] | None = None,
                    grid: Mapping[str, Sequence[float | None]] = GRID) -> tuple[Scored, tuple[Thresholds, ...], int]:
    """Coordinate descent over each rung's ``skip_below``, ``skip_gap`` and ``trust_gap`` (one
    at a time, the others held); returns the best score, its thresholds and how many
    evaluations it took. Every point scored goes into ``seen``."""
    per = [Thresholds() for _ in design.rungs]
    [best] = score(table, design, p, [per], cache=cache, raise_on_exhausted=raise_on_exhausted)
    rank_of = ranking(target, table)
    best_key = _key(best, rank_of, table, final, tasks)
    count = 1
    for _ in range(passes):
        changed = False
        for k in range(len(design.rungs) - 1):
            for name, values in grid.items():
                # The sweep's trials differ from its start in this one value, whichever of them
                # wins on the way, so they are scored together first (the start's own value,
                # tried again once another has won, scores as the start did).
                start, at_start = getattr(per[k], name), best
                ahead = [[*per[:k], per[k].model_copy(update={name: v}), *per[k + 1:]] for v in values if v != start]
                scored = iter(score(table, design, p, ahead, cache=cache, raise_on_exhausted=raise_on_exhausted))
                for value in values:
                    if getattr(per[k], name) == value:
                        continue
                    trial = [*per[:k], per[k].model_copy(update={name: value}), *per[k + 1:]]
                    s = at_start if value == start else next(scored)
                    count += 1
                    key = _key(s, rank_of, table, final, tasks)
                    if seen is not None and key[0] <= 0:
                        seen.append(Point(s.accuracy, s.cost, design, tuple(trial)))
                    if key < best_key:
                        best, best_key, per, changed = s, key, trial, True
        if not changed:
            break
    return best, tuple(per), count


def joint_search(table: OutcomeTable, p: np.ndarray, target: Target, *, final: str, cheap: Sequence[str],
                 tiers: dict[str, int], tasks: np.ndarray | None = None, max_voters: int = 3, beam: int = 12,
                 keep: int = 60, raise_on_exhausted: bool = False) -> JointResult:
    """Best (design, per-rung thresholds) for ``target`` on ``table`` with estimates ``p``."""
    cache: RungCache = {}
    plain = staged(table, target, final=final, cheap=cheap, tiers=tiers, max_voters=max_voters, beam=beam,
                   raise_on_exhausted=raise_on_exhausted, cache=cache)
    evaluated = len(plain)
    # Routing changes which designs are good (a strong middle rung may be trusted on some
    # prompts), so tune thresholds for the best plain designs under the target *and* for the
    # most accurate ones, each of which routing can make cheaper.
    rank_of = ranking(target, table)
    by_target = sorted(plain, key=rank_of)[:keep]
    by_accuracy = sorted(plain, key=lambda s: (-s.accuracy, s.cost))[:keep]
    singles = [Design((Rung(m), Rung(final))) for m in cheap]
    designs = [d for d in dict.fromkeys([s.design for s in (*by_target, *by_accuracy)] + singles)
               if len({r.model for r in d.rungs}) == len(d.rungs)]  # routing thresholds are per model
    best: tuple[tuple[float, ...], Scored, tuple[Thresholds, ...]] | None = None
    seen = [Point(s.accuracy, s.cost, s.design, tuple(Thresholds() for _ in s.design.rungs)) for s in plain
            if task_excess(s, table, final, tasks) <= 0]
    for design in designs:
        s, per, count = tune_thresholds(table, design, p, target, final=final, tasks=tasks, cache=cache,
                                        raise_on_exhausted=raise_on_exhausted, seen=seen)
        evaluated += count
        key = _key(s, rank_of, table, final, tasks)
        if best is None or key < best[0]:
            best = (key, s, per)
    assert best is not None
    met = best[0][0] <= 0 and all(c.holds(best[1].accuracy, best[1].cost, table) for c in target.constraints)
    return JointResult(best[1], best[2], met, evaluated, pareto(seen))


__all__ = ["GRID", "SKIP_BELOW", "SKIP_GAPS", "TRUST_GAPS", "JointResult", "Point", "joint_search", "pareto",
           "task_excess", "tune_thresholds"]
