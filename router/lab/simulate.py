"""Simulate a policy on recorded outcomes: what would it have cost, how often would it be right?

Every prompt of the dataset goes through the real :class:`~router.langchain.policy_router.PolicyRouter` (the
same selection, cascade and checks as in production); every recorded model of the policy
answers from the dataset given here, whatever its own ``dataset:`` says. An answer is correct
when the answering model's recorded ``correct`` flag for that prompt is true. An answer from a
model that is not recorded (a local llama.cpp rung, say), or with no label, is compared with the
record's ``gold`` answer through an extractor (``gold_extract``: ``text`` by default, or
``choice``, ``number``, ``code``); with no gold either it counts as wrong and is reported as
``unscored``.
A request that raises :class:`~router.errors.RoutingError` counts as wrong, at the cost of the
attempts it made. Period budgets (``budgets:``, ``ledger:``) are left out: a simulation never
touches the spend ledger.

Beside the policy, the report scores every single model of the dataset (a missing outcome
counts as wrong, at no cost) and the oracle: the cheapest correct model for each prompt (when
no model is right, the cheapest model's cost and a wrong answer).

Example:
    >>> report = simulate("policies/cascade-routerbench.yaml", "data/routerbench-sample/arc_challenge.jsonl")
    >>> print(report)                      # a table; report.to_dict() is what --json prints
    >>> report.accuracy, report.cost_usd
"""

from __future__ import annotations

import html
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from router.checks.extractors import Extractor, get_extractor
from router.errors import RoutingError
from router.lab.datasets import Dataset, DatasetError, Record, load_dataset, load_dataset_if_known, register_dataset
from router.langchain.policy_router import PolicyRouter
from router.policy.policy_file import Policy, load_policy
from router.providers.registry import replays_dataset
from router.routing.tokens import message_text


@dataclass(frozen=True)
class Score:
    """Accuracy and total cost of one way of answering the same prompts: ``correct`` of ``n``
    right (``missing``: prompts it has no recorded answer for, counted wrong)."""

    cost_usd: float
    correct: int = 0
    n: int = 0
    missing: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        counts = {"correct": self.correct, "missing": self.missing}
        return {"accuracy": round(self.accuracy, 6), "cost_usd": round(self.cost_usd, 8)} | counts


@dataclass
class RungStats:
    """How one cascade rung fared: attempted, passed its checks, gave the final answer."""

    model: str
    attempted: int = 0
    accepted: int = 0
    answered: int = 0
    errors: int = 0

    @property
    def escalation_rate(self) -> float:
        """Share of this rung's attempts that did not pass (the cascade moved on, or gave up)."""
        return (self.attempted - self.accepted) / self.attempted if self.attempted else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"attempted": self.attempted, "accepted": self.accepted, "answered": self.answered,
                "errors": self.errors, "escalation_rate": round(self.escalation_rate, 6)}


@dataclass(frozen=True)
class SimulatedRow:
    """One prompt's fate under the policy."""

    record_id: str
    final_model: str | None
    correct: bool | None
    cost_usd: float
    attempts: tuple[str, ...]
    status: str


