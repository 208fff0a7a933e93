"""What ``router calibrate --routing`` does beyond the plain search: train the estimator on the
tuned share, search the ``routing:`` thresholds with the design (:mod:`router.lab.joint`) and,
when the data has several known tasks, per-task thresholds (:mod:`router.lab.task_routing`),
keeping whichever costs less on the tuned share's out-of-fold estimates.

Example:
    >>> routed = calibrate_routing(data, table, tune_cols, tune, target, final="gpt-4", cheap=cheap,
    ...                            tiers=tiers, tasks=tasks, max_voters=3, raises=False, out="p.yaml")
    >>> routed.block()["tasks"][0]["name"]
    'arc-challenge'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from router.estimators.estimator import QualityEstimator, read_estimator
from router.lab.calibrate_search import rank, staged
from router.lab.cascade_table import CalibrationError, Design, OutcomeTable, RoutingMasks, routing_masks
from router.lab.datasets import Dataset
from router.lab.joint import JointResult, joint_search
from router.lab.targets import Target
from router.lab.task_routing import MARGIN, TaskResult, rung_options, task_masks, task_patterns, task_search
from router.lab.task_routing import scored as task_scored
from router.lab.train import Fitted, train_estimator
from router.policy.routing_block import Thresholds


@dataclass
class Routed:
    """What ``calibrate --routing`` found: the joint result, the estimator as written, the
    shipped estimator's P(correct) for every prompt of the data (rows: the table's models) and,
    when per-task thresholds did better, those (``tasks``, with each prompt's task in ``task_of``
    and the prompt patterns the policy recognises them by)."""

    found: JointResult
    fitted: Fitted
    estimator: QualityEstimator
    artifact: Path
    p_all: np.ndarray
    tasks: TaskResult | None = None
    task_of: np.ndarray | None = None
    patterns: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def masks(self, table: OutcomeTable, design: Design, columns: np.ndarray) -> RoutingMasks:
        if self.tasks is not None and self.task_of is not None:
            return task_masks(table, design, self.p_all[:, columns], self.task_of[columns], self.tasks.rules)
        return routing_masks(table, design, self.p_all[:, columns], self.found.thresholds)

    def block(self) -> dict[str, Any]:
        """The ``routing:`` block of the tuned policy."""
        design = self.found.best.design
        out: dict[str, Any] = {"estimator": self.artifact.name}
        if rungs := _rungs(design, self.found.thresholds):
            out["rungs"] = rungs
        if self.tasks is not None:
            out["tasks"] = [{"name": task, "match": self.patterns[task], "rungs": _rungs(design, self.tasks.rules[task])}
                            for task in self.patterns if task in self.tasks.rules]
        return out

    def describe(self) -> list[str]:
        chosen = self.fitted.chosen
        meta = self.estimator.meta
        lines = [
            f"Routing: estimator {self.artifact.name} ({self.estimator.digest}, "
            f"{self.artifact.stat().st_size // 1024} KiB) trained by this run on the tuned share only "
            f"({meta.get('n_records')} prompts): per model, logistic regression of P(correct) and ridge "
            f"regression of cost over hashed prompt n-grams.",
            f"  features chosen by {meta.get('folds')}-fold log loss among {len(self.fitted.trials)} configurations: "
            f"{chosen.spec.to_dict()} C={chosen.c:g}: log loss {chosen.log_loss:.4f} (base rates "
            f"{self.fitted.baseline_log_loss:.4f}), AUC {chosen.auc:.3f}.",
        ]
        if self.tasks is None:
            lines.append("  thresholds searched with the design on out-of-fold estimates of the tuned share: "
                         + "; ".join(f"{r.model}: {t}" for r, t in zip(self.found.best.design.rungs,
                                                                     self.found.thresholds, strict=True)))
        if self.tasks is not None:
            lines.append(f"  thresholds per task (routing.tasks, recognised by prompt patterns; a prompt of no "
                         f"listed task runs the plain cascade), on out-of-fold estimates: {self.note}")
            lines += [f"    {task}: " + "; ".join(f"{r.model}: {t}" for r, t in zip(
                self.found.best.design.rungs, rules, strict=True)) for task, rules in self.tasks.rules.items()]
        elif self.note:
            lines.append(f"  per task: {self.note}")
        lines.append(
            f"  with those estimates the tuned share scored accuracy {self.found.best.accuracy:.4f}, cost "
            f"${self.found.best.cost:.4f} ({self.found.evaluated} designs and thresholds scored); the figures "
            f"below use the shipped estimator (in-sample on the tuned share, out-of-sample on the held-out one).")
        return lines


def _rungs(design: Design, rules: Sequence[Thresholds]) -> dict[str, Any]:
    return {r.model: entry for r, t in zip(design.rungs, rules, strict=True) if (entry := t.model_dump(exclude_defaults=True))}


def calibrate_routing(data: Dataset, table: OutcomeTable, tune_cols: np.ndarray, tune: OutcomeTable,
                      target: Target, *, final: str, cheap: Sequence[str], tiers: dict[str, int],
                      tasks: np.ndarray | None, max_voters: int, raises: bool,
                      out: str | os.PathLike[str], task_designs: int = 4) -> Routed:
    """Train on the tuned share, write ``<out stem>.estimator.npz`` beside ``out``, search jointly;
    with several known tasks also search per-task thresholds on the ``task_designs`` best plain
    designs (:mod:`router.lab.task_routing`) and keep them when they cost less on the tuned share."""
    records = [data.records[i] for i in tune_cols]
    fitted = train_estimator(records, table.recorded, source=os.path.basename(data.name) + " (tuned share)")
    artifact = Path(out).with_name(Path(out).stem + ".estimator.npz")
    fitted.estimator.save(artifact)
    estimator = read_estimator(artifact)  # the float32 weights the router will apply
    assert fitted.out_of_fold is not None
    tune_tasks = tasks[tune_cols] if tasks is not None else None
    found = joint_search(tune, fitted.out_of_fold, target, final=final, cheap=cheap, tiers=tiers,
                         tasks=tune_tasks, max_voters=max_voters, raise_on_exhausted=raises)
    p_all, _ = estimator.predict_matrix([r.prompt for r in data.records])
    routed = Routed(found, fitted, estimator, artifact, p_all)
    if tasks is None or len(set(tasks.tolist())) < 2 or task_designs < 1 or raises:
        return routed
    try:
        patterns = task_patterns([r.prompt for r in data.records], tasks)
    except CalibrationError as err:
        routed.note = f"not used: {err}"
        return routed
    plain = staged(tune, target, final=final, cheap=cheap, tiers=tiers, max_voters=max_voters)
    designs = [found.best.design, *(s.design for s in sorted(plain, key=lambda s: rank(s, target, tune)))]
    designs = [d for d in dict.fromkeys(designs) if len({r.model for r in d.rungs}) == len(d.rungs)][:task_designs]
    per_task = task_search(tune, fitted.out_of_fold, tune_tasks, target, designs=designs, final=final)
    evaluated = found.evaluated + per_task.evaluated
    if not per_task.met or (found.met and per_task.cost >= found.best.cost):
        routed.note = (f"not used: the best of {len(designs)} designs with per-task thresholds cost "
                       f"${per_task.cost:.4f} on the tuned share")
        routed.found = replace(found, evaluated=evaluated)
        return routed
    best = task_scored(tune, per_task, fitted.out_of_fold, tune_tasks)
    none = tuple(Thresholds() for _ in per_task.design.rungs)  # a prompt of no known task: the plain cascade
    routed.found = JointResult(best, none, True, evaluated, found.frontier)
    routed.tasks, routed.task_of, routed.patterns = per_task, tasks, patterns
    routed.note = (f"the cheapest of the {len(designs)} best plain designs with each task's thresholds over "
                   f"{len(rung_options())} choices per rung, pooled accuracy >= target + {MARGIN:g} x the reference's "
                   f"(joint search without tasks: ${found.best.cost:.4f})")
    return routed


__all__ = ["Routed", "calibrate_routing"]
