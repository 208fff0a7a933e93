"""Calibrate a cascade on recorded outcomes: pick rungs and agreement checks that meet a target.

Running the router for every candidate setting would take hours, so calibration works on a
table: each model's extracted answer, correctness, cost and base-check verdicts per prompt,
computed once with the same extractor and check code the router runs. A candidate cascade
(rungs, and per rung the models to consult and how many must agree) is scored on that table
with array arithmetic that mirrors :func:`router.routing.cascade.run_cascade` step by step (checks in
order, first failure stops, consulting stops as soon as the verdict is certain, the best
attempt when all fail). The chosen policy is then replayed by the real router
(:func:`router.lab.simulate.simulate`); both figures are reported and must agree.

Targets (``accuracy>=0.97*gpt-4-1106-preview,cost<=0.4*gpt-4-1106-preview``) are described in
:mod:`router.lab.targets`.

``holdout`` guards against overfitting: a seeded share of the prompts is kept out of the search
and the chosen policy is measured on it too. With an accuracy target the report (and the written
policy's header) also gives :mod:`router.lab.bound`'s figures: the cheapest that *any* cascade
deciding from the kind of prompt and which of the answers it bought agree could reach the target
on the tuned prompts, chosen in hindsight, and the same for cascades that also look at which
answer each model gave (``answer_in`` gates). A target cheaper than the first is out of reach of
agreement checks on these models.

Example:
    >>> report = calibrate("policies/cascade-routerbench.yaml",
    ...                    ["arc_challenge_train.csv", "winograde_train.csv"],
    ...                    "accuracy>=0.97*gpt-4-1106-preview,cost<=0.4*gpt-4-1106-preview",
    ...                    out="my-policy.yaml")
    >>> print(report)
"""

from __future__ import annotations

import datetime
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from router.checks.builtin import CheckSpec
from router.lab.bound import Bound, answer_bound
from router.lab.calibrate_search import SearchResult, candidate_designs, rank, search
from router.lab.cascade_table import (
    CalibrationError,
    Design,
    OutcomeTable,
    Rung,
    Scored,
    build_table,
    evaluate,
    is_design_check,
)
from router.lab.datasets import Dataset, load_dataset, register_dataset
from router.lab.routed import Routed, calibrate_routing
from router.lab.targets import Constraint, Target, parse_target
from router.lab.task_designs import design_checks
from router.lab.train import FEATURE_GRID, TAIL_GRID
from router.policy.policy_file import Policy, load_policy, loads_policy

BOUND_DEPTH = 3  # cheap models per prompt in the bound's trees (4 takes ~10x longer; see router.lab.bound)

# --------------------------------------------------------------------------- the whole run


@dataclass
class Measured:
    """A policy's figures on one set of prompts, next to the reference model's."""

    label: str
    n: int
    accuracy: float
    cost_usd: float
    reference: str
    reference_accuracy: float
    reference_cost_usd: float
    accepted_per_rung: dict[str, int] = field(default_factory=dict)
    simulated_accuracy: float | None = None
    simulated_cost_usd: float | None = None
    per_task: dict[str, tuple[float, float]] = field(default_factory=dict)  # task: (accuracy, cost) ratios

    @property
    def accuracy_ratio(self) -> float:
        return self.accuracy / self.reference_accuracy if self.reference_accuracy else 0.0

    @property
    def cost_ratio(self) -> float:
        return self.cost_usd / self.reference_cost_usd if self.reference_cost_usd else 0.0

    @property
    def agrees(self) -> bool | None:
        """Whether the real router's replay gave the same figures as the table."""
        if self.simulated_accuracy is None or self.simulated_cost_usd is None:
            return None
        return (abs(self.simulated_accuracy - self.accuracy) < 1e-9
                and abs(self.simulated_cost_usd - self.cost_usd) <= 1e-9 * max(1.0, self.cost_usd) + 1e-8)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "accuracy": round(self.accuracy, 6), "cost_usd": round(self.cost_usd, 8),
                "reference": self.reference, "reference_accuracy": round(self.reference_accuracy, 6),
                "reference_cost_usd": round(self.reference_cost_usd, 8),
                "accuracy_ratio": round(self.accuracy_ratio, 6), "cost_ratio": round(self.cost_ratio, 6),
                "accepted_per_rung": dict(self.accepted_per_rung),
                "per_task": {t: {"accuracy_ratio": round(a, 4), "cost_ratio": round(c, 4)}
                             for t, (a, c) in self.per_task.items()},
                "simulated_accuracy": self.simulated_accuracy, "simulated_cost_usd": self.simulated_cost_usd,
                "agrees": self.agrees}


