"""How ``routing.tasks:`` entries are recognised and scored: prompt patterns and routing masks.

A task is a kind of prompt the policy recognises with a regular expression (first match wins);
each gets its own ``skip_below``/``skip_gap``/``trust_gap`` per rung (``skip_below: 1`` always
skips, ``trust_gap: 1`` always trusts) and, with :mod:`router.lab.task_designs`, its own cascade.
This module holds the RouterBench task patterns (checked on the data before a policy uses them),
the per-rung threshold choices the per-task search tries, and :func:`task_masks`, the table-side
mirror of per-task thresholds on one shared design.

Example:
    >>> task_patterns([r.prompt for r in records], tasks)["mbpp"]
    '(?i)\\b(function|python|lists?|arrays?|strings?|matrix)\\b'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

import numpy as np

from router.lab.cascade_table import (
    CalibrationError,
    Design,
    OutcomeTable,
    RoutingMasks,
    routing_masks,
)
from router.policy.routing_block import Thresholds

# How the router recognises the RouterBench tasks in a prompt (first match wins; checked on the
# data by :func:`task_patterns` before a policy uses them).
TASK_PATTERNS: dict[str, str] = {
    "arc-challenge": r'from "A" or "B" or "C" or "D"',
    "winogrande": r'from "A" or "B" without',
    "mbpp": r"(?i)\b(function|python|lists?|arrays?|strings?|matrix)\b",  # after the choice formats
}

# "Always skip" and "always trust" let a task leave a rung out or stop at it.
TASK_GRID: dict[str, tuple[float | None, ...]] = {
    "skip_below": (0.0, 0.5, 0.6, 0.7, 0.8, 1.0), "skip_gap": (None, 0.1, 0.2, 0.3),
    "trust_gap": (None, 0.0, 0.05, 0.1, 0.2, 1.0)}


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


__all__ = ["TASK_GRID", "TASK_PATTERNS", "rung_options", "task_masks", "task_patterns"]
