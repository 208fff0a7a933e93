"""The outcome table behind ``router calibrate``: every model's answer to every prompt, once.

Each catalog model's recorded answer is reduced with the same extractor the agreement check
uses and judged by the same base checks the cascade runs; :func:`evaluate` then scores a whole
cascade design on all prompts with array arithmetic that mirrors
:func:`router.routing.cascade.run_cascade` step by step: rungs in order, checks in order with the first
failure stopping, agreement voters asked in order until the verdict is certain (as
:class:`router.checks.consulting.AgreementCheck` does), a missing record failing like a provider
error at no cost, and the best rejected attempt answering when every rung fails.

Example:
    >>> table = build_table(policy, dataset.records, base_checks=[], extract="choice")
    >>> scored = evaluate(table, Design((Rung("mistral-7b", ("mixtral-8x7b",)), Rung("gpt-4"))))
    >>> scored.accuracy, scored.cost
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.messages import AIMessage, HumanMessage

from router.checks.answer_in import AnswerInCheck
from router.checks.builtin import Answer, CheckSpec
from router.checks.consulting import ConsultingCheck
from router.checks.extractors import get_extractor
from router.errors import RouterError
from router.lab.datasets import Record
from router.policy.policy_file import Policy
from router.policy.routing_block import Thresholds
from router.providers.registry import replays_dataset


class CalibrationError(RouterError, ValueError):
    """Calibration cannot run: a bad target, no recorded models, a dataset that does not fit."""


def is_design_check(check: CheckSpec) -> bool:
    """Whether ``check`` is part of a cascade design the search chooses (an agreement or other
    consulting check, an ``answer_in`` gate) rather than a base check every answer must pass."""
    return isinstance(check, (ConsultingCheck, AnswerInCheck))


@dataclass
class OutcomeTable:
    """Per catalog model (rows) and prompt (columns): what the router would see."""

    models: tuple[str, ...]
    recorded: tuple[str, ...]
    present: np.ndarray
    answer: np.ndarray          # extracted answer as a per-prompt code; -1: nothing extracted
    correct: np.ndarray
    cost: np.ndarray
    base_passed: np.ndarray     # base checks passed before the first failure
    base_ok: np.ndarray
    n_base: int = 0             # how many base checks there are
    value: np.ndarray | None = None  # the extracted answers themselves (str or None), for answer_in gates

    @property
    def n(self) -> int:
        return int(self.present.shape[1])

    def model_index(self, name: str) -> int:
        if name in self.models:
            return self.models.index(name)
        if name in self.recorded:
            return self.recorded.index(name)
        raise CalibrationError(f"unknown model {name!r} in target; catalog: {', '.join(self.models)}")

    def take(self, columns: np.ndarray) -> OutcomeTable:
        return OutcomeTable(self.models, self.recorded, *(a[:, columns] for a in (
            self.present, self.answer, self.correct, self.cost, self.base_passed, self.base_ok)),
            n_base=self.n_base, value=self.value[:, columns] if self.value is not None else None)

    def value_in(self, model: int, values: Sequence[str]) -> np.ndarray:
        """Per prompt: whether ``model``'s extracted answer is one of ``values`` (an ``answer_in`` gate)."""
        if self.value is None:
            raise CalibrationError("this outcome table has no extracted answer values (answer_in gates need them)")
        wanted = set(values)
        return np.fromiter((v in wanted for v in self.value[model]), bool, self.n)