@dataclass
class CalibrationReport:
    target: Target
    design: Design
    met: bool
    tuned: Measured
    held_out: Measured | None
    evaluated: int
    wall_s: float
    policy_text: str
    out: str | None = None
    bound: Bound | None = None  # the cheapest any agreement-based cascade could reach the target (tuned share)
    value_bound: Bound | None = None  # the same for cascades that also look at which answer was given

    def to_dict(self) -> dict[str, Any]:
        return {"target": str(self.target), "design": str(self.design), "met": self.met,
                "tuned": self.tuned.to_dict(), "held_out": self.held_out.to_dict() if self.held_out else None,
                "evaluated": self.evaluated, "wall_s": round(self.wall_s, 2), "out": self.out,
                "bound": self.bound.to_dict() if self.bound else None,
                "bound_with_values": self.value_bound.to_dict() if self.value_bound else None}

    def __str__(self) -> str:
        lines = [f"target {self.target}: {'met' if self.met else 'NOT met'} on the tuned prompts",
                 f"cascade: {self.design}  ({self.evaluated} designs scored, {self.wall_s:.1f}s)",
                 f"{'':18} {'n':>5} {'accuracy':>9} {'cost':>9} {'vs ' + self.tuned.reference:>28} {'replayed':>20}"]
        for m in (self.tuned, self.held_out):
            if m is None:
                continue
            replay = ("-" if m.agrees is None else
                      f"{m.simulated_accuracy:.4f} ${m.simulated_cost_usd:.4f}" + ("" if m.agrees else " (!)"))
            lines.append(f"{m.label:18} {m.n:>5} {m.accuracy:>9.4f} ${m.cost_usd:>8.4f} "
                         f"{m.accuracy_ratio:>10.3f}x acc {m.cost_ratio:>8.1%} cost  {replay:>20}")
        lines.append(f"accepted by each rung (tuned): {_rung_counts(self.tuned)}")
        for label, b in (("", self.bound), (", seeing answer values", self.value_bound)):
            if b is not None:
                lines.append(f"bound (tuned{label}): {b}"
                             + (f"; its trees on the held-out prompts: {b.replayed.ratios}" if b.replayed else ""))
        if self.out:
            lines.append(f"policy written to {self.out}")
        return "\n".join(lines)


def combine(datasets: Sequence[str | os.PathLike[str] | Dataset]) -> Dataset:
    """One dataset of all records of ``datasets`` (registered, so recorded models can answer)."""
    loaded = [load_dataset(d) for d in datasets]
    if len(loaded) == 1:
        return loaded[0]
    name = "+".join(os.path.basename(d.name) for d in loaded)
    return register_dataset(Dataset([r for d in loaded for r in d.records], name))


