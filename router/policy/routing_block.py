"""The ``routing:`` block of a policy: use learned per-prompt estimates around the cascade.

An estimator (``router train``) predicts, for each candidate model, the probability that its
answer to this prompt is correct and the call's expected cost. Before the cascade starts, the
router compares each candidate's P(correct) with the best candidate's:

- a rung (any but the last candidate) is **skipped** when its estimate is below ``skip_below``
  or more than ``skip_gap`` below the best candidate's: too little predicted value to pay for it
  and for its checks (skipping the first rungs is where the cascade starts);
- a rung within ``trust_gap`` of the best candidate is **trusted**: its answer is accepted on the
  checks that consult no other model (refusal, length, logprob...), without paying for
  agreement/verifier/self-consistency calls; otherwise every check runs as usual and decides.

Everything else still applies first: privacy, offline, tier floor, the ceiling (worst cases,
before every call), budgets. Routing only removes or trusts rungs among the candidates; a model
the estimator does not know is left as it is.

Example (YAML):

    routing:
      estimator: routed-routerbench.estimator.npz   # relative to the policy file
      skip_gap: 0.3                                 # every rung...
      rungs:
        gpt-3.5-turbo: {skip_gap: 0.2, trust_gap: 0.05}   # ...but this one
      tasks:                                        # first match replaces all of the above
      - {name: mbpp, match: 'function', rungs: {yi-34b: {skip_below: 1}, gpt-3.5-turbo: {trust_gap: 1}}}

``skip_below: 1`` skips a rung always and ``trust_gap: 1`` trusts it always, so a task can
start the cascade at a different rung than another.

A task may also run its **own cascade and checks** (``cascade:`` and ``confidence:``, validated
like ``policy:``'s: catalog models, each once, weaker to stronger tiers, checks by name):

      tasks:
      - name: mbpp
        match: '(?i)\\bpython\\b'
        cascade: [gpt-3.5-turbo, gpt-4]
        confidence: [{check: refusal}]
        rungs: {gpt-3.5-turbo: {trust_gap: 1}}

The task's cascade replaces the request's cascade before selection, so privacy, offline, the
tier floor, context windows and the ceiling exclude its models exactly as they would the
policy's (:func:`router.estimators.route.route`). It applies only while the request runs the
policy's own ``cascade``/``confidence``: a rule, ``configurable`` or ``--set`` that changes
either wins, and so does a pinned model; the decision record says which task matched and
whether its cascade ran.

A ``match`` pattern comes from the policy file, and a pattern such as ``^(a|aa)+$`` backtracks
exponentially (seconds for a 40-character prompt with Python's ``re``). Patterns are therefore
validated as Python regular expressions and run on the ``regex`` module's engine (a dependency
of tiktoken, so always installed; same syntax, and faster than ``re`` on these patterns) with a
timeout of :data:`MATCH_TIMEOUT_S` per search: a search that runs out of time counts as no
match for that entry (the next entry, or the block's own thresholds, apply), and the decision
record's ``task.note`` says so. The whole prompt is always searched: nothing is cut off.

``share: 0.4`` limits an entry to that share of its prompts, the same ones every time: those whose
:func:`prompt_share` (a hash of the prompt's text) is below it; the next entry that matches takes
the others. ``router calibrate --routing`` writes such a pair when sending part of a task's
prompts through a dearer design reaches the target for less than any single design per task.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import regex
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationInfo, field_validator

from router.checks import CheckSpec, build_check
from router.policy.values import StrictFiniteFloat

logger = logging.getLogger(__name__)

#: How long one ``routing.tasks[i].match`` search of one prompt may run (seconds): far above what
#: a plain pattern needs (the shipped ones: under 3 ms on a 100,000-character prompt), and a
#: bound on what a catastrophically backtracking one costs each request.
MATCH_TIMEOUT_S = 0.05
_warned: set[str] = set()


class Thresholds(BaseModel):
    """When a rung is skipped or trusted (``None``: never by that test)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skip_below: StrictFiniteFloat = Field(0.0, ge=0, le=1)
    skip_gap: StrictFiniteFloat | None = Field(None, ge=0, le=1)
    trust_gap: StrictFiniteFloat | None = Field(None, ge=0, le=1)

    def __str__(self) -> str:
        parts = [f"skip_below={self.skip_below:g}"] if self.skip_below else []
        parts += [f"skip_gap={self.skip_gap:g}"] if self.skip_gap is not None else []
        parts += [f"trust_gap={self.trust_gap:g}"] if self.trust_gap is not None else []
        return ", ".join(parts) or "no routing"