def build_table(policy: Policy, records: Sequence[Record], base_checks: Sequence[CheckSpec],
                extract: str) -> OutcomeTable:
    """Run the extractor and the base checks once over every recorded answer."""
    names = tuple(n for n, s in policy.models.items() if replays_dataset(s))
    if not names:
        raise CalibrationError("the policy has no recorded models (provider: recorded) to calibrate")
    recorded = tuple(policy.models[n].model or n for n in names)
    shape = (len(names), len(records))
    present, correct, ok = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    answer, passed = np.full(shape, -1, np.int32), np.zeros(shape, np.int16)
    values = np.full(shape, None, object)
    cost = np.zeros(shape)
    extractor = get_extractor(extract)
    for j, record in enumerate(records):
        codes: dict[str, int] = {}
        prompt = (HumanMessage(record.prompt),)
        for i, model in enumerate(recorded):
            outcome = record.outcomes.get(model)
            if outcome is None:
                continue
            present[i, j], correct[i, j], cost[i, j] = True, bool(outcome.correct), outcome.cost_usd
            value = extractor(outcome.response, record.prompt)
            if value is not None:
                answer[i, j] = codes.setdefault(value, len(codes))
                values[i, j] = value
            reply = Answer(model=names[i], text=outcome.response, message=AIMessage(outcome.response),
                           prompt=prompt)
            count = 0
            for check in base_checks:
                result = check.run(reply, None)
                if not result.passed:  # type: ignore[union-attr]
                    break
                count += 1
            passed[i, j], ok[i, j] = count, count == len(base_checks)
    return OutcomeTable(names, recorded, present, answer, correct, cost, passed, ok, len(base_checks), values)


# --------------------------------------------------------------------------- designs


@dataclass(frozen=True)
class Rung:
    """A cascade rung and, unless it is the last, the agreement check that guards it; ``accept``:
    the answers it may give (an ``answer_in`` gate; empty: any)."""

    model: str
    voters: tuple[str, ...] = ()
    min_agree: int | None = None
    accept: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = self.model + (f"={'|'.join(self.accept)}" if self.accept else "")
        if not self.voters:
            return head
        need = self.min_agree or len(self.voters)
        return f"{head}[{need}/{len(self.voters)} of {'+'.join(self.voters)}]"


@dataclass(frozen=True)
class Design:
    rungs: tuple[Rung, ...]

    def __str__(self) -> str:
        return " -> ".join(str(r) for r in self.rungs)


@dataclass
class Scored:
    design: Design
    accuracy: float
    cost: float
    correct: np.ndarray = field(repr=False)
    cost_each: np.ndarray = field(repr=False)
    accepted: tuple[int, ...] = ()  # prompts each rung accepted (a rung at 0 only adds cost)


@dataclass(frozen=True)
class RungRun:
    """One rung's verdict on every prompt, as if every prompt reached it (masked later)."""

    tried: np.ndarray       # the model has a record (else: an error, no cost, no checks)
    accepted: np.ndarray
    own: np.ndarray         # passed the checks that consult no model (what a trusted rung needs)
    score: np.ndarray       # checks passed, for the best-of fallback
    calls: tuple[tuple[int, np.ndarray], ...]  # (model, prompts it was paid to answer on) per call


RungCache = dict[tuple[Rung, int, int, int], RungRun]


@dataclass(frozen=True)
class RoutingMasks:
    """Per rung of a design and prompt: skipped, trusted (mirrors :func:`router.estimators.route.decide`)."""

    skip: np.ndarray
    trust: np.ndarray


def routing_masks(table: OutcomeTable, design: Design, p_correct: np.ndarray,
                  per_rung: Sequence[Thresholds]) -> RoutingMasks:
    """``p_correct``: estimates shaped like ``table.correct`` (catalog models x prompts);
    ``per_rung``: the thresholds of each rung of ``design``."""
    rows = np.array([table.model_index(r.model) for r in design.rungs])
    p = p_correct[rows]
    gap = p.max(axis=0) - p
    skip = np.zeros(p.shape, bool)
    trust = np.zeros(p.shape, bool)
    for k, rule in enumerate(per_rung[:-1]):  # the last candidate is always tried
        skip[k] = p[k] < rule.skip_below
        if rule.skip_gap is not None:
            skip[k] |= gap[k] > rule.skip_gap
        if rule.trust_gap is not None:
            trust[k] = ~skip[k] & (gap[k] <= rule.trust_gap)
    return RoutingMasks(skip, trust)


