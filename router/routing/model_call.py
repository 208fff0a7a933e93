"""The two records that pass between the cascade's logic and whoever performs model calls.

The cascade (and any check that consults other models) is written as a generator that yields
a :class:`ModelCall` and receives a :class:`CallOutcome`; a sync driver answers with
``invoke``/``stream``, an async driver with ``ainvoke``/``astream``. One body of logic, two
drivers: no duplicated sync/async code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage

from router.errors import ProviderError

if TYPE_CHECKING:
    from router.providers.retries import RetryNote


@dataclass(frozen=True)
class ModelCall:
    """A request to call catalog model ``model`` with ``messages``.

    ``purpose`` is ``answer`` for a cascade rung, or the name of the check that asked.
    ``settings`` are per-call generation overrides (``temperature``, ``max_tokens``, ``n``).
    ``room_usd`` is what was left of the ceiling when the call was allowed: its tries (retries
    included) are made only while their charges plus one more worst case fit in it.
    """

    model: str
    messages: tuple[BaseMessage, ...]
    purpose: str = "answer"
    settings: dict[str, Any] = field(default_factory=dict)
    worst_case_usd: float = 0.0
    room_usd: float = math.inf


@dataclass
class CallOutcome:
    """What came back from one :class:`ModelCall`."""

    model: str
    message: AIMessage | None = None
    error: ProviderError | None = None
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_estimated: bool = False
    worst_case_usd: float = 0.0  # reserved against the ceiling for all its tries (0: the call's)
    token_logprobs: tuple[float, ...] | None = None
    chunks: list[Any] = field(default_factory=list)
    skipped: str | None = None  # why the call was not made (ceiling, budget)
    reused: bool = False  # answered from an identical call this request already paid for
    retries: tuple[RetryNote, ...] = ()  # what was decided after each failed try
    overrun: str | None = None  # reported usage above the bound the worst case assumed
    shown: bool = False  # streamed live: the caller has seen (part of) this answer already

    @property
    def ok(self) -> bool:
        return self.message is not None and self.error is None and self.skipped is None