def _regex(value: str) -> str:
    """``value``, when it is a Python regular expression the matching engine also accepts."""
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"not a regular expression: {err}") from None
    try:
        _compiled(value)
    except regex.error as err:
        raise ValueError(f"not supported by the matcher (the regex module): {err}") from None
    return value


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


class MatchTimeoutError(Exception):
    """A ``match`` search ran out of :data:`MATCH_TIMEOUT_S` (treated as no match)."""


class RungRules(Thresholds):
    """Thresholds for every rung, and ``rungs:`` replacing them for named catalog models."""

    rungs: Mapping[str, Thresholds] = Field(default_factory=dict)

    def thresholds(self, model: str) -> Thresholds:
        """The thresholds that apply to ``model``'s rung."""
        return self.rungs.get(model) or Thresholds(skip_below=self.skip_below, skip_gap=self.skip_gap,
                                                   trust_gap=self.trust_gap)


def prompt_share(text: str) -> float:
    """Where ``text`` falls in [0, 1): a hash of it with whitespace runs collapsed, so the same
    prompt always falls in the same place (``routing.tasks[i].share``).

    Example:
        >>> 0 <= prompt_share("Write a python function to reverse a list.") < 1
        True
    """
    digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TaskRules(RungRules):
    """``routing.tasks[i]``: rules for the prompts ``match`` finds (a regular expression searched
    in the prompt the estimates are made from) and, with ``share``, only for that share of them
    (:func:`prompt_share`); the first matching task applies."""

    name: str = Field(min_length=1)
    match: Annotated[str, Field(min_length=1), AfterValidator(_regex)]
    share: StrictFiniteFloat | None = Field(None, gt=0, lt=1)
    # This task's own cascade and checks (None: the request's); see the module doc.
    cascade: tuple[StrictStr, ...] | None = Field(None, min_length=1)
    confidence: tuple[Any, ...] | None = None

    @field_validator("confidence", mode="after")
    @classmethod
    def _checks(cls, entries: tuple[Any, ...] | None, info: ValidationInfo) -> tuple[Any, ...] | None:
        # As PolicySettings.confidence: the loader reports bad entries with locations first.
        if entries is None:
            return None
        allow_code = bool((info.context or {}).get("allow_code"))
        return tuple(e if isinstance(e, CheckSpec) else build_check(e, allow_code=allow_code) for e in entries)

    @property
    def designs(self) -> bool:
        """Whether this task names its own cascade or checks."""
        return self.cascade is not None or self.confidence is not None

    def matches(self, prompt: str) -> bool:
        """Whether this entry takes ``prompt``; :class:`MatchTimeoutError` when ``match`` could
        not decide within :data:`MATCH_TIMEOUT_S`."""
        try:
            found = _compiled(self.match).search(prompt, timeout=MATCH_TIMEOUT_S) is not None
        except TimeoutError:
            if self.match not in _warned:  # once per pattern: a prompt cannot flood the log
                _warned.add(self.match)
                logger.warning("routing task %r: match %r ran out of %g s; counted as no match",
                               self.name, self.match[:80], MATCH_TIMEOUT_S)
            raise MatchTimeoutError(self.name) from None
        return found and (self.share is None or prompt_share(prompt) < self.share)


@dataclass(frozen=True)
class TaskMatch:
    """The ``routing.tasks`` entry a prompt belongs to (None: none) and the entries before it
    whose ``match`` ran out of time (counted as no match)."""

    task: TaskRules | None
    timed_out: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        """For the decision record: which entries could not be matched in time."""
        if not self.timed_out:
            return ""
        names = ", ".join(repr(n) for n in self.timed_out)
        return f"match of task {names} ran out of {MATCH_TIMEOUT_S:g} s: counted as no match"