def run_rung(table: OutcomeTable, rung: Rung, position: int, gate: int = -1, gates: int = 0) -> RungRun:
    """``position``: the index of this rung's agreement check among the policy's; ``gate``: of
    its ``answer_in`` gate among the ``gates`` of the design. The policy lists base checks, then
    the gates, then the agreement checks (:func:`router.lab.task_designs.design_checks`); other
    rungs' checks pass with "not applied" and count as passed for the best-of fallback."""
    m = table.model_index(rung.model)
    tried = table.present[m]
    ok = tried & table.base_ok[m]
    score = table.base_passed[m].astype(int)
    if rung.accept:
        allowed = table.value_in(m, rung.accept)
        score = np.where(ok & ~allowed, table.n_base + gate, score)
        ok = ok & allowed
    if not rung.voters:
        return RungRun(tried, ok, ok, score, ((m, tried),))
    agreed, consulted = _agreement(table, m, rung, ok)
    return RungRun(tried, ok & agreed, ok, np.where(ok, table.n_base + gates + position, score),
                   ((m, tried), *consulted))


def _rung_runs(table: OutcomeTable, design: Design, cache: RungCache) -> list[RungRun]:
    """Each rung's verdicts, from ``cache`` when another design had the rung at the same check positions."""
    guarded = [k for k, r in enumerate(design.rungs) if r.voters]  # order of agreement checks
    gated = [k for k, r in enumerate(design.rungs) if r.accept]    # order of answer_in gates
    runs = []
    for rank, rung in enumerate(design.rungs):
        key = (rung, guarded.index(rank) if rung.voters else -1, gated.index(rank) if rung.accept else -1,
               len(gated))
        run = cache.get(key)
        if run is None:
            run = cache[key] = run_rung(table, rung, *key[1:])
        runs.append(run)
    return runs


def evaluate(table: OutcomeTable, design: Design, *, raise_on_exhausted: bool = False,
             cache: RungCache | None = None, routing: RoutingMasks | None = None) -> Scored:
    """Score ``design`` on every prompt of ``table``, exactly as the cascade would run it.
    ``cache`` keeps rung verdicts between calls (a search scores thousands of designs);
    ``routing`` skips and trusts rungs per prompt as a ``routing:`` block would."""
    return evaluate_many(table, [design], raise_on_exhausted=raise_on_exhausted, cache=cache,
                         routings=[routing])[0]


def evaluate_many(table: OutcomeTable, designs: Sequence[Design], *, raise_on_exhausted: bool = False,
                  cache: RungCache | None = None,
                  routings: Sequence[RoutingMasks | None] | None = None) -> list[Scored]:
    """:func:`evaluate` of each of ``designs`` (``routings``: each one's, or None), in order.
    Designs with as many rungs are scored together, as rows of one array per quantity: a search
    scores thousands of small designs, and one numpy call per rung and batch instead of per
    rung and design is most of its time.

    Example:
        >>> scored = evaluate_many(table, [Design((Rung(m), Rung("gpt-4"))) for m in cheap])
    """
    cache = {} if cache is None else cache
    masks = list(routings) if routings is not None else [None] * len(designs)
    out: list[Scored | None] = [None] * len(designs)
    by_size: dict[int, list[int]] = {}
    for i, design in enumerate(designs):
        by_size.setdefault(len(design.rungs), []).append(i)
    for rows in by_size.values():
        for start in range(0, len(rows), _BATCH):
            chunk = rows[start:start + _BATCH]
            scored = _evaluate_batch(table, [designs[i] for i in chunk], [masks[i] for i in chunk], cache,
                                     raise_on_exhausted)
            for i, s in zip(chunk, scored, strict=True):
                out[i] = s
    return out  # type: ignore[return-value]


def _rows(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)  # one design: a view, no copy


_BATCH = 512  # designs per batch: bounds the (designs x models x prompts) "paid" array


