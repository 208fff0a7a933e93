"""How cheap any answer-based cascade could be on recorded outcomes: a bound for ``calibrate``.

A cascade that decides from the kind of prompt and from the answers it has bought (which models
agree with which, whose answer to take) is a decision tree: at each step it accepts one of the
answers so far, asks one more cheap model, or asks the final model and takes one of the answers
it then has. Every design :mod:`router.lab.calibrate_search` scores (rungs, agreement voters,
votes needed, the best-of fallback) is such a tree, and so is any other agreement, voting or
tie-break scheme over the same models, as long as it asks at most ``depth`` cheap models per
prompt; a design with ``answer_in`` gates is a tree that also sees the answers' values.

:func:`answer_bound` finds, *in-sample* on the recorded outcomes, the cheapest mix of such trees
(one per task, up to ``depth`` cheap models each, every leaf choosing the answer that was most
often right on the prompts that reached it) whose pooled accuracy reaches a given number of
correct answers: a Lagrangian dynamic programme over the trees (``correct - lam * cost``, solved
exactly per task, the same ``lam`` for all tasks), bisected on ``lam``, and the two trees around
the target mixed. A tree sees what a cascade of agreement checks sees of each answer: whom it agrees
with, whether it passed the base checks, whether one was extracted, whether the record exists; with
``values``, also which answer it is (``A``, ``B``..., what an ``answer_in`` gate looks at). Choosing every leaf
on the very prompts it is scored on makes this optimistic: no such cascade reaches the target more
cheaply on these prompts, and on new prompts it does worse. What the bound does not cover is a
decision from the prompt itself within a task (the ``routing:`` estimator's); ``router train``'s
per-task AUC says how much of that there is to have.

Example:
    >>> b = answer_bound(table, final="gpt-4", cheap=["mixtral-8x7b", "yi-34b"], needed=0.97 * 845,
    ...                  tasks=task_of_each_prompt)
    >>> f"{b.cost_ratio:.1%} of gpt-4 at {b.accuracy_ratio:.3f}x"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from router.lab.cascade_table import CalibrationError, OutcomeTable

_BISECTIONS = 40


class _Ratios:
    """Accuracy and cost as shares of the final model's alone (fields of the dataclasses below)."""

    correct: float
    cost: float
    reference_correct: float
    reference_cost: float

    @property
    def accuracy_ratio(self) -> float:
        return self.correct / self.reference_correct if self.reference_correct else 0.0

    @property
    def cost_ratio(self) -> float:
        return self.cost / self.reference_cost if self.reference_cost else 0.0


@dataclass(frozen=True)
class Replayed(_Ratios):
    """The bound's trees, fitted in hindsight on one share of prompts, run on another."""

    correct: float
    cost: float
    reference_correct: float    # the final model alone, same prompts
    reference_cost: float

    @property
    def ratios(self) -> str:
        return f"{self.accuracy_ratio:.3f}x, {self.cost_ratio:.1%}"

    def __str__(self) -> str:
        return f"{self.accuracy_ratio:.3f}x the final model's accuracy at {self.cost_ratio:.1%} of its cost"


