"""Usage a provider reports, checked before it is priced: a figure is a token count or it is not
believed.

A provider's usage (OpenAI's ``usage``, Gemini's ``usage_metadata``, a recorded model's cost) is
data from outside: a negative count would credit the request's ceiling and the budgets, ``NaN``
or ``1e30`` would break the arithmetic that settles the charge. :func:`read_usage` accepts a
figure only when it is a finite, non-negative whole number no larger than
:data:`MAX_CREDIBLE_TOKENS` (more than any model's context window and output limit); anything
else is :class:`Incredible`, which the caller charges as an overrun at the call's worst case
(never less, and no further paid call follows).

Example:
    >>> read_usage({"input_tokens": 12, "output_tokens": 3})
    (12, 3)
    >>> read_usage({"input_tokens": -5, "output_tokens": 3})
    Incredible(reason='reported input_tokens -5 is not a token count')
    >>> read_usage(None) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

#: The largest token count a provider may credibly report for one call (10 million).
MAX_CREDIBLE_TOKENS = 10_000_000


@dataclass(frozen=True)
class Incredible:
    """Reported usage that cannot be a call's usage: ``reason`` says which figure and why."""

    reason: str


def token_count(value: Any) -> int | None:
    """``value`` as a token count, or None when it is not one (negative, fractional, not finite,
    above :data:`MAX_CREDIBLE_TOKENS`, a bool or not a number)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > MAX_CREDIBLE_TOKENS or number != int(number):
        return None
    return int(number)


def read_usage(usage: Mapping[str, Any] | None) -> tuple[int, int] | Incredible | None:
    """The ``(input, output)`` tokens of reported ``usage``; None when none was reported (no
    mapping, or both figures missing or zero); :class:`Incredible` when a figure is not a count."""
    if not usage or not isinstance(usage, Mapping):
        return None
    raw_in, raw_out = usage.get("input_tokens"), usage.get("output_tokens")
    if not raw_in and not raw_out:
        return None
    figures = []
    for key, raw in (("input_tokens", raw_in), ("output_tokens", raw_out)):
        count = 0 if raw is None else token_count(raw)
        if count is None:
            return Incredible(f"reported {key} {_show(raw)} is not a token count")
        figures.append(count)
    return figures[0], figures[1]


def credible_cost(cost: Any) -> float | None:
    """A provider's own cost figure as USD, or None when it is not one (negative, not finite)."""
    if isinstance(cost, bool) or not isinstance(cost, Real):
        return None
    number = float(cost)
    return number if math.isfinite(number) and number >= 0 else None


def _show(value: Any) -> str:
    return repr(value)[:40]