class RoutingBlock(RungRules):
    """``routing:``: the estimator artifact and the thresholds that act on its estimates;
    ``tasks:`` replaces them for the prompts of a kind (see :class:`TaskRules`)."""

    estimator: str = Field(min_length=1)
    tasks: tuple[TaskRules, ...] = ()
    # Catalog name -> the estimator's model name (default: the entry's ``model:``, else its name).
    models: Mapping[str, str] = Field(default_factory=dict)

    def task_for(self, prompt: str) -> TaskRules | None:
        """The first task whose ``match`` finds something in ``prompt`` (None: no task)."""
        return self.match_task(prompt).task

    def match_task(self, prompt: str) -> TaskMatch:
        """The first task that takes ``prompt``, and the entries skipped because their search
        ran out of time."""
        timed_out: list[str] = []
        for task in self.tasks:
            try:
                if task.matches(prompt):
                    return TaskMatch(task, tuple(timed_out))
            except MatchTimeoutError:
                timed_out.append(task.name)
        return TaskMatch(None, tuple(timed_out))

    def rules_for(self, prompt: str) -> tuple[str | None, RungRules]:
        """The task ``prompt`` belongs to (``None``: none matched) and the rules that apply.

        Example:
            >>> block.rules_for("Write a python function to reverse a list.")[0]
            'mbpp'
        """
        task = self.task_for(prompt)
        return (task.name, task) if task is not None else (None, self)

    def estimator_path(self, policy_source: str) -> Path:
        """The artifact's path: as written when absolute, else beside the policy file (the
        working directory for a policy not read from a file)."""
        path = Path(self.estimator).expanduser()
        if path.is_absolute():
            return path
        source = Path(policy_source)
        base = source.parent if policy_source and not policy_source.startswith("<") else Path.cwd()
        return base / path


def routing_allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``path`` (inside ``routing:``) may hold, for "did you mean"."""
    shapes: dict[tuple[str, ...], type[BaseModel]] = {
        ("routing",): RoutingBlock, ("routing", "rungs", "*"): Thresholds, ("routing", "tasks", "*"): TaskRules,
        ("routing", "tasks", "*", "rungs", "*"): Thresholds}
    generic = tuple("*" if isinstance(p, int) or (i > 0 and path[i - 1] == "rungs") else str(p)
                    for i, p in enumerate(path))
    model = shapes.get(generic)
    return [f.alias or k for k, f in model.model_fields.items()] if model else []


def task_settings_blocks(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], Any]]:
    """``(path, confidence entries)`` of every ``routing.tasks[i].confidence`` in raw policy
    data, for the loader to validate with locations like ``policy.confidence``."""
    routing = data.get("routing")
    tasks = routing.get("tasks") if isinstance(routing, Mapping) else None
    return [(("routing", "tasks", i, "confidence"), task.get("confidence"))
            for i, task in enumerate(tasks if isinstance(tasks, list) else ()) if isinstance(task, Mapping)]


def task_blocks(block: RoutingBlock | None) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """``(path, {"cascade": ..., "confidence": [...]})`` of every task that names its own, for the
    loader's semantic checks (catalog models, tier order), as for ``policy:`` and rules."""
    out: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
    for i, task in enumerate(block.tasks if block is not None else ()):
        entry: dict[str, Any] = {}
        if task.cascade is not None:
            entry["cascade"] = task.cascade
        if task.confidence is not None:
            entry["confidence"] = [c.model_dump() for c in task.confidence]
        if entry:
            out.append((("routing", "tasks", i), entry))
    return out


def routing_problems(block: RoutingBlock | None,
                     models: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str, str | None]]:
    """``(path, message, did-you-mean)`` for every ``rungs:`` key (of the block or a task) and
    ``models:`` key that is not a catalog model: a misspelt rung would silently get no thresholds."""
    if block is None:
        return []
    named: list[tuple[tuple[str | int, ...], str]] = [(("routing", "rungs", m), m) for m in block.rungs]
    named += [(("routing", "models", m), m) for m in block.models]
    named += [(("routing", "tasks", i, "rungs", m), m) for i, t in enumerate(block.tasks) for m in t.rungs]
    out: list[tuple[tuple[str | int, ...], str, str | None]] = []
    for path, model in named:
        if model not in models:
            close = difflib.get_close_matches(model, list(models), n=1, cutoff=0.6)
            out.append((path, f"{model!r} is not in models:", close[0] if close else None))
    return out


__all__ = ["MATCH_TIMEOUT_S", "MatchTimeoutError", "RoutingBlock", "RungRules", "TaskMatch", "TaskRules",
           "Thresholds", "prompt_share", "routing_allowed_keys",
           "routing_problems", "task_blocks", "task_settings_blocks"]