@dataclass(frozen=True)
class Bound(_Ratios):
    """The cheapest in-sample mix of answer-based trees that reaches ``needed`` correct answers."""

    cost: float                 # USD on the table's prompts
    correct: float              # expected correct answers of the mix (>= needed when reachable)
    needed: float
    reference_cost: float       # the final model alone, same prompts
    reference_correct: float
    depth: int
    reachable: bool             # False: even the most accurate tree falls short
    final: str = "the final model"
    cost_cap: float | None = None   # USD: the target's own cost constraint on these prompts, if any
    values: bool = False            # the trees also saw which answer each model gave
    replayed: Replayed | None = None  # the same trees, as fitted, on other prompts

    @property
    def within_cap(self) -> bool:
        """Whether the target's cost constraint is at or above the bound (else no tree meets both)."""
        return self.reachable and (self.cost_cap is None or self.cost <= self.cost_cap + 1e-12)

    def __str__(self) -> str:
        if not self.reachable:
            return (f"no tree of up to {self.depth} cheap models reaches the target in-sample "
                    f"(best {self.accuracy_ratio:.3f}x {self.final}'s accuracy at {self.cost_ratio:.1%} of its cost)")
        seen = "answers and their values" if self.values else "answers"
        text = (f"{self.cost_ratio:.1%} of {self.final}'s cost at {self.accuracy_ratio:.3f}x its accuracy "
                f"(in-sample optimum of trees over up to {self.depth} cheap models' {seen}, per task, mixed)")
        return text + ("" if self.within_cap else f"; {self.cap_note}")

    def to_dict(self) -> dict[str, Any]:
        replayed = None if self.replayed is None else {"accuracy_ratio": round(self.replayed.accuracy_ratio, 6),
                                                       "cost_ratio": round(self.replayed.cost_ratio, 6)}
        return {"reachable": self.reachable, "cost_ratio": round(self.cost_ratio, 6),
                "accuracy_ratio": round(self.accuracy_ratio, 6), "depth": self.depth,
                "within_cost_cap": self.within_cap, "values": self.values, "held_out_replay": replayed}

    @property
    def cap_note(self) -> str:
        assert self.cost_cap is not None
        share = self.cost_cap / self.reference_cost if self.reference_cost else 0.0
        return (f"the target's cost cap (${self.cost_cap:.4f}, {share:.1%}) is below it: "
                "no cascade deciding from the answers meets both on these prompts")


@dataclass(frozen=True)
class _Value:
    value: float
    correct: float
    cost: float

    def __add__(self, other: _Value) -> _Value:
        return _Value(self.value + other.value, self.correct + other.correct, self.cost + other.cost)


_ZERO = _Value(0.0, 0.0, 0.0)


@dataclass
class _Node:
    """Prompts that reached one state of a tree (the same models asked, the same agreements),
    reduced to the sums every ``lam`` needs: built once, solved for many ``lam``."""

    accept: float | None                      # most correct answers of one model asked so far
    accept_model: int                         # ... and whose
    final_paid: float                         # asking the final model, then the best answer
    final_right: float
    final_pick: dict[int, int]                # per label of the final model's answer: whose answer to take
    asks: list[tuple[int, float, dict[int, _Node]]]  # per cheap model to ask: it, its cost, the states by label

    def solve(self, lam: float) -> _Value:
        return self._options(lam)[0]

    def choice(self, lam: float) -> tuple[str, int]:
        """What the best tree does here: ``("final", -1)``, ``("accept", model)`` or ``("ask", i)``
        (``asks[i]``)."""
        return self._options(lam)[1]

    def _options(self, lam: float) -> tuple[_Value, tuple[str, int]]:
        best, pick = _Value(self.final_right - lam * self.final_paid, self.final_right, self.final_paid), ("final", -1)
        if self.accept is not None and self.accept > best.value:
            best, pick = _Value(self.accept, self.accept, 0.0), ("accept", self.accept_model)
        for i, (_, paid, children) in enumerate(self.asks):
            total = _Value(-lam * paid, 0.0, paid)
            for child in children.values():
                total = total + child.solve(lam)
            if total.value > best.value:
                best, pick = total, ("ask", i)
        return best, pick


