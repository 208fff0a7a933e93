"""Calibration targets: what a tuned policy must achieve, in a small text syntax.

Constraints joined by commas, each ``METRIC OP VALUE[*MODEL]``:

- ``accuracy>=0.97*gpt-4-1106-preview``: at least 97 % of that model's accuracy on the same prompts;
- ``accuracy>=0.88``: an absolute accuracy;
- ``cost<=0.4*gpt-4``: at most 40 % of that model's total cost on the same prompts;
- ``cost<=2.5``: at most 2.5 USD for all the prompts.

``VALUE`` may be a percentage (``97%``); MODEL is a catalog name or a recorded model name. With an
accuracy constraint the search minimises cost; with cost constraints only, it maximises accuracy.

Example:
    >>> target = parse_target("accuracy>=0.97*gpt-4-1106-preview,cost<=40%*gpt-4-1106-preview")
    >>> target.objective
    'min_cost'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from router.lab.cascade_table import CalibrationError, OutcomeTable


@dataclass(frozen=True)
class Constraint:
    metric: Literal["accuracy", "cost"]
    op: Literal[">=", "<="]
    value: float
    relative_to: str | None = None

    def bound(self, table: OutcomeTable) -> float:
        if self.relative_to is None:
            return self.value
        ref = table.model_index(self.relative_to)
        base = table.correct[ref].mean() if self.metric == "accuracy" else table.cost[ref].sum()
        return self.value * float(base)

    def holds(self, accuracy: float, cost: float, table: OutcomeTable) -> bool:
        got = accuracy if self.metric == "accuracy" else cost
        bound = self.bound(table)
        return got >= bound - 1e-12 if self.op == ">=" else got <= bound + 1e-12

    def shortfall(self, accuracy: float, cost: float, table: OutcomeTable) -> float:
        """How far from holding, relative to the bound (0 when it holds)."""
        return self.shortfall_below(accuracy, cost, self.bound(table))

    def shortfall_below(self, accuracy: float, cost: float, bound: float) -> float:
        """:meth:`shortfall` against an already computed :meth:`bound` (a search ranks
        thousands of designs on one table)."""
        got = accuracy if self.metric == "accuracy" else cost
        bound = bound or 1e-12
        gap = (bound - got) if self.op == ">=" else (got - bound)
        return max(gap, 0.0) / abs(bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}" + (f"*{self.relative_to}" if self.relative_to else "")


@dataclass(frozen=True)
class Target:
    constraints: tuple[Constraint, ...]

    @property
    def objective(self) -> Literal["min_cost", "max_accuracy"]:
        return "min_cost" if any(c.metric == "accuracy" for c in self.constraints) else "max_accuracy"

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.constraints)


_CONSTRAINT = re.compile(r"^\s*(accuracy|cost)\s*(>=|<=)\s*([0-9.]+)\s*(%?)\s*(?:\*\s*(\S+))?\s*$")


def parse_target(text: str) -> Target:
    """Parse ``"accuracy>=0.97*gpt-4,cost<=40%*gpt-4"``; :class:`CalibrationError` when malformed."""
    constraints = []
    for part in text.split(","):
        match = _CONSTRAINT.match(part)
        if not match:
            raise CalibrationError(f"cannot read target {part.strip()!r}: expected METRIC OP VALUE[*MODEL], "
                                   "e.g. accuracy>=0.97*gpt-4 or cost<=2.5")
        metric, op, number, percent, model = match.groups()
        try:
            value = float(number) / (100 if percent else 1)
        except ValueError:
            raise CalibrationError(f"not a number in target: {number!r}") from None
        constraints.append(Constraint(metric, op, value, model))  # type: ignore[arg-type]
    return Target(tuple(constraints))


__all__ = ["Constraint", "Target", "parse_target"]
