"""One design per task: the cheapest choice whose pooled accuracy meets a target, and its scores.

:func:`choose` picks one frontier point per task. :func:`choose_split` also lets some tasks split
their prompts between two points, the same share for each such task (``routing.tasks[i].share``,
by :func:`router.policy.routing_block.prompt_share`): a Lagrangian search over a multiplier ``lam``
(each task's point maximising ``correct - lam * cost``), bisected to the target and the two
choices around it mixed, as :mod:`router.lab.bound` mixes its trees. A mix reaches the target
exactly where single points jump past it (on RouterBench, Winogrande's frontier goes from gpt-4
alone, 100% of its cost, to designs costing under 75%). Its accuracy and cost are expectations
over the split; :func:`score_picks` scores the split the policy actually makes.

Example:
    >>> chosen = choose_split(fronts, sizes, need=0.97 * 0.88)
    >>> {t: (str(pt.design), share) for t, (pt, share) in chosen.splits.items()}
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from router.lab.cascade_table import Design, OutcomeTable, Scored, evaluate, routing_masks
from router.lab.joint import Point

_BISECTIONS = 50


@dataclass(frozen=True)
class Choice:
    """One point per task (``picks``) and, for the tasks in ``splits``, a dearer point with the
    share of the task's prompts sent to it (the rest go to ``picks``); expected pooled figures."""

    picks: dict[str, Point]
    accuracy: float
    cost: float
    splits: dict[str, tuple[Point, float]] = field(default_factory=dict)


def choose(fronts: Mapping[str, Sequence[Point]], sizes: Mapping[str, int],
           need: float) -> tuple[dict[str, Point], float, float] | None:
    """The cheapest choice of one point per task whose pooled accuracy is at least
    ``need`` (the last task by bisection on its frontier, cheapest first and rising in accuracy)."""
    names = list(fronts)
    total = sum(sizes.values())
    if not names or any(not fronts[t] for t in names):
        return None
    last = names[-1]
    tail = list(fronts[last])
    tail_acc = [pt.accuracy * sizes[last] for pt in tail]
    best: tuple[dict[str, Point], float, float] | None = None

    def walk(i: int, chosen: list[Point], hits: float, cost: float) -> None:
        nonlocal best
        if best is not None and cost >= best[2]:
            return
        if i == len(names) - 1:
            k = bisect.bisect_left(tail_acc, need * total - hits - 1e-9)
            if k < len(tail):
                pick = [*chosen, tail[k]]
                cost_k = cost + tail[k].cost
                if best is None or cost_k < best[2]:
                    best = (dict(zip(names, pick, strict=True)), (hits + tail_acc[k]) / total, cost_k)
            return
        for pt in fronts[names[i]]:
            walk(i + 1, [*chosen, pt], hits + pt.accuracy * sizes[names[i]], cost + pt.cost)

    walk(0, [], 0.0, 0.0)
    return best


def choose_split(fronts: Mapping[str, Sequence[Point]], sizes: Mapping[str, int], need: float) -> Choice | None:
    """The cheaper of :func:`choose`'s pick and the Lagrangian mix of the module doc (its share
    rounded up to a hundredth, so the expected accuracy stays at or above ``need``)."""
    single = choose(fronts, sizes, need)
    if single is None:
        return None
    best = Choice(single[0], single[1], single[2])
    total = sum(sizes.values())
    wanted = need * total

    def at(lam: float) -> dict[str, Point]:
        return {t: max(pts, key=lambda p: (p.accuracy * sizes[t] - lam * p.cost, -p.cost)) for t, pts in fronts.items()}

    def hits(picks: Mapping[str, Point]) -> float:
        return sum(p.accuracy * sizes[t] for t, p in picks.items())

    lo, hi = 0.0, 1.0
    meets, short = at(lo), at(hi)
    while hits(short) >= wanted and hi < 1e12:
        lo, hi, meets = hi, hi * 4, short
        short = at(hi)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        value = at(mid)
        if hits(value) >= wanted:
            lo, meets = mid, value
        else:
            hi, short = mid, value
    gained = hits(meets) - hits(short)
    if gained <= 0 or hits(short) >= wanted:
        return best
    share = math.ceil((wanted - hits(short)) / gained * 100 - 1e-9) / 100
    if share >= 1:
        return best
    cost = sum(p.cost for p in short.values())
    extra = sum(p.cost for p in meets.values()) - cost
    if cost + share * extra >= best.cost:
        return best
    splits = {t: (meets[t], share) for t in fronts if meets[t] != short[t]}
    return Choice(dict(short), (hits(short) + share * gained) / total, cost + share * extra, splits)


def score_picks(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, picks: Mapping[str, Point],
                splits: Mapping[str, tuple[Point, float]] | None = None,
                shares: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Each prompt's correctness and cost under its task's pick (the table's order), and how
    many prompts each model accepted. Every task of ``tasks`` must have a pick. ``splits``: the
    tasks whose prompts with ``shares`` (each prompt's :func:`prompt_share`) below the split's
    share run the split's point instead."""
    right, spent = np.zeros(table.n, bool), np.zeros(table.n)
    accepted: dict[str, int] = {}
    for task, pt in picks.items():
        cols = np.flatnonzero(tasks == task)
        parts = [(cols, pt)]
        if splits and task in splits:
            if shares is None:
                raise ValueError("scoring a split task needs each prompt's share")
            dearer, share = splits[task]
            inside = shares[cols] < share
            parts = [(cols[inside], dearer), (cols[~inside], pt)]
        for part, point in parts:
            if not len(part):
                continue
            sub = table.take(part)
            s = evaluate(sub, point.design, routing=routing_masks(sub, point.design, p[:, part], point.thresholds))
            right[part], spent[part] = s.correct, s.cost_each
            for rung, count in zip(point.design.rungs, s.accepted, strict=True):
                accepted[rung.model] = accepted.get(rung.model, 0) + count
    return right, spent, accepted


def scored_whole(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, picks: Mapping[str, Point],
                 fallback: Design, splits: Mapping[str, tuple[Point, float]] | None = None,
                 shares: np.ndarray | None = None) -> Scored:
    """``picks`` on ``table`` as one :class:`Scored` (``design``: ``fallback``, for display)."""
    right, spent, accepted = score_picks(table, p, tasks, picks, splits, shares)
    return Scored(fallback, float(right.mean()) if table.n else 0.0, float(spent.sum()), right, spent,
                  tuple(accepted.get(r.model, 0) for r in fallback.rungs))


__all__ = ["Choice", "choose", "choose_split", "score_picks", "scored_whole"]