class _Answers:
    """What trees see of one task's prompts: each model's answers, verdicts, records and costs."""

    def __init__(self, table: OutcomeTable, columns: np.ndarray, final: int, codes: dict[str, int] | None) -> None:
        self.final = final
        self.correct = table.correct[:, columns].astype(float)
        self.cost = np.where(table.present[:, columns], table.cost[:, columns], 0.0)
        self.answer = table.answer[:, columns]
        self.value = _value_codes(table, columns, codes) if codes is not None else np.zeros(self.answer.shape, np.int64)
        self.present = table.present[:, columns]
        self.ok = table.base_ok[:, columns]
        self.n = len(columns)

    def split(self, rows: np.ndarray, asked: tuple[int, ...], model: int) -> dict[int, np.ndarray]:
        """``rows`` by what ``model``'s answer shows: the first of ``asked`` it agrees with (or
        none), whether it passed the base checks and (``values``) which answer it is; or that
        nothing was extracted; or no record."""
        n = len(asked) + 1
        mine = self.answer[model, rows]
        agrees = np.full(len(rows), len(asked))
        for k in reversed(range(len(asked))):
            agrees[(mine >= 0) & self.present[asked[k], rows] & (self.answer[asked[k], rows] == mine)] = k
        ok = self.ok[model, rows].astype(int)
        label = np.where(mine >= 0, agrees + n * ok + (2 * n + 3) * (1 + self.value[model, rows]), 2 * n + ok)
        label[~self.present[model, rows]] = 2 * n + 2
        return {int(k): rows[label == k] for k in np.unique(label)}

    def best(self, rows: np.ndarray, models: tuple[int, ...]) -> tuple[float, int]:
        """The most correct answers on ``rows`` of one of ``models``, and whose."""
        right = [float(self.correct[m, rows].sum()) for m in models]
        k = int(np.argmax(right))
        return right[k], models[k]


class _Tree:
    """Every state of every tree on one task's prompts (see :class:`_Node`)."""

    def __init__(self, answers: _Answers, cheap: Sequence[int], depth: int) -> None:
        self.answers, self.cheap, self.depth = answers, tuple(cheap), depth
        self.root = self._node(np.arange(answers.n), ())

    def solve(self, lam: float) -> _Value:
        return self.root.solve(lam)

    def replay(self, lam: float, other: _Answers) -> tuple[float, float]:
        """Correct answers and cost of this task's best tree at ``lam`` on ``other``'s prompts (a
        state the fitted prompts never reached asks the final model and takes its answer)."""
        return _replay(self.root, lam, other, np.arange(other.n), ())

    def _node(self, rows: np.ndarray, asked: tuple[int, ...]) -> _Node:
        a = self.answers
        picks = {label: a.best(part, (*asked, a.final)) for label, part in a.split(rows, asked, a.final).items()}
        asks = []
        if len(asked) < self.depth:
            for m in self.cheap:
                if m not in asked:
                    children = {label: self._node(part, (*asked, m)) for label, part in a.split(rows, asked, m).items()}
                    asks.append((m, float(a.cost[m, rows].sum()), children))
        accept, accept_model = a.best(rows, asked) if asked else (None, -1)
        return _Node(accept, accept_model, float(a.cost[a.final, rows].sum()), sum(r for r, _ in picks.values()),
                     {label: m for label, (_, m) in picks.items()}, asks)


def _replay(node: _Node, lam: float, a: _Answers, rows: np.ndarray, asked: tuple[int, ...]) -> tuple[float, float]:
    kind, arg = node.choice(lam)
    if kind == "accept":
        return float(a.correct[arg, rows].sum()), 0.0
    if kind == "final":
        right = sum(float(a.correct[node.final_pick.get(label, a.final), part].sum())
                    for label, part in a.split(rows, asked, a.final).items())
        return right, float(a.cost[a.final, rows].sum())
    model, _, children = node.asks[arg]
    right, cost = 0.0, float(a.cost[model, rows].sum())
    for label, part in a.split(rows, asked, model).items():
        child = children.get(label)
        if child is None:
            right, cost = right + float(a.correct[a.final, part].sum()), cost + float(a.cost[a.final, part].sum())
        else:
            r, c = _replay(child, lam, a, part, (*asked, model))
            right, cost = right + r, cost + c
    return right, cost


def _value_codes(table: OutcomeTable, columns: np.ndarray, codes: dict[str, int]) -> np.ndarray:
    """Each extracted answer as a small integer (``codes``, shared by every table compared), the
    same for the same answer across models."""
    if table.value is None:
        raise CalibrationError("a bound that sees answer values needs a table with them (build_table's)")
    values = table.value[:, columns]
    return np.array([[codes.setdefault(v, len(codes)) if v is not None else 0 for v in row] for row in values],
                    np.int64).reshape(values.shape)


