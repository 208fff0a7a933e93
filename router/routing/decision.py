"""The decision record: what the router considered, tried, accepted and paid.

It is attached to every answer at ``message.response_metadata["routing"]`` (as a plain dict),
returned by :meth:`PolicyRouter.explain`, and printed by ``router ask/explain --json``.

Example:
    >>> record = router.explain("What is 2+2?")
    >>> record.candidates
    ['gemma-270m']
    >>> print(record.summary())
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from router.checks.builtin import CheckResult
from router.errors import DecisionMissingError
from router.routing.decision_html import decision_html

Status = Literal["accepted", "exhausted", "failed", "explained"]


@dataclass(frozen=True)
class Exclusion:
    model: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reason": self.reason}


@dataclass(frozen=True)
class Estimate:
    """A routing estimate for one candidate (``routing:`` in the policy) and what it led to:
    ``action`` is ``try``, ``trust`` (accepted on its own checks, no consulting), ``skip`` or
    ``last`` (the final candidate, never skipped); ``reason`` says why."""

    model: str
    p_correct: float
    cost_usd: float
    action: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "p_correct": round(self.p_correct, 4), "cost_usd": round(self.cost_usd, 8),
                "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class TaskRoute:
    """Which ``routing.tasks`` entry matched the prompt and, when it names its own, the cascade
    the request ran (``cascade``: None when the task's cascade did not apply; ``note`` says why)."""

    name: str
    cascade: tuple[str, ...] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cascade": list(self.cascade) if self.cascade is not None else None,
                "note": self.note}


@dataclass
class Attempt:
    """One call of one cascade rung, with its checks."""

    model: str
    provider: str
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_estimated: bool = False
    worst_case_usd: float = 0.0
    error: dict[str, Any] | None = None
    checks: list[CheckResult] = field(default_factory=list)
    accepted: bool = False
    mean_logprob: float | None = None
    reused: bool = False
    retries: list[dict[str, Any]] = field(default_factory=list)  # after each failed try: waited / escalated
    finish_reason: str | None = None  # stop / length / content_filter / tool_calls / unknown (None: no answer)
    truncated: bool = False  # cut off at the token limit, or a reply without its final marker
    overrun: str | None = None  # the provider reported more tokens than the worst case allowed for

    @property
    def total_cost_usd(self) -> float:
        """The attempt's own cost plus what its checks spent consulting other models."""
        return self.cost_usd + sum(c.cost_usd for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "latency_s": round(self.latency_s, 4),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 10),
            "cost_estimated": self.cost_estimated,
            "mean_logprob": self.mean_logprob,
            "error": self.error,
            "checks": [c.to_dict() for c in self.checks],
            "accepted": self.accepted,
            "reused": self.reused,
            "retries": list(self.retries),
            "finish_reason": self.finish_reason,
            "truncated": self.truncated,
            "overrun": self.overrun,
        }


