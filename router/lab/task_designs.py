"""Per-task cascade designs (``routing.tasks[*]`` with its own ``cascade:``/``confidence:``).

Each task (a kind of prompt the policy recognises by a regular expression) gets its own design:
first rung, agreement models guarding each rung, and per-rung ``skip``/``trust`` thresholds.
The search, on the tuned share's *out-of-fold* estimates:

1. per task, the plain agreement search (:func:`router.lab.calibrate_search.staged`) on that
   task's prompts; the ``designs`` best for each of several accuracy levels (:data:`LEVELS` x
   the reference), every single cheap model before the final one, and the final model alone;
2. per design, routing thresholds: every combination of :func:`router.lab.task_routing.rung_options`
   for a two-rung design, coordinate descent toward each level for longer ones; every point
   costing at most :data:`COST_CAP` of the final model alone on the task (or that model alone) is
   kept, reduced to the task's Pareto frontier (cost, accuracy);
3. one frontier point per task, the cheapest mix whose pooled accuracy reaches the target plus a
   ``margin`` (x the reference's accuracy); with each prompt's share (``shares``), some tasks may
   split their prompts between two points (:mod:`router.lab.task_choice`).

The margin and how many designs step 1 keeps per level are chosen by ``folds``-fold
cross-validation *inside the tuned share* (:func:`cv_margin`): steps 1-3 on four fifths, the pick
scored on the last fifth, for every margin of :data:`MARGINS` and every design count of
:func:`design_counts`; the cheapest pair whose cross-validated accuracy meets the target with no
task costing more than the final model alone is kept (the most accurate when none does). More
designs fit the tuned share better and generalise worse; the margin pays for the rest of the
selection optimism. No held-out prompt is used.

Example:
    >>> found = search_task_designs(tune, p_oof, tasks, target, final="gpt-4", cheap=cheap, tiers=tiers)
    >>> {t: str(pt.design) for t, pt in found.picks.items()}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from router.checks.builtin import CheckSpec
from router.lab.calibrate_search import ranking, staged
from router.lab.cascade_table import (
    Design,
    OutcomeTable,
    Rung,
    RungCache,
    evaluate,
    evaluate_many,
    is_design_check,
    routing_masks,
)
from router.lab.joint import Point, pareto, tune_thresholds
from router.lab.targets import Constraint, Target
from router.lab.task_choice import Choice, choose, choose_split, score_picks, scored_whole
from router.lab.task_routing import rung_options
from router.policy.routing_block import Thresholds

LEVELS: tuple[float, ...] = (0.85, 0.9, 0.95, 0.97, 1.0)
# A task's point may cost at most this share of the final model alone on the task's tuned prompts
# (the final model alone, exactly 100%, is always allowed): a design that escalates most prompts
# after paying for cheap rungs and their checks is close to gpt-4's cost on the tuned share and
# can exceed it on new prompts; the goal is never to cost more than the final model on a task.
COST_CAP: float = 0.9
# With gates (calibrate --gates), answer_in gates are tried on the first rung(s) of each candidate
# (router.checks.answer_in), for every answer a model gives on at least this share of a task's prompts.
GATED_RUNGS: int = 1
GATE_SHARE: float = 0.1
MARGINS: tuple[float, ...] = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02)


@dataclass(frozen=True)
class CVRow:
    """One (design count, margin)'s cross-validated figures on the tuned share (ratios to the reference)."""

    designs: int
    margin: float
    accuracy_ratio: float
    cost_ratio: float
    worst_task_cost_ratio: float
    met: bool

    def __str__(self) -> str:
        return (f"{self.designs} designs, margin {self.margin:g}: {self.accuracy_ratio:.3f}x, {self.cost_ratio:.1%} "
                f"(worst task {self.worst_task_cost_ratio:.1%}){'' if self.met else ' (not met)'}")


