"""``token_logprob``: a per-token confidence statistic over the tokens the model *chose*.

The mean log-probability (``logprob``) does not separate right from wrong answers of small
local models (on the project's labeled set, ``data/labeled/``, right and wrong answers have
overlapping means). Two statistics that do better:

- ``statistic: min`` — the least likely content token: one guessed token (a wrong capital, a
  wrong digit) is enough to fail;
- ``statistic: first`` — the first content token's log-probability: how sure the model was of
  the answer's opening word (for short factual answers, the answer itself).

Only *chosen* tokens count. Whitespace-only tokens (the trailing newline a base model emits)
say nothing about the answer. Under a grammar (a forced tool call, structured output) the JSON
syntax, the keys and a single tool's name are forced: the sampled token's logprob over the
full vocabulary scores the constraint, not the model (``bind_tools([get_weather],
tool_choice="any")`` answered ``get_weather(city="Paris")`` correctly at a mean of -3.0). For
an answer with tool calls only the tokens inside the arguments' *values* are scored.
(A provider that reported the logprob renormalised over the grammar-allowed tokens would let
forced tokens score ~0 by themselves; llama.cpp's answer carries only each sampled token's
logprob over the full vocabulary, no ``top_logprobs``.)

Example:
    >>> from router.checks import build_check, Answer
    >>> check = build_check({"check": "token_logprob", "statistic": "min", "min_logprob": -2.0})
    >>> check.run(Answer.from_text("Paris", logprobs=[-0.1, -0.3]), None).passed
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, StrictFloat

from router.checks.builtin import Answer, CheckContext, CheckResult, CheckSpec, register_check


def token_items(answer: Answer) -> list[tuple[str, float]]:
    """``(token text, logprob)`` of each generated token; text is ``""`` when the provider gave
    only the numbers."""
    content = (answer.message.response_metadata.get("logprobs") or {}).get("content") or []
    items = [(str(i.get("token", "")), float(i["logprob"])) for i in content if i.get("logprob") is not None]
    if items:
        return items
    return [("", lp) for lp in answer.token_logprobs or ()]


def _values(args: Any) -> Iterator[str]:
    """The leaf values of a tool call's arguments, as they appear in the generated JSON."""
    if isinstance(args, dict):
        for value in args.values():
            yield from _values(value)
    elif isinstance(args, list):
        for value in args:
            yield from _values(value)
    elif isinstance(args, str):
        yield json.dumps(args, ensure_ascii=False)[1:-1]
    else:
        yield json.dumps(args)


def _value_spans(text: str, calls: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for call in calls:
        for value in _values(call.get("args") or {}):
            if not value:
                continue
            at = text.find(value, start)
            if at < 0:
                at = text.find(value)
            if at >= 0:
                spans.append((at, at + len(value)))
                start = at + len(value)
    return spans


def chosen_logprobs(answer: Answer) -> list[float]:
    """Logprobs of the tokens the model chose: no whitespace-only tokens, and for a tool call
    only the tokens overlapping an argument value (the rest was forced by the grammar)."""
    items = token_items(answer)
    calls = list(answer.message.tool_calls or ())
    if calls and all(text for text, _ in items):
        generated = "".join(text for text, _ in items)
        spans = _value_spans(generated, calls)
        chosen, pos = [], 0
        for text, lp in items:
            end = pos + len(text)
            if any(pos < b and a < end for a, b in spans):
                chosen.append(lp)
            pos = end
        return chosen
    return [lp for text, lp in items if not text or text.strip()]


@register_check("token_logprob")
class TokenLogprobCheck(CheckSpec):
    """The chosen tokens' ``statistic`` (``min``, ``first`` or ``mean``) must be at least
    ``min_logprob``. No logprobs from the provider: passes with a note unless
    ``when_missing: fail``; logprobs but no chosen token (an empty answer): fails.
    ``apply_to: [model, ...]`` limits it to those rungs (a threshold calibrated on small local
    models says nothing of a network model's long answers); elsewhere it passes."""

    uses_logprobs: ClassVar[bool] = True
    statistic: Literal["min", "first", "mean"] = "min"
    min_logprob: StrictFloat = Field(-2.0, le=0, allow_inf_nan=False)
    when_missing: Literal["pass", "fail"] = "pass"
    apply_to: tuple[str, ...] = ()

    def run(self, answer: Answer, ctx: CheckContext | None) -> CheckResult:
        if self.apply_to and answer.model not in self.apply_to:
            return CheckResult(self.check, True, None, f"not applied to {answer.model}")
        if not token_items(answer):
            return CheckResult(self.check, self.when_missing == "pass", None, "no logprobs from this model")
        chosen = chosen_logprobs(answer)
        if not chosen:
            return CheckResult(self.check, False, None, "no chosen token to score")
        value = {"min": min(chosen), "first": chosen[0], "mean": sum(chosen) / len(chosen)}[self.statistic]
        return CheckResult(self.check, value >= self.min_logprob, round(value, 4),
                           f"{self.statistic} of {len(chosen)} chosen tokens")


__all__ = ["TokenLogprobCheck", "chosen_logprobs", "token_items"]
