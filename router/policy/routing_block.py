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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """When a rung is skipped or trusted (``None``: never by that test)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skip_below: float = Field(0.0, ge=0, le=1)
    skip_gap: float | None = Field(None, ge=0, le=1)
    trust_gap: float | None = Field(None, ge=0, le=1)

    def __str__(self) -> str:
        parts = [f"skip_below={self.skip_below:g}"] if self.skip_below else []
        parts += [f"skip_gap={self.skip_gap:g}"] if self.skip_gap is not None else []
        parts += [f"trust_gap={self.trust_gap:g}"] if self.trust_gap is not None else []
        return ", ".join(parts) or "no routing"


def _regex(value: str) -> str:
    """``value``, when it is a regular expression."""
    try:
        return re.compile(value).pattern
    except re.error as err:
        raise ValueError(f"not a regular expression: {err}") from err


class RungRules(Thresholds):
    """Thresholds for every rung, and ``rungs:`` replacing them for named catalog models."""

    rungs: Mapping[str, Thresholds] = Field(default_factory=dict)

    def thresholds(self, model: str) -> Thresholds:
        """The thresholds that apply to ``model``'s rung."""
        return self.rungs.get(model) or Thresholds(skip_below=self.skip_below, skip_gap=self.skip_gap,
                                                   trust_gap=self.trust_gap)


class TaskRules(RungRules):
    """``routing.tasks[i]``: rules for the prompts ``match`` finds (a regular expression searched
    in the prompt the estimates are made from); the first matching task applies."""

    name: str = Field(min_length=1)
    match: Annotated[str, Field(min_length=1), AfterValidator(_regex)]

    def matches(self, prompt: str) -> bool:
        return re.search(self.match, prompt) is not None


class RoutingBlock(RungRules):
    """``routing:``: the estimator artifact and the thresholds that act on its estimates;
    ``tasks:`` replaces them for the prompts of a kind (see :class:`TaskRules`)."""

    estimator: str = Field(min_length=1)
    tasks: tuple[TaskRules, ...] = ()
    # Catalog name -> the estimator's model name (default: the entry's ``model:``, else its name).
    models: Mapping[str, str] = Field(default_factory=dict)

    def rules_for(self, prompt: str) -> tuple[str | None, RungRules]:
        """The task ``prompt`` belongs to (``None``: none matched) and the rules that apply.

        Example:
            >>> block.rules_for("Write a python function to reverse a list.")[0]
            'mbpp'
        """
        task = next((t for t in self.tasks if t.matches(prompt)), None)
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


__all__ = ["RoutingBlock", "RungRules", "TaskRules", "Thresholds"]
