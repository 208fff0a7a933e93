"""The searched designs of a calibration, kept beside the tuned policy and re-scored on any dataset.

``router calibrate --routing`` writes ``<stem>.frontier.json``: the Pareto-optimal (design,
routing thresholds) points of its search on the tuned share. ``router simulate --plot`` finds
that file beside the policy and scores every point on the simulated dataset with the outcome
table (the same arithmetic calibration uses, with the policy's estimator for the routing
estimates), so the plot shows the frontier of the searched designs on *this* data, beside every
single model and the oracle. Points of one task's own search (``"task"`` set: per-task cascade
designs, :mod:`router.lab.task_designs`) are drawn only on a dataset of that task alone (on a mix
they are not whole policies).

Example:
    >>> points = score_frontier(load_policy("policies/routed-routerbench.yaml"),
    ...                         load_dataset("data/routerbench-sample/mbpp.jsonl"))
    >>> points[0]
    (0.55, 0.0123, 'yi-34b -> gpt-4 (skip_gap=0.2)')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router.checks.consulting import AgreementCheck
from router.estimators.estimator import load_estimator
from router.lab.cascade_table import Design, Rung, build_table, evaluate, is_design_check, routing_masks
from router.lab.datasets import Dataset
from router.lab.joint import Point
from router.policy.policy_file import Policy
from router.policy.routing_block import Thresholds


def frontier_path(policy_path: str | os.PathLike[str]) -> Path:
    path = Path(policy_path)
    return path.with_name(path.stem + ".frontier.json")


def _item(p: Point, task: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "accuracy": round(p.accuracy, 6), "cost_usd": round(p.cost, 8),
        "rungs": [{"model": r.model, "voters": list(r.voters), "min_agree": r.min_agree}
                  | ({"accept": list(r.accept)} if r.accept else {}) for r in p.design.rungs],
        "thresholds": [t.model_dump(exclude_defaults=True) for t in p.thresholds]}
    return item | ({"task": task} if task is not None else {})


def save_frontier(path: str | os.PathLike[str], points: Sequence[Point], *, note: str = "",
                  tasks: Mapping[str, Sequence[Point]] | None = None) -> None:
    """Write ``points`` (whole-mix designs) and each task's own frontier points (``tasks``)."""
    items = [_item(p) for p in points] + [_item(p, t) for t, pts in (tasks or {}).items() for p in pts]
    Path(path).write_text(json.dumps({"note": note, "points": items}, indent=1) + "\n", encoding="utf-8")


def load_frontier(path: str | os.PathLike[str]) -> list[tuple[Design, tuple[Thresholds, ...], str | None]]:
    """Every saved point: design, thresholds, and the task whose own search found it (or None)."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for item in data["points"]:
        design = Design(tuple(Rung(r["model"], tuple(r["voters"]), r["min_agree"], tuple(r.get("accept", ())))
                              for r in item["rungs"]))
        out.append((design, tuple(Thresholds(**t) for t in item["thresholds"]), item.get("task")))
    return out


def _label(design: Design, rules: Sequence[Thresholds]) -> str:
    routed = [f"{r.model}: {t}" for r, t in zip(design.rungs, rules, strict=True) if str(t) != "no routing"]
    return str(design) + (f" ({'; '.join(routed)})" if routed else "")


def score_frontier(policy: Policy, dataset: Dataset, path: str | os.PathLike[str] | None = None
                   ) -> list[tuple[float, float, str]]:
    """(accuracy, total cost, label) of every saved point on ``dataset``; empty without a file."""
    where = Path(path) if path is not None else frontier_path(policy.source)
    if not where.is_file():
        return []
    base = [c for c in policy.policy.confidence if not is_design_check(c)]
    extract = next((c.extract for c in policy.policy.confidence if isinstance(c, AgreementCheck)), "choice")
    table = build_table(policy, dataset.records, base, extract)
    p = None
    if policy.routing is not None:
        estimator = load_estimator(policy.routing.estimator_path(policy.source))
        raw, _ = estimator.predict_matrix([r.prompt for r in dataset.records])
        rows = {m: i for i, m in enumerate(estimator.models)}
        p = np.zeros(table.correct.shape)
        for i, name in enumerate(table.recorded):
            if name in rows:
                p[i] = raw[rows[name]]
    kinds = {r.task for r in dataset.records}
    out = []
    for design, rules, task in load_frontier(where):
        if task is not None and kinds != {task}:
            continue  # one task's design is not a policy for a mix (or for another task)
        masks = routing_masks(table, design, p, rules) if p is not None else None
        s = evaluate(table, design, routing=masks)
        out.append((s.accuracy, s.cost, (f"{task}: " if task else "") + _label(design, rules)))
    return out


__all__ = ["frontier_path", "load_frontier", "save_frontier", "score_frontier"]
