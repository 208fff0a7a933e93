"""What ``router calibrate --routing`` does beyond the plain search: train the estimator on the
tuned share, search the ``routing:`` thresholds with the design (:mod:`router.lab.joint`) and,
when the data has several known tasks, a cascade design per task (:mod:`router.lab.task_designs`:
first rung, agreement models and thresholds, the accuracy margin by cross-validation on the
tuned share), keeping whichever costs less on the tuned share's out-of-fold estimates.

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

from router.checks.builtin import CheckSpec
from router.estimators.estimator import QualityEstimator, read_estimator
from router.estimators.features import FeatureSpec
from router.lab.cascade_table import CalibrationError, Design, OutcomeTable, Scored, evaluate, routing_masks
from router.lab.datasets import Dataset
from router.lab.joint import JointResult, Point, joint_search
from router.lab.targets import Target
from router.lab.task_designs import (
    GATE_SHARE,
    TaskDesigns,
    design_checks,
    score_picks,
    scored_whole,
    search_task_designs,
)
from router.lab.task_routing import task_patterns
from router.lab.train import FEATURE_GRID, Fitted, describe_task_auc, train_estimator
from router.policy.routing_block import Thresholds, prompt_share


@dataclass
class Routed:
    """What ``calibrate --routing`` found: the joint result, the estimator as written, the
    shipped estimator's P(correct) for every prompt of the data (rows: the table's models) and,
    when per-task designs did better, those (``designs``, with each prompt's task in ``task_of``
    and the prompt patterns the policy recognises them by)."""

    found: JointResult
    fitted: Fitted
    estimator: QualityEstimator
    artifact: Path
    p_all: np.ndarray
    designs: TaskDesigns | None = None
    task_of: np.ndarray | None = None
    patterns: dict[str, str] = field(default_factory=dict)
    note: str = ""
    shares: np.ndarray | None = None  # each prompt's prompt_share, when a task may split its prompts

    def scored(self, table: OutcomeTable, design: Design, columns: np.ndarray, *,
               raises: bool = False) -> tuple[Scored, dict[str, int]]:
        """``table`` (the data's ``columns``) scored as the tuned policy runs it with the shipped
        estimator, and how many prompts each model accepted."""
        p = self.p_all[:, columns]
        if self.designs is not None and self.task_of is not None:
            tasks = self.task_of[columns]
            right, spent, accepted = score_picks(table, p, tasks, self.designs.picks, self.designs.splits,
                                                 self.shares[columns] if self.shares is not None else None)
            rest = ~np.isin(tasks, list(self.designs.picks))  # a prompt of no task: the policy's cascade
            if rest.any():
                cols = np.flatnonzero(rest)
                sub = table.take(cols)
                plain = evaluate(sub, design, raise_on_exhausted=raises,
                                 routing=routing_masks(sub, design, p[:, cols], self.found.thresholds))
                right[cols], spent[cols] = plain.correct, plain.cost_each
                for r, k in zip(design.rungs, plain.accepted, strict=True):
                    accepted[r.model] = accepted.get(r.model, 0) + k
            return Scored(design, float(right.mean()) if table.n else 0.0, float(spent.sum()), right, spent), accepted
        s = evaluate(table, design, raise_on_exhausted=raises,
                     routing=routing_masks(table, design, p, self.found.thresholds))
        return s, {r.model: k for r, k in zip(design.rungs, s.accepted, strict=True)}

    def block(self, base_checks: Sequence[CheckSpec] = (), extract: str = "choice") -> dict[str, Any]:
        """The ``routing:`` block of the tuned policy (``base_checks``, ``extract``: for the
        per-task ``confidence:`` lists)."""
        design = self.found.best.design
        out: dict[str, Any] = {"estimator": self.artifact.name}
        if rungs := _rungs(design, self.found.thresholds):
            out["rungs"] = rungs
        if self.designs is not None:
            out["tasks"] = []
            for task in self.patterns:
                pt = self.designs.picks.get(task)
                if pt is None:
                    continue
                split = self.designs.splits.get(task)
                if split is not None:  # this share of the task's prompts first, the next entry the rest
                    out["tasks"].append(_task_entry(task, self.patterns[task], split[0], base_checks, extract)
                                        | {"share": split[1]})
                out["tasks"].append(_task_entry(task, self.patterns[task], pt, base_checks, extract))
        return out

    def describe(self) -> list[str]:
        chosen = self.fitted.chosen
        meta = self.estimator.meta
        lines = [
            f"Routing: estimator {self.artifact.name} ({self.estimator.digest}, "
            f"{self.artifact.stat().st_size // 1024} KiB) trained by this run on the tuned share only "
            f"({meta.get('n_records')} prompts): per model, logistic regression of P(correct) and ridge "
            f"regression of cost over hashed prompt n-grams; shipped: the mean of the {meta.get('folds')} fold fits "
            f"(the thresholds are tuned on those fits' out-of-fold estimates; a refit on all prompts is more "
            f"confident, so absolute thresholds would act differently).",
            f"  features chosen by {meta.get('folds')}-fold log loss among {len(self.fitted.trials)} configurations: "
            f"{chosen.spec.to_dict()} C={chosen.c:g}: log loss {chosen.log_loss:.4f} (base rates "
            f"{self.fitted.baseline_log_loss:.4f}), AUC {chosen.auc:.3f}.",
        ]
        if self.fitted.task_auc:
            lines.append(f"  AUC within one task (mean over models; 0.5 is chance, so the pooled AUC above is mostly "
                         f"telling tasks apart): {describe_task_auc(self.fitted.task_auc)}.")
        lines.append(("  policy cascade (prompts of no listed task) and its thresholds" if self.designs else
                      "  thresholds") + " searched with the design on out-of-fold estimates of the tuned share: "
                     + "; ".join(f"{r.model}: {t}" for r, t in zip(self.found.best.design.rungs,
                                                                  self.found.thresholds, strict=True)))
        if self.designs is not None:
            lines.append(f"  a cascade per task (routing.tasks, recognised by prompt patterns): {self.note}")
            for task, pt in self.designs.picks.items():
                split = self.designs.splits.get(task)
                if split is not None:
                    lines.append(f"    {task}, {split[1]:.0%} of its prompts (routing.tasks share, by a hash of the "
                                 f"prompt): {_described(split[0])}")
                lines.append(f"    {task}{', the others' if split else ''}: {_described(pt)}")
            lines.append(f"  design count and margin chosen by 5-fold cross-validation on the tuned share only "
                         f"(out-of-fold estimates; accuracy and cost vs the reference; chosen: {self.designs.designs} "
                         f"designs, margin {self.designs.margin:g}, the cheapest that met the target):")
            lines += [f"    {r}" for r in self.designs.cv]
        elif self.note:
            lines.append(f"  per task: {self.note}")
        lines.append(
            f"  with those estimates the tuned share scored accuracy {self.found.best.accuracy:.4f}, cost "
            f"${self.found.best.cost:.4f} ({self.found.evaluated} designs and thresholds scored); the figures "
            f"below use the shipped estimator (in-sample on the tuned share, out-of-sample on the held-out one).")
        return lines


def _described(pt: Point) -> str:
    return f"{pt.design}; " + "; ".join(f"{r.model}: {t}" for r, t in zip(pt.design.rungs, pt.thresholds, strict=True))


def _task_entry(task: str, match: str, pt: Point, base_checks: Sequence[CheckSpec], extract: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": task, "match": match, "cascade": [r.model for r in pt.design.rungs],
                             "confidence": design_checks(pt.design, base_checks, extract)}
    if rungs := _rungs(pt.design, pt.thresholds):
        entry["rungs"] = rungs
    return entry


def _rungs(design: Design, rules: Sequence[Thresholds]) -> dict[str, Any]:
    return {r.model: entry for r, t in zip(design.rungs, rules, strict=True) if (entry := t.model_dump(exclude_defaults=True))}


def calibrate_routing(data: Dataset, table: OutcomeTable, tune_cols: np.ndarray, tune: OutcomeTable,
                      target: Target, *, final: str, cheap: Sequence[str], tiers: dict[str, int],
                      tasks: np.ndarray | None, max_voters: int, raises: bool,
                      out: str | os.PathLike[str], task_designs: int = 4,
                      feature_grid: Sequence[FeatureSpec] = FEATURE_GRID, gates: bool = False,
                      split_tasks: bool = True) -> Routed:
    """Train on the tuned share, write ``<out stem>.estimator.npz`` beside ``out``, search jointly;
    with several known tasks also search a cascade design per task (:mod:`router.lab.task_designs`,
    ``task_designs`` best plain designs per accuracy level) and keep them when they cost less on
    the tuned share. ``feature_grid``: the feature sets the estimator's training chooses among;
    ``gates``: the per-task search also tries ``answer_in`` gates on each design's first rung;
    ``split_tasks``: a task may split its prompts between two designs (``routing.tasks[i].share``)."""
    records = [data.records[i] for i in tune_cols]
    fitted = train_estimator(records, table.recorded, source=os.path.basename(data.name) + " (tuned share)",
                             bagged=True, grid=feature_grid)
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
    shares = np.array([prompt_share(r.prompt) for r in data.records]) if split_tasks else None
    designs = search_task_designs(tune, fitted.out_of_fold, tune_tasks, target, final=final, cheap=cheap,
                                  tiers=tiers, max_voters=max_voters, designs=task_designs, gates=gates,
                                  shares=shares[tune_cols] if shares is not None else None)
    evaluated = found.evaluated + designs.evaluated
    if not designs.met or (found.met and designs.cost >= found.best.cost):
        routed.note = (f"not used: the best per-task designs cost ${designs.cost:.4f} on the tuned share"
                       if designs.met else "not used: no per-task designs met the target")
        routed.found = replace(found, evaluated=evaluated)
        return routed
    best = scored_whole(tune, fitted.out_of_fold, tune_tasks, designs.picks, found.best.design, designs.splits,
                        shares[tune_cols] if shares is not None else None)
    gated_note = (", each also with an answer_in gate on its first rung (every answer its model gives on at least "
                  f"{GATE_SHARE:.0%} of the task's prompts, alone or all but it)")
    split_note = (" (or of two for a task, each taking a share of its prompts: the Lagrangian mix of "
                  "router.lab.task_choice)")
    routed.found = JointResult(best, found.thresholds, True, evaluated, found.frontier)
    routed.designs, routed.task_of, routed.patterns, routed.shares = designs, tasks, patterns, shares
    routed.note = (f"per task, the {designs.designs} best plain designs at each of several accuracy levels, every "
                   f"single cheap model and the final one alone{gated_note if gates else ''}, each with its "
                   f"thresholds; the cheapest mix of one per task{split_note if split_tasks else ''} with pooled accuracy "
                   f">= target + {designs.margin:g} x the reference's "
                   f"(joint search with one cascade: ${found.best.cost:.4f})")
    return routed


__all__ = ["Routed", "calibrate_routing"]