@dataclass
class SimulationReport:
    """The outcome of :func:`simulate`. ``str()`` is a table, ``to_dict()`` the ``--json`` form."""

    policy: str
    dataset: str
    n: int
    accuracy: float
    cost_usd: float
    escalation_rate: float
    per_rung: dict[str, RungStats]
    baselines: dict[str, Score]
    oracle: Score
    statuses: dict[str, int] = field(default_factory=dict)
    unscored: int = 0
    wall_s: float = 0.0
    rows: list[SimulatedRow] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (f"SimulationReport(policy={self.policy!r}, n={self.n}, accuracy={self.accuracy:.4f}, "
                f"cost_usd={self.cost_usd:.6f}, escalation_rate={self.escalation_rate:.4f})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "dataset": self.dataset,
            "n": self.n,
            "accuracy": round(self.accuracy, 6),
            "cost_usd": round(self.cost_usd, 8),
            "escalation_rate": round(self.escalation_rate, 6),
            "per_rung": {m: s.to_dict() for m, s in self.per_rung.items()},
            "baselines": {m: s.to_dict() for m, s in self.baselines.items()},
            "oracle": self.oracle.to_dict(),
            "statuses": dict(self.statuses),
            "unscored": self.unscored,
            "wall_s": round(self.wall_s, 3),
        }

    def _table(self) -> list[tuple[str, str, str, str]]:
        best = max(self.baselines.items(), key=lambda kv: (kv[1].accuracy, -kv[1].cost_usd), default=None)
        ref = best[1].cost_usd if best else 0.0
        share = (lambda c: f"{c / ref:6.1%}") if ref else (lambda c: "")
        rows = [(f"policy {self.policy!r}", f"{self.accuracy:.3f}", f"${self.cost_usd:.4f}", share(self.cost_usd)),
                ("oracle", f"{self.oracle.accuracy:.3f}", f"${self.oracle.cost_usd:.4f}", share(self.oracle.cost_usd))]
        for model, s in sorted(self.baselines.items(), key=lambda kv: -kv[1].accuracy):
            rows.append((model + (f" ({s.missing} missing)" if s.missing else ""), f"{s.accuracy:.3f}",
                         f"${s.cost_usd:.4f}", share(s.cost_usd)))
        return rows

    def __str__(self) -> str:
        best = max(self.baselines, key=lambda m: (self.baselines[m].accuracy, -self.baselines[m].cost_usd),
                   default=None)
        lines = [f"simulate {self.policy!r} on {os.path.basename(self.dataset)}: n={self.n}, "
                 f"escalation rate {self.escalation_rate:.3f}, {self.wall_s:.1f}s",
                 f"{'':44} {'accuracy':>8} {'cost':>10} {'share':>7}"]
        lines += [f"{name[:44]:44} {acc:>8} {cost:>10} {share:>7}" for name, acc, cost, share in self._table()]
        if best is not None:
            lines.append(f"(share: cost relative to the most accurate single model, {best})")
        lines.append(f"{'per rung':32} {'attempted':>9} {'accepted':>9} {'answered':>9} {'errors':>7} "
                     f"{'escalation':>10}")
        lines += [f"  {m[:30]:30} {s.attempted:>9} {s.accepted:>9} {s.answered:>9} {s.errors:>7} "
                  f"{s.escalation_rate:>10.3f}" for m, s in self.per_rung.items()]
        extra = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        lines.append(f"statuses: {extra}" + (f"; unscored answers: {self.unscored}" if self.unscored else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{html.escape(n)}</td><td>{a}</td><td>{c}</td><td>{s}</td></tr>"
                       for n, a, c, s in self._table())
        rungs = "".join(f"<tr><td>{html.escape(m)}</td><td>{s.attempted}</td><td>{s.accepted}</td>"
                        f"<td>{s.answered}</td><td>{s.errors}</td><td>{s.escalation_rate:.3f}</td></tr>"
                        for m, s in self.per_rung.items())
        return (f"<div><b>{html.escape(self.policy)}</b> on {html.escape(os.path.basename(self.dataset))}: "
                f"n={self.n}, escalation rate {self.escalation_rate:.3f}"
                f"<table><tr><th></th><th>accuracy</th><th>cost</th><th>vs best model</th></tr>{body}</table>"
                "<table><tr><th>rung</th><th>attempted</th><th>accepted</th><th>answered</th>"
                f"<th>errors</th><th>escalation</th></tr>{rungs}</table></div>")


# --------------------------------------------------------------------------- binding


def bind_dataset(policy: Policy, dataset: Dataset) -> Policy:
    """A copy of ``policy`` whose recorded models all answer from ``dataset``, without period
    budgets: a what-if must neither write to the real spend ledger nor be stopped by it."""
    if load_dataset_if_known(dataset.name) is not dataset:
        register_dataset(dataset)
    models = {name: (spec.model_copy(update={"dataset": dataset.name}) if replays_dataset(spec) else spec)
              for name, spec in policy.models.items()}
    return policy.model_copy(update={"models": MappingProxyType(models), "budgets": (), "ledger": None})


def _check_recorded(policy: Policy, dataset: Dataset) -> None:
    """A recorded model of the cascade that the dataset never saw is a mistake, not a model that
    is merely unavailable: say so before running anything."""
    tasks = policy.routing.tasks if policy.routing is not None else ()
    cascades = [*policy.policy.cascade, *(m for t in tasks for m in t.cascade or ())]  # and each task's own
    unknown = sorted({spec.model or name for name in cascades
                      if replays_dataset(spec := policy.models[name])
                      and (spec.model or name) not in dataset.models})
    if unknown:
        raise DatasetError(f"models of the policy's cascade not recorded in this dataset: "
                           f"{', '.join(unknown)} (it has: {', '.join(dataset.models)})", dataset.name)


def _as_policy(policy: str | os.PathLike[str] | Policy | PolicyRouter) -> tuple[Policy, PolicyRouter | None]:
    if isinstance(policy, PolicyRouter):
        return policy.policy, policy
    if isinstance(policy, Policy):
        return policy, None
    return load_policy(policy), None


# --------------------------------------------------------------------------- scoring


def score_model(records: Iterable[Record], model: str) -> Score:
    """One model answering every prompt (a missing outcome: wrong, free)."""
    correct = missing = n = 0
    cost = 0.0
    for record in records:
        n += 1
        outcome = record.outcomes.get(model)
        if outcome is None:
            missing += 1
            continue
        correct += bool(outcome.correct)
        cost += outcome.cost_usd
    return Score(cost, correct, n, missing)


def score_oracle(records: Iterable[Record], models: Iterable[str] | None = None) -> Score:
    """The cheapest correct model per prompt; when none is right, the cheapest model, wrong."""
    wanted = set(models) if models is not None else None
    correct = n = 0
    cost = 0.0
    for record in records:
        n += 1
        outcomes = [o for m, o in record.outcomes.items() if wanted is None or m in wanted]
        right = [o.cost_usd for o in outcomes if o.correct]
        if right:
            correct += 1
            cost += min(right)
        elif outcomes:
            cost += min(o.cost_usd for o in outcomes)
    return Score(cost, correct, n)


def _in_jupyter() -> bool:
    return "ipykernel" in sys.modules


def _progress_wanted(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return _in_jupyter() or bool(getattr(sys.stderr, "isatty", lambda: False)())


def _progress_bar(records: Sequence[Record], desc: str) -> Iterable[Record]:
    # tqdm.auto picks the Jupyter widget; without ipywidgets it would warn and fall back to
    # the text bar, so go straight to the text bar then.
    if _in_jupyter() and importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(records, desc=desc, unit="prompt")


def simulate(policy: str | os.PathLike[str] | Policy | PolicyRouter,
             dataset: str | os.PathLike[str] | Dataset, *, limit: int | None = None,
             progress: bool | None = None, config: Mapping[str, Any] | None = None,
             gold_extract: str = "text") -> SimulationReport:
    """Run the first ``limit`` prompts of ``dataset`` (all by default) through the policy.

    ``policy`` is a policy file, a loaded :class:`Policy` or a :class:`PolicyRouter` (its bound
    tools are kept). ``progress``: a tqdm bar; by default only on a terminal or in Jupyter.
    Raises :class:`DatasetError` when the dataset cannot be read or does not record a recorded
    model of the policy's cascade.
    ``config`` is passed to every ``invoke`` (``configurable`` overrides, tags, metadata).
    ``gold_extract`` names the extractor that compares an unrecorded answer with ``gold``.
    """
    judge = get_extractor(gold_extract)
    data = load_dataset(dataset)
    loaded, router = _as_policy(policy)
    _check_recorded(loaded, data)
    bound = bind_dataset(loaded, data)
    router = PolicyRouter(policy=bound, tools=router.tools if router else (),
                          tool_choice=router.tool_choice if router else None)
    records = data.records[:limit] if limit is not None else data.records
    per_rung = {name: RungStats(name) for name in bound.policy.cascade}
    rows: list[SimulatedRow] = []
    statuses: dict[str, int] = {}
    iterator: Iterable[Record] = records
    if _progress_wanted(progress):
        iterator = _progress_bar(records, f"simulate {bound.name}")
    started = time.perf_counter()
    for record in iterator:
        rows.append(_run_one(router, bound, record, per_rung, statuses, config, judge))
    wall = time.perf_counter() - started
    n = len(rows)
    correct = sum(bool(r.correct) for r in rows)
    return SimulationReport(
        policy=bound.name, dataset=data.name, n=n,
        accuracy=correct / n if n else 0.0,
        cost_usd=sum(r.cost_usd for r in rows),
        escalation_rate=sum(len(r.attempts) > 1 for r in rows) / n if n else 0.0,
        per_rung=per_rung,
        baselines={m: score_model(records, m) for m in data.models},
        oracle=score_oracle(records),
        statuses=statuses,
        unscored=sum(r.correct is None and r.final_model is not None for r in rows),
        wall_s=wall, rows=rows)


def _run_one(router: PolicyRouter, policy: Policy, record: Record, per_rung: dict[str, RungStats],
             statuses: dict[str, int], config: Mapping[str, Any] | None, judge: Extractor) -> SimulatedRow:
    answer: str | None = None
    try:
        message = router.invoke(record.prompt, config=dict(config) if config else None)
    except RoutingError as err:
        routing = err.decision.to_dict()
    else:
        routing = message.response_metadata["routing"]
        answer = message_text(message)
    attempts = routing["attempts"]
    for attempt in attempts:
        stats = per_rung.setdefault(attempt["model"], RungStats(attempt["model"]))
        stats.attempted += 1
        stats.accepted += bool(attempt["accepted"])
        stats.errors += attempt["error"] is not None
    final = routing["final_model"] if routing["status"] in ("accepted", "exhausted") else None
    correct: bool | None = False
    if final is not None:
        per_rung.setdefault(final, RungStats(final)).answered += 1
        spec = policy.models[final]
        outcome = record.outcomes.get(spec.model or final) if replays_dataset(spec) else None
        correct = outcome.correct if outcome is not None else None
        if correct is None and record.gold is not None and answer is not None:
            mine = judge(answer, record.prompt)
            correct = mine is not None and mine == judge(record.gold, record.prompt)
    statuses[routing["status"]] = statuses.get(routing["status"], 0) + 1
    return SimulatedRow(record.id, final, correct, float(routing["total_cost_usd"]),
                        tuple(a["model"] for a in attempts), routing["status"])


__all__ = ["RungStats", "Score", "SimulatedRow", "SimulationReport", "bind_dataset", "score_model",
           "score_oracle", "simulate"]