def _groups(n: int, tasks: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"": np.arange(n)} if tasks is None else {str(t): np.flatnonzero(tasks == t) for t in np.unique(tasks)}


def answer_bound(table: OutcomeTable, *, final: str, cheap: Sequence[str], needed: float,
                 tasks: np.ndarray | None = None, depth: int = 3, values: bool = False,
                 replay: tuple[OutcomeTable, np.ndarray | None] | None = None) -> Bound:
    """The bound of the module doc. ``needed``: correct answers the mix must reach on the
    table's prompts; ``tasks``: each prompt's task (``None``: one task); ``depth``: at most this
    many cheap models asked per prompt before the final model; ``values``: the trees may also
    decide from which answer each model gave (a lower, looser bound: more leaves fit more noise).
    ``replay``: other prompts (a table of the same models, and their tasks) to run the bound's
    trees on as fitted, for :attr:`Bound.replayed` (how much of the bound is hindsight)."""
    if depth < 0:
        raise CalibrationError(f"depth must be >= 0, not {depth}")
    f = table.model_index(final)
    others = [table.model_index(m) for m in cheap if table.model_index(m) != f]
    codes: dict[str, int] | None = {} if values else None
    trees = {t: _Tree(_Answers(table, g, f, codes), others, depth) for t, g in _groups(table.n, tasks).items()}
    ref_correct = float(table.correct[f].sum())
    ref_cost = float(np.where(table.present[f], table.cost[f], 0.0).sum())
    result = partial(Bound, needed=needed, reference_cost=ref_cost, reference_correct=ref_correct, depth=depth,
                     final=final, values=values)

    def at(lam: float) -> _Value:
        total = _ZERO
        for tree in trees.values():
            total = total + tree.solve(lam)
        return total

    # lam = 0 buys the most accurate tree; a lam above any answer's worth per dollar the cheapest.
    rich = at(0.0)
    if rich.correct < needed - 1e-9:
        return result(rich.cost, rich.correct, reachable=False)
    lo, hi = 0.0, 1.0
    meets, short = rich, at(hi)
    while short.correct >= needed and hi < 1e12:
        lo, hi, meets = hi, hi * 4, short
        short = at(hi)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        value = at(mid)
        if value.correct >= needed:
            lo, meets = mid, value
        else:
            hi, short = mid, value
    single = short.correct >= needed or meets.correct <= short.correct
    share = 1.0 if single else (needed - short.correct) / (meets.correct - short.correct)  # on the richer trees
    replayed = None
    if replay is not None:
        replayed = _replayed(trees, replay, f, codes, [(lo, share)] + ([] if single else [(hi, 1 - share)]))
    if single:
        return result(meets.cost, meets.correct, reachable=True, replayed=replayed)
    return result(short.cost + share * (meets.cost - short.cost), needed, reachable=True, replayed=replayed)


def _replayed(trees: dict[str, _Tree], replay: tuple[OutcomeTable, np.ndarray | None], f: int,
              codes: dict[str, int] | None, mix: list[tuple[float, float]]) -> Replayed:
    """The trees at each ``(lam, weight)`` of ``mix`` on the replay prompts, weighted (a prompt of
    a task the trees were not fitted on is asked of the final model)."""
    table, tasks = replay
    correct = cost = 0.0
    for task, columns in _groups(table.n, tasks).items():
        answers = _Answers(table, columns, f, codes)
        tree = trees.get(task)
        if tree is None:
            correct, cost = correct + float(answers.correct[f].sum()), cost + float(answers.cost[f].sum())
            continue
        for lam, weight in mix:
            right, paid = tree.replay(lam, answers)
            correct, cost = correct + weight * right, cost + weight * paid
    return Replayed(correct, cost, float(table.correct[f].sum()),
                    float(np.where(table.present[f], table.cost[f], 0.0).sum()))


__all__ = ["Bound", "Replayed", "answer_bound"]