def design_counts(most: int) -> tuple[int, ...]:
    """The design counts cross-validation compares: 1, about a quarter and half of ``most``, ``most``."""
    return tuple(sorted({1, max(1, most // 4), max(1, most // 2), max(1, most)}))


@dataclass
class TaskDesigns:
    """The chosen point (design, thresholds, tuned-share figures) of each task."""

    picks: dict[str, Point]
    margin: float
    designs: int
    accuracy: float
    cost: float
    met: bool
    evaluated: int
    cv: list[CVRow] = field(default_factory=list)
    fronts: dict[str, list[Point]] = field(default_factory=dict)
    splits: dict[str, tuple[Point, float]] = field(default_factory=dict)  # see router.lab.task_choice.Choice


def _accuracy_constraint(target: Target) -> Constraint:
    found = next((c for c in target.constraints if c.metric == "accuracy" and c.op == ">="), None)
    if found is None:
        from router.lab.cascade_table import CalibrationError

        raise CalibrationError("per-task designs need an accuracy>=... target")
    return found


def _level(target: Target, ratio: float) -> Target:
    c = _accuracy_constraint(target)
    return Target((Constraint("accuracy", ">=", ratio, c.relative_to),))


def task_candidates(sub: OutcomeTable, target: Target, *, final: str, cheap: Sequence[str],
                    tiers: dict[str, int], max_voters: int, designs: int, cache: RungCache,
                    gates: bool = False) -> tuple[list[Design], int]:
    """Step 1 of the module doc on one task's table: candidate designs, and how many were scored.
    ``gates``: each candidate also with an ``answer_in`` gate on its first rung(s), for every
    option of :func:`gate_options`."""
    plain = staged(sub, target, final=final, cheap=cheap, tiers=tiers, max_voters=max_voters, cache=cache)
    picked: list[Design] = [Design((Rung(final),))]
    for ratio in LEVELS:
        level = _level(target, ratio)
        picked += [s.design for s in sorted(plain, key=ranking(level, sub))[:designs]]
    picked += [Design((Rung(m), Rung(final))) for m in cheap]
    unique = [d for d in dict.fromkeys(picked) if len({r.model for r in d.rungs}) == len(d.rungs)]
    gated = [Design((*d.rungs[:k], replace(rung, accept=values), *d.rungs[k + 1:]))
             for d in unique for k, rung in enumerate(d.rungs[:GATED_RUNGS]) if gates and rung.model != final
             for values in gate_options(sub, rung.model)]
    return unique + gated, len(plain)


def gate_options(sub: OutcomeTable, model: str) -> list[tuple[str, ...]]:
    """The ``answer_in`` gates worth trying on ``model``'s rung: each answer it gives on at
    least :data:`GATE_SHARE` of the prompts alone and, with three or more such answers, all but
    each one (none when its answers were not extracted or it always gives the same one)."""
    if sub.value is None:
        return []
    m = sub.model_index(model)
    counts = Counter(v for v in sub.value[m] if v is not None)
    common = sorted(v for v, k in counts.items() if k >= GATE_SHARE * sub.n)
    if len(common) < 2:
        return []
    singles = [(v,) for v in common]
    rest = [tuple(x for x in common if x != v) for v in common] if len(common) >= 3 else []
    return singles + rest


def task_front(sub: OutcomeTable, p: np.ndarray, target: Target, *, final: str, cheap: Sequence[str],
               tiers: dict[str, int], max_voters: int = 3, designs: int = 4,
               gates: bool = False) -> tuple[list[Point], int]:
    """Steps 1-2 of the module doc: one task's Pareto frontier of (design, thresholds) points."""
    cache: RungCache = {}
    candidates, evaluated = task_candidates(sub, target, final=final, cheap=cheap, tiers=tiers,
                                            max_voters=max_voters, designs=designs, cache=cache, gates=gates)
    cap = float(sub.cost[sub.model_index(final)].sum())
    seen: list[Point] = []
    options = rung_options()
    for design in candidates:
        if len(design.rungs) == 1:
            s = evaluate(sub, design, cache=cache)
            seen.append(Point(s.accuracy, s.cost, design, (Thresholds(),)))
            evaluated += 1
        elif len(design.rungs) == 2:
            rules = [(option, Thresholds()) for option in options]
            scored = evaluate_many(sub, [design] * len(rules), cache=cache,
                                   routings=[routing_masks(sub, design, p, r) for r in rules])
            seen += [Point(s.accuracy, s.cost, design, r) for s, r in zip(scored, rules, strict=True)]
            evaluated += len(options)
        else:
            for ratio in LEVELS:
                _, _, count = tune_thresholds(sub, design, p, _level(target, ratio), final=final, tasks=None,
                                              cache=cache, seen=seen)
                evaluated += count
    alone = Design((Rung(final),))
    return pareto([pt for pt in seen if pt.cost <= COST_CAP * cap + 1e-12 or pt.design == alone]), evaluated


def task_fronts(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, target: Target, *, final: str,
                cheap: Sequence[str], tiers: dict[str, int], max_voters: int = 3,
                designs: int = 4, gates: bool = False) -> tuple[dict[str, list[Point]], dict[str, int], int]:
    """Every task's frontier, its prompt count, and how many points were scored."""
    fronts, sizes, evaluated = {}, {}, 0
    for task in sorted(set(tasks.tolist())):
        cols = np.flatnonzero(tasks == task)
        fronts[task], n = task_front(table.take(cols), p[:, cols], target, final=final, cheap=cheap, tiers=tiers,
                                     max_voters=max_voters, designs=designs, gates=gates)
        sizes[task] = len(cols)
        evaluated += n
    return fronts, sizes, evaluated


def _need(table: OutcomeTable, target: Target, margin: float) -> float:
    c = _accuracy_constraint(target)
    return c.bound(table) * (1 + margin / c.value)


def _choose(fronts: Mapping[str, Sequence[Point]], sizes: Mapping[str, int], need: float, split: bool) -> Choice | None:
    if split:
        return choose_split(fronts, sizes, need)
    chosen = choose(fronts, sizes, need)
    return Choice(*chosen) if chosen is not None else None


def cv_margin(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, target: Target, *, final: str,
              cheap: Sequence[str], tiers: dict[str, int], max_voters: int = 3, designs: int = 4,
              folds: int = 5, seed: int = 0, margins: Sequence[float] = MARGINS,
              gates: bool = False, shares: np.ndarray | None = None) -> tuple[int, float, list[CVRow], int]:
    """The design count and margin chosen by ``folds``-fold cross-validation on ``table`` (the
    tuned share), the figures of every pair, and how many points were scored (see the module doc).
    ``shares``: each prompt's :func:`router.policy.routing_block.prompt_share`, to let a task split
    its prompts between two designs (:func:`router.lab.task_choice.choose_split`); None: no splits."""
    c = _accuracy_constraint(target)
    ref = table.model_index(c.relative_to or final)
    top = table.model_index(final)
    order = np.random.default_rng(seed).permutation(table.n)
    names = sorted(set(tasks.tolist()))
    grid = [(k, m) for k in design_counts(designs) for m in margins]
    hits = dict.fromkeys(grid, 0.0)
    spent = {g: dict.fromkeys(names, 0.0) for g in grid}
    failed: set[tuple[int, float]] = set()
    evaluated = 0
    for k in range(folds):
        test = np.sort(order[k::folds])
        train = np.setdiff1d(np.arange(table.n), test)
        part, held = table.take(train), table.take(test)
        for count in design_counts(designs):
            fronts, sizes, n = task_fronts(part, p[:, train], tasks[train], target, final=final, cheap=cheap,
                                           tiers=tiers, max_voters=max_voters, designs=count, gates=gates)
            evaluated += n
            for margin in margins:
                chosen = _choose(fronts, sizes, _need(part, target, margin), shares is not None)
                if chosen is None:
                    failed.add((count, margin))
                    continue
                right, cost, _ = score_picks(held, p[:, test], tasks[test], chosen.picks, chosen.splits,
                                             shares[test] if shares is not None else None)
                hits[count, margin] += float(right.sum())
                for t in names:
                    spent[count, margin][t] += float(cost[tasks[test] == t].sum())
    ref_acc = float(table.correct[ref].mean())
    ref_cost = float(table.cost[ref].sum())
    caps = {t: float(table.cost[top, tasks == t].sum()) for t in names}
    rows = []
    for count, margin in grid:
        if (count, margin) in failed:
            continue
        acc_ratio = hits[count, margin] / table.n / ref_acc if ref_acc else 0.0
        worst = max((spent[count, margin][t] / caps[t] for t in names if caps[t] > 0), default=0.0)
        cost = sum(spent[count, margin].values())
        met = acc_ratio >= c.value - 1e-12 and worst <= 1.0 + 1e-12
        rows.append(CVRow(count, margin, acc_ratio, cost / ref_cost if ref_cost else 0.0, worst, met))
    if not rows:
        return designs, max(margins), rows, evaluated
    meeting = [r for r in rows if r.met]
    pick = (min(meeting, key=lambda r: (r.cost_ratio, r.margin, r.designs)) if meeting
            else max(rows, key=lambda r: (r.accuracy_ratio, -r.cost_ratio)))
    return pick.designs, pick.margin, rows, evaluated


def search_task_designs(table: OutcomeTable, p: np.ndarray, tasks: np.ndarray, target: Target, *, final: str,
                        cheap: Sequence[str], tiers: dict[str, int], max_voters: int = 3, designs: int = 4,
                        folds: int = 5, seed: int = 0, margins: Sequence[float] = MARGINS,
                        gates: bool = False, shares: np.ndarray | None = None) -> TaskDesigns:
    """The design count and margin by cross-validation, then every task's pick on the whole of
    ``table`` (``shares``: see :func:`cv_margin`)."""
    count, margin, rows, evaluated = cv_margin(table, p, tasks, target, final=final, cheap=cheap, tiers=tiers,
                                        max_voters=max_voters, designs=designs, folds=folds, seed=seed,
                                        margins=margins, gates=gates, shares=shares)
    fronts, sizes, n = task_fronts(table, p, tasks, target, final=final, cheap=cheap, tiers=tiers,
                                   max_voters=max_voters, designs=count, gates=gates)
    evaluated += n
    chosen = _choose(fronts, sizes, _need(table, target, margin), shares is not None)
    if chosen is None:
        return TaskDesigns({}, margin, count, 0.0, 0.0, False, evaluated, rows, fronts)
    return TaskDesigns(chosen.picks, margin, count, chosen.accuracy, chosen.cost, True, evaluated, rows, fronts,
                       chosen.splits)


def design_checks(design: Design, base_checks: Sequence[CheckSpec], extract: str) -> list[dict[str, Any]]:
    """The ``confidence:`` entries of ``design``: the base checks (those that are no part of a
    design), then one ``answer_in`` gate per gated rung, then one agreement check per guarded
    rung, each ``apply_to`` its rung (the order :func:`router.lab.cascade_table.run_rung` mirrors)."""
    checks: list[dict[str, Any]] = [{"check": c.check} | c.model_dump(exclude_defaults=True)
                                    for c in base_checks if not is_design_check(c)]
    checks += [{"check": "answer_in", "values": list(r.accept), "extract": extract, "apply_to": [r.model]}
               for r in design.rungs if r.accept]
    for rung in design.rungs:
        if rung.voters:
            entry: dict[str, Any] = {"check": "agreement", "models": list(rung.voters), "extract": extract}
            if rung.min_agree is not None:
                entry["min_agree"] = rung.min_agree
            checks.append(entry | {"apply_to": [rung.model]})
    return checks


__all__ = ["COST_CAP", "GATED_RUNGS", "GATE_SHARE", "LEVELS", "MARGINS", "CVRow", "TaskDesigns", "choose", "cv_margin",
           "design_checks", "design_counts", "gate_options", "score_picks", "scored_whole", "search_task_designs",
           "task_candidates", "task_front", "task_fronts"]
