"""Selection: for one request and its effective policy, which models may answer, in what order.

An input larger than the policy's ``max_input_bytes`` (UTF-8 bytes of everything a call would
send) is an :class:`~router.errors.InputTooLargeError` before anything is counted. Otherwise
every model of the cascade is either a candidate or excluded with a reason, checked in this
order (the first that applies is recorded):

1. ``not local: privacy`` / ``not local: offline`` — never looks further at a network model;
2. ``below tier floor``;
3. ``unavailable: ...`` / ``no credentials: ...`` (no GGUF, no API key);
   ``cooling down: ...`` (its circuit breaker is open, see :mod:`router.providers.breaker`);
4. ``no tool support`` when tools are bound;
5. ``context window``: input tokens (the bound tools' schemas included) + max_output_tokens
   over the model's window;
6. ``over ceiling``: worst-case cost over what is left of the ceiling.

Example:
    >>> sel = select_candidates(catalog, settings, [HumanMessage("hi")])
    >>> sel.candidates, [e.reason for e in sel.excluded]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage

from router.errors import InputTooLargeError, ModelUnavailableError
from router.policy.policy_file import PolicySettings
from router.providers.breaker import cooling_down
from router.routing.catalog import Catalog
from router.routing.decision import Exclusion
from router.routing.tokens import input_bytes


@dataclass
class Selection:
    candidates: list[str] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    input_tokens: dict[str, int] = field(default_factory=dict)
    worst_case_usd: dict[str, float] = field(default_factory=dict)
    pinned: str | None = None  # the request named this one candidate (``model=...``)


def format_usd(value: float) -> str:
    return f"${value:.6f}"


def select_candidates(catalog: Catalog, settings: PolicySettings, messages: Sequence[BaseMessage],
                      *, spent_usd: float = 0.0, needs_tools: bool = False,
                      tools: Sequence[dict[str, Any]] = ()) -> Selection:
    """``tools``: the bound tools (OpenAI format), sent with every rung's call, so counted in its
    input tokens; ``needs_tools`` (implied by ``tools``) excludes models without tool support."""
    size = input_bytes(messages, tools)
    if size > settings.max_input_bytes:  # before any count: token counting is the costly part
        raise InputTooLargeError(size, settings.max_input_bytes)
    policy = catalog.policy
    needs_tools = needs_tools or bool(tools)
    floor = policy.tier_rank(settings.quality_tier)
    selection = Selection()
    for name in settings.cascade:
        spec = catalog.spec(name)
        reason: str | None = None
        if not spec.local and settings.local_only:
            reason = "not local: privacy" if settings.privacy else "not local: offline"
        elif policy.tier_rank(spec.tier) < floor:
            reason = f"below tier floor: {spec.tier} < {settings.quality_tier}"
        else:
            reason = catalog.unavailable_reason(name) or cooling_down(catalog, name)
        if reason is None and needs_tools and not catalog.adapter(name).supports_tools:
            reason = "no tool support"
        if reason is None:
            try:
                tokens = catalog.count_tokens(name, messages, tools)
            except ModelUnavailableError as err:
                selection.excluded.append(Exclusion(name, f"unavailable: {err}"))
                continue
            selection.input_tokens[name] = tokens
            window = spec.context_window
            if window is not None and tokens + settings.max_output_tokens > window:
                reason = (f"context window: {tokens} input + {settings.max_output_tokens} output "
                          f"tokens > {window}")
            else:
                worst = spec.worst_case_usd(tokens, settings.max_output_tokens)
                selection.worst_case_usd[name] = worst
                left = settings.cost_ceiling - spent_usd
                if worst > left:
                    reason = f"over ceiling: worst case {format_usd(worst)} > {format_usd(left)} left"
        if reason is None:
            selection.candidates.append(name)
        else:
            selection.excluded.append(Exclusion(name, reason))
    return selection