@dataclass
class Decision:
    """The whole record of one routed request."""

    policy: str
    effective: dict[str, Any]
    candidates: list[str] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    final_model: str | None = None
    estimated_cost_usd: float = 0.0
    status: Status = "failed"
    rule: str | None = None
    estimator: str | None = None  # the routing estimator's digest (or "unavailable: ..."), when the policy routes
    estimates: list[Estimate] = field(default_factory=list)
    task: TaskRoute | None = None  # the routing task the prompt matched, when the policy routes by task

    @property
    def truncated(self) -> bool:
        """The returned answer was cut off. Kept for the record's shape: a cut-off answer is never
        returned, not even as ``exhausted``'s best (the request is ``failed`` instead), so this
        is False for every returned answer."""
        final = next((a for a in reversed(self.attempts) if a.model == self.final_model), None)
        return bool(final is not None and final.truncated)

    @property
    def total_cost_usd(self) -> float:
        return sum(a.total_cost_usd for a in self.attempts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy": self.policy,
            "effective": dict(self.effective),
            "candidates": list(self.candidates),
            "excluded": [e.to_dict() for e in self.excluded],
            "attempts": [a.to_dict() for a in self.attempts],
            "final_model": self.final_model,
            "total_cost_usd": round(self.total_cost_usd, 10),
            "estimated_cost_usd": round(self.estimated_cost_usd, 10),
            "status": self.status,
            "truncated": self.truncated,
        }
        if self.rule is not None:
            out["rule"] = self.rule
        if self.estimator is not None:
            out["estimator"] = self.estimator
            out["estimates"] = [e.to_dict() for e in self.estimates]
        if self.task is not None:
            out["task"] = self.task.to_dict()
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """A few readable lines for a terminal."""
        eff = self.effective
        lines = [
            f"policy {self.policy!r}: privacy={eff.get('privacy')} offline={eff.get('offline')} "
            f"tier>={eff.get('quality_tier')} ceiling=${eff.get('cost_ceiling')}"
            + (f" (rule {self.rule!r})" if self.rule else ""),
            f"candidates: {', '.join(self.candidates) or '(none)'}",
        ]
        lines += [f"  excluded {e.model}: {e.reason}" for e in self.excluded]
        if self.task is not None:
            lines.append(f"task {self.task.name!r}: " + (f"cascade {', '.join(self.task.cascade)}"
                                                          if self.task.cascade is not None else "policy cascade")
                         + (f" ({self.task.note})" if self.task.note else ""))
        if self.estimator is not None:
            lines.append(f"routing estimates ({self.estimator}):")
            lines += [f"  {e.model}: P(correct) {e.p_correct:.2f}, expected ${e.cost_usd:.6f} -> {e.action}: {e.reason}"
                      for e in self.estimates]
        for a in self.attempts:
            verdict = "accepted" if a.accepted else ("error" if a.error else "rejected")
            checks = ", ".join(
                f"{c.check}={'ok' if c.passed else 'FAIL'}" + (f"({c.score})" if c.score is not None else "")
                for c in a.checks)
            err = f" error: {a.error['kind']}" if a.error else ""
            err += " (truncated)" if a.truncated else ""
            err += f" overrun: {a.overrun}" if a.overrun else ""
            lines.append(f"  tried {a.model}: {verdict} in {a.latency_s:.2f}s, "
                         f"{a.input_tokens}+{a.output_tokens} tokens, ${a.total_cost_usd:.6f}"
                         f"{' (estimated)' if a.cost_estimated else ''}{err}"
                         + (f" [{checks}]" if checks else ""))
        lines.append(f"status: {self.status}; answered by {self.final_model or '(nobody)'}; "
                     f"cost ${self.total_cost_usd:.6f} (worst case ${self.estimated_cost_usd:.6f})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return decision_html(self)

    @classmethod
    def from_message(cls, message: Any) -> Decision:
        """The typed record on an answer: an ``AIMessage`` from ``invoke``, the chunks of a
        ``stream`` (a list, or their sum), its ``response_metadata`` dict, the record dict itself,
        or the JSON of ``router ask --json``.

        Raises :class:`~router.errors.DecisionMissingError` when there is no record.

        Example:
            >>> Decision.from_message(router.invoke("What is 2+2?")).final_model
            'gemma-270m'
        """
        if isinstance(message, list):
            found = [m for m in message if "routing" in (getattr(m, "response_metadata", None) or {})]
            message = found[-1] if found else None
        metadata = message if isinstance(message, dict) else getattr(message, "response_metadata", None)
        metadata = metadata or {}
        routing = metadata.get("routing", metadata if "attempts" in metadata else None)
        if not isinstance(routing, dict):
            raise DecisionMissingError(type(message).__name__)
        return decision_from_dict(routing)

    def __str__(self) -> str:
        return self.summary()


def decision_from_dict(data: dict[str, Any]) -> Decision:
    """Rebuild a :class:`Decision` from its JSON form (``response_metadata["routing"]``)."""
    attempts = []
    for a in data.get("attempts", []):
        checks = [CheckResult(c["check"], c["passed"], c.get("score"), c.get("detail"),
                              c.get("cost_usd", 0.0), c.get("calls", []), c.get("error"))
                  for c in a.get("checks", [])]
        attempts.append(Attempt(model=a["model"], provider=a.get("provider", "?"),
                                latency_s=a.get("latency_s", 0.0), input_tokens=a.get("input_tokens", 0),
                                output_tokens=a.get("output_tokens", 0), cost_usd=a.get("cost_usd", 0.0),
                                cost_estimated=a.get("cost_estimated", False), error=a.get("error"),
                                checks=checks, accepted=a.get("accepted", False),
                                mean_logprob=a.get("mean_logprob"), reused=a.get("reused", False),
                                finish_reason=a.get("finish_reason"), truncated=a.get("truncated", False),
                                overrun=a.get("overrun")))
    return Decision(policy=data["policy"], effective=data.get("effective", {}),
                    candidates=list(data.get("candidates", [])),
                    excluded=[Exclusion(e["model"], e["reason"]) for e in data.get("excluded", [])],
                    attempts=attempts, final_model=data.get("final_model"),
                    estimated_cost_usd=data.get("estimated_cost_usd", 0.0),
                    status=data.get("status", "failed"), rule=data.get("rule"),
                    estimator=data.get("estimator"),
                    estimates=[Estimate(**e) for e in data.get("estimates", [])],
                    task=_task_from_dict(data.get("task")))


def _task_from_dict(data: dict[str, Any] | None) -> TaskRoute | None:
    if not isinstance(data, dict):
        return None
    cascade = data.get("cascade")
    return TaskRoute(data["name"], tuple(cascade) if cascade is not None else None, data.get("note", ""))