def split(dataset: Dataset, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random columns to tune on and to hold out."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    cut = len(dataset) - round(len(dataset) * holdout)
    return np.sort(order[:cut]), np.sort(order[cut:])


def _subset(dataset: Dataset, columns: np.ndarray, label: str) -> Dataset:
    records = [dataset.records[i] for i in columns]
    digest = hashlib.sha1(",".join(map(str, columns)).encode()).hexdigest()[:10]
    return register_dataset(Dataset(records, f"{dataset.name}#{label}-{digest}"))


def calibrate(policy: str | os.PathLike[str], datasets: Sequence[str | os.PathLike[str] | Dataset],
              target: str | Target, *, out: str | os.PathLike[str] | None = None, holdout: float = 0.5,
              seed: int = 0, extract: str = "choice", final: str | None = None, max_voters: int = 3,
              verify: bool = True, command: str | None = None, routing: bool = False,
              compare: str | os.PathLike[str] | None = None, task_designs: int = 4,
              tail_features: bool = False, gates: bool = False, split_tasks: bool = True) -> CalibrationReport:
    """Search rungs and agreement checks of ``policy``'s recorded models to meet ``target`` on
    ``datasets``; write the tuned policy to ``out`` (validated first). See the module doc.

    ``routing``: also train an estimator on the tuned share (written beside ``out`` as
    ``<stem>.estimator.npz``) and search the ``routing:`` thresholds jointly with the design
    (:mod:`router.lab.joint`). ``compare``: another policy replayed by the real router on the
    same held-out prompts, its figures written beside the tuned ones in the header.
    ``task_designs``: at most how many of each task's best plain designs (per accuracy level) the
    per-task cascade search tries (:mod:`router.lab.task_designs`; the count used and the margin
    are chosen by cross-validation on the tuned share; 0: no per-task search). ``tail_features``:
    the estimator may also be trained on the prompts' last characters (:data:`router.lab.train.TAIL_GRID`).
    ``gates``: the per-task search also tries ``answer_in`` gates (:mod:`router.checks.answer_in`);
    ``split_tasks``: a task may split its prompts between two designs (``routing.tasks[i].share``)."""
    started = time.perf_counter()
    goal = parse_target(target) if isinstance(target, str) else target
    if not 0 <= holdout < 1:
        raise CalibrationError(f"holdout must be in [0, 1), got {holdout}")
    base_policy = load_policy(policy)
    data = combine(datasets)
    base_checks = [c for c in base_policy.policy.confidence if not is_design_check(c)]
    table = build_table(base_policy, data.records, base_checks, extract)
    tune_cols, held_cols = split(data, holdout, seed) if holdout else (np.arange(len(data)), np.arange(0))
    tune = table.take(tune_cols)
    eligible = _eligible(base_policy, table)
    top = final or max(eligible, key=lambda n: (tune.correct[tune.model_index(n)].mean(),
                                                -tune.cost[tune.model_index(n)].sum()))
    if top not in eligible:
        raise CalibrationError(f"final model {top!r} is not an eligible recorded model: {', '.join(eligible)}")
    top_cost = tune.cost[tune.model_index(top)].mean()
    tiers = {n: base_policy.tier_rank(base_policy.models[n].tier) for n in eligible}
    cheap = sorted((n for n in eligible if tune.cost[tune.model_index(n)].mean() < top_cost
                    and tiers[n] <= tiers[top]), key=lambda n: tune.cost[tune.model_index(n)].mean())
    raises = base_policy.policy.on_exhausted == "raise"
    tasks = np.array([r.task or "" for r in data.records]) if any(r.task for r in data.records) else None
    reference = next((c.relative_to for c in goal.constraints if c.relative_to), top)
    replay = (table.take(held_cols), _at(tasks, held_cols)) if len(held_cols) else None
    bound = _bound(tune, goal, final=top, cheap=cheap, tasks=_at(tasks, tune_cols), replay=replay)
    value_bound = _bound(tune, goal, final=top, cheap=cheap, tasks=_at(tasks, tune_cols), values=True, replay=replay)
    routed: Routed | None = None
    if routing:
        if out is None:
            raise CalibrationError("calibrating routing needs --out: the estimator is written beside it")
        routed = calibrate_routing(data, table, tune_cols, tune, goal, final=top, cheap=cheap, tiers=tiers,
                                   tasks=tasks, max_voters=max_voters, raises=raises, out=out,
                                   task_designs=task_designs, gates=gates, split_tasks=split_tasks,
                                   feature_grid=FEATURE_GRID + TAIL_GRID if tail_features else FEATURE_GRID)
        found = SearchResult(routed.found.best, routed.found.met, routed.found.evaluated)
    else:
        found = search(tune, goal, final=top, cheap=cheap, tiers=tiers, max_voters=max_voters,
                       raise_on_exhausted=raises)
    design = found.best.design
    measured = [_measure("tuned", tune, design, reference, raises, tasks=_at(tasks, tune_cols),
                         routed=routed.scored(tune, design, tune_cols, raises=raises) if routed else None)]
    if len(held_cols):
        held = table.take(held_cols)
        measured.append(_measure("held-out", held, design, reference, raises, tasks=_at(tasks, held_cols),
                                 routed=routed.scored(held, design, held_cols, raises=raises) if routed else None))
    if compare is not None and len(held_cols):
        measured.append(_replayed(compare, data, held_cols, table.recorded[table.model_index(reference)], tasks))
    text = policy_yaml(policy, design, base_checks=base_policy.policy.confidence,
                       extract=extract, name=Path(out).stem if out else base_policy.name,
                       header=_header(goal, found.met, measured, data, command, routed, bound, value_bound),
                       routing=routed.block(base_policy.policy.confidence, extract) if routed else None)
    tuned_policy = loads_policy(text, str(out or "<calibrated>"))
    if verify:
        from router.lab.simulate import simulate

        for m, cols in zip(measured[:2], (tune_cols, held_cols), strict=False):  # no held-out part when holdout=0
            report = simulate(tuned_policy, _subset(data, cols, m.label), progress=False)
            m.simulated_accuracy, m.simulated_cost_usd = report.accuracy, report.cost_usd
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
        if routed is not None:
            from router.lab.frontier import frontier_path, save_frontier

            save_frontier(frontier_path(out), routed.found.frontier,
                          tasks=routed.designs.fronts if routed.designs is not None else None,
                          note=f"Pareto-optimal designs of `router calibrate --routing` on the tuned share of "
                               f"{os.path.basename(data.name)} (with \"task\": that task's own cascade "
                               f"designs); `router simulate --plot` re-scores them")
    return CalibrationReport(goal, found.best.design, found.met, measured[0],
                             measured[1] if len(measured) > 1 else None, found.evaluated,
                             time.perf_counter() - started, text, os.fspath(out) if out else None, bound,
                             value_bound)


def _bound(tune: OutcomeTable, goal: Target, *, final: str, cheap: Sequence[str],
           tasks: np.ndarray | None, values: bool = False,
           replay: tuple[OutcomeTable, np.ndarray | None] | None = None) -> Bound | None:
    """The bound of :mod:`router.lab.bound` at the goal's accuracy (``None``: no accuracy
    constraint); ``replay``: the held-out prompts its trees are also run on."""
    needed = [c.bound(tune) * tune.n for c in goal.constraints if c.metric == "accuracy" and c.op == ">="]
    if not needed or not tune.n:
        return None
    bound = answer_bound(tune, final=final, cheap=cheap, needed=max(needed), tasks=tasks, depth=BOUND_DEPTH,
                         values=values, replay=replay)
    caps = [c.bound(tune) for c in goal.constraints if c.metric == "cost" and c.op == "<="]
    return replace(bound, cost_cap=min(caps)) if caps else bound


def _eligible(policy: Policy, table: OutcomeTable) -> list[str]:
    floor = policy.tier_rank(policy.policy.quality_tier)
    return [n for n in table.models if policy.tier_rank(policy.models[n].tier) >= floor
            and table.present[table.model_index(n)].any()]


def _replayed(policy: str | os.PathLike[str], data: Dataset, columns: np.ndarray, reference: str,
              tasks: np.ndarray | None) -> Measured:
    """Another policy's figures on ``columns``, replayed by the real router."""
    from router.lab.simulate import simulate

    subset = _subset(data, columns, "compare")
    report = simulate(policy, subset, progress=False)
    right = np.array([bool(r.correct) for r in report.rows])
    spent = np.array([r.cost_usd for r in report.rows])
    ref_right = np.array([bool(o.correct) if (o := r.outcomes.get(reference)) else False for r in subset.records])
    ref_cost = np.array([o.cost_usd if (o := r.outcomes.get(reference)) else 0.0 for r in subset.records])
    per_task = {}
    for task in np.unique(tasks[columns]) if tasks is not None else ():
        cols = tasks[columns] == task
        acc, cost = ref_right[cols].mean(), ref_cost[cols].sum()
        per_task[str(task)] = (float(right[cols].mean() / acc) if acc else 0.0,
                               float(spent[cols].sum() / cost) if cost else 0.0)
    label = f"{Path(policy).name} (same held-out prompts, replayed)"
    return Measured(label, len(right), float(right.mean()), float(spent.sum()), reference,
                    float(ref_right.mean()), float(ref_cost.sum()), per_task=per_task,
                    simulated_accuracy=float(right.mean()), simulated_cost_usd=float(spent.sum()))


def _at(tasks: np.ndarray | None, columns: np.ndarray) -> np.ndarray | None:
    return tasks[columns] if tasks is not None else None


def _measure(label: str, table: OutcomeTable, design: Design, reference: str, raises: bool, *,
             tasks: np.ndarray | None = None, routed: tuple[Scored, dict[str, int]] | None = None) -> Measured:
    """``design`` on ``table`` (or, with ``routed``, that score and each model's acceptances)."""
    scored = routed[0] if routed is not None else evaluate(table, design, raise_on_exhausted=raises)
    accepted = (routed[1] if routed is not None
                else {r.model: k for r, k in zip(design.rungs, scored.accepted, strict=True)})
    ref = table.model_index(reference)
    per_task = {}
    for task in np.unique(tasks) if tasks is not None else ():
        cols = tasks == task
        acc, cost = table.correct[ref, cols].mean(), table.cost[ref, cols].sum()
        per_task[str(task)] = (float(scored.correct[cols].mean() / acc) if acc else 0.0,
                               float(scored.cost_each[cols].sum() / cost) if cost else 0.0)
    return Measured(label, table.n, scored.accuracy, scored.cost, table.recorded[ref],
                    float(table.correct[ref].mean()) if table.n else 0.0, float(table.cost[ref].sum()),
                    accepted, per_task=per_task)


def _rung_counts(m: Measured) -> str:
    return ", ".join(f"{model} {count}" for model, count in m.accepted_per_rung.items()) + f" (of {m.n})"


def _header(goal: Target, met: bool, measured: list[Measured], data: Dataset, command: str | None,
            routed: Routed | None = None, bound: Bound | None = None, value_bound: Bound | None = None) -> str:
    lines = [f"Calibrated by `router calibrate` on {datetime.date.today().isoformat()}"
             + (f":\n  {command}" if command else "."),
             f"Dataset: {os.path.basename(data.name)} ({len(data)} prompts).",
             f"Target {goal}: {'met' if met else 'NOT met'} on the tuned prompts."]
    if routed is not None:
        lines += routed.describe()
    if bound is not None:
        lines.append(f"Bound: on the tuned prompts no cascade deciding from the task and whose answers agree reaches the "
                     f"target below {bound.cost_ratio:.1%} of {bound.final}'s cost" if bound.reachable else f"Bound: {bound}")
        if bound.reachable and not bound.within_cap:
            lines.append(f"  {bound.cap_note}")
        lines.append(f"  (in-sample optimum of decision trees over up to {bound.depth} cheap models' answers, agreements "
                     "and check verdicts, one per task, mixed; optimistic: new prompts do worse)")
        if bound.replayed is not None:
            lines.append(f"  the same trees as fitted, on the held-out prompts: {bound.replayed.ratios}")
    if value_bound is not None and value_bound.reachable:
        lines.append(f"  one that also looks at which answer each model gave (answer_in gates) could get to "
                     f"{value_bound.cost_ratio:.1%} in-sample: its trees have more leaves to fit the tuned prompts with"
                     + (f" (on the held-out prompts: {value_bound.replayed.ratios})" if value_bound.replayed else ""))
    for m in measured:
        lines.append(f"{m.label}: n={m.n}, accuracy {m.accuracy:.4f} ({m.accuracy_ratio:.3f}x {m.reference}'s "
                     f"{m.reference_accuracy:.4f}), cost ${m.cost_usd:.4f} ({m.cost_ratio:.1%} of ${m.reference_cost_usd:.4f})")
        if m.per_task:
            lines.append("  per task (accuracy, cost vs the same): " + "; ".join(
                f"{t} {a:.3f}x, {c:.1%}" for t, (a, c) in m.per_task.items()))
        if m.accepted_per_rung:
            lines.append(f"  accepted by each rung: {_rung_counts(m)}")
    if measured and 0 in measured[0].accepted_per_rung.values():
        lines.append("A rung that accepts nothing still answers when every later rung fails (an error, a missing "
                     "record): its answer is then the best rejected one.")
    lines.append("Recorded models answer from `dataset:`; `router simulate --dataset D` replays them on D.")
    return "".join(f"# {line}\n" for line in "\n".join(lines).splitlines())


def policy_yaml(source: str | os.PathLike[str], design: Design, *, base_checks: Sequence[CheckSpec],
                extract: str, name: str, header: str = "", routing: dict[str, Any] | None = None) -> str:
    """The policy file ``source`` with ``design``'s cascade and checks (``${VAR}`` kept as written)."""
    raw = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    checks = design_checks(design, base_checks, extract)
    raw["name"] = name
    raw["policy"] = {**raw.get("policy", {}), "cascade": [r.model for r in design.rungs], "confidence": checks}
    raw.pop("routing", None)
    if routing is not None:
        raw["routing"] = routing
    body = yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)
    return header + body


__all__ = ["CalibrationError", "CalibrationReport", "Constraint", "Design", "Measured", "OutcomeTable", "Rung",
           "Scored", "SearchResult", "Target", "build_table", "calibrate", "candidate_designs",
           "evaluate", "parse_target", "policy_yaml", "rank", "search"]