def _evaluate_batch(table: OutcomeTable, designs: Sequence[Design], masks: Sequence[RoutingMasks | None],
                    cache: RungCache, raise_on_exhausted: bool) -> list[Scored]:
    d, n = len(designs), table.n
    runs = [_rung_runs(table, design, cache) for design in designs]
    each = np.arange(d)
    nothing = np.zeros(n, bool)
    routed = any(m is not None for m in masks)
    open_ = np.ones((d, n), bool)
    spent = np.zeros((d, n))
    final = np.full((d, n), -1)
    best_score, best_model = np.full((d, n), -1), np.full((d, n), -1)
    paid = np.zeros((d, *table.present.shape), bool)
    counts = np.zeros((len(designs[0].rungs), d), int)
    for rank in range(len(designs[0].rungs)):
        here = [r[rank] for r in runs]
        m = np.array([table.model_index(design.rungs[rank].model) for design in designs])[:, None]
        accepted_if = _rows([r.accepted for r in here])
        live, verdict, trusted = open_, accepted_if, None
        if routed:
            live = open_ & ~_rows([x.skip[rank] if x is not None else nothing for x in masks])
            trusted = _rows([x.trust[rank] if x is not None else nothing for x in masks])
            verdict = np.where(trusted, _rows([r.own for r in here]), accepted_if)
        for i in range(max(len(r.calls) for r in here)):
            # A request pays once per model: a repeat (a voter that answered earlier, a rung a
            # voter already asked) is served from what it already bought, as the cascade does.
            model = np.array([r.calls[i][0] if i < len(r.calls) else 0 for r in here])
            asked = _rows([r.calls[i][1] if i < len(r.calls) else nothing for r in here])
            if i and trusted is not None:
                asked = asked & ~trusted  # a trusted rung consults nobody (not in place: rows may be cached)
            bought = live & asked
            had = paid[each, model]
            spent += table.cost[model] * (bought & ~had)  # adds exactly 0.0 where nothing new was bought
            paid[each, model] = had | bought
        accepted = live & verdict
        final = np.where(accepted, m, final)
        counts[rank] = np.count_nonzero(accepted, axis=1)
        score = _rows([r.score for r in here])
        better = live & _rows([r.tried for r in here]) & ~verdict & (score >= best_score)
        best_score, best_model = np.where(better, score, best_score), np.where(better, m, best_model)
        open_ &= ~accepted
    if not raise_on_exhausted:
        final = np.where((final < 0) & (best_model >= 0), best_model, final)
    right = (final >= 0) & table.correct[np.maximum(final, 0), np.arange(n)]
    hits = np.count_nonzero(right, axis=1).tolist()
    per_rung = counts.T.tolist()
    return [Scored(design, hits[k] / n if n else 0.0, float(spent[k].sum()), right[k], spent[k], tuple(per_rung[k]))
            for k, design in enumerate(designs)]


def _agreement(table: OutcomeTable, m: int, rung: Rung,
               ok: np.ndarray) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Mirror of :class:`router.checks.consulting.AgreementCheck` (voters asked in order, stopping
    once the verdict is certain; a failed consultation fails the check). Returns the verdict and,
    per voter, the prompts on which it was asked."""
    mine = table.answer[m]
    voters = [table.model_index(v) for v in rung.voters if v != rung.model]
    if not voters:
        return ok.copy(), []
    needed = min(rung.min_agree or len(voters), len(voters))
    live = ok & (mine >= 0)
    agreed = np.zeros(table.n, int)
    failed = np.zeros(table.n, bool)
    consulted: list[tuple[int, np.ndarray]] = []
    for i, v in enumerate(voters):
        failed |= live & ~table.present[v]
        asked = live & table.present[v]
        consulted.append((v, asked))
        agreed += asked & (table.answer[v] == mine)
        left = len(voters) - i - 1
        live = asked & ~((agreed >= needed) | (agreed + left < needed))
    return ok & (mine >= 0) & ~failed & (agreed >= needed), consulted


__all__ = ["CalibrationError", "Design", "OutcomeTable", "RoutingMasks", "Rung", "RungCache", "RungRun", "Scored",
           "build_table", "evaluate", "evaluate_many", "routing_masks", "run_rung"]
