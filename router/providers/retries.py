"""Retrying a failed network call: when, how long to wait, and what the record says.

The router performs a model's ``max_retries`` itself (the OpenAI and Gemini clients are built
with no retries of their own), so that a server's ``Retry-After`` is honoured only when it fits
the policy's bound (``breaker.max_retry_wait_s``): a longer wait escalates to the next rung at
once instead. Without ``Retry-After``, retries back off exponentially (0.5 s, 1 s, 2 s ... with
up to 25 % jitter, capped by the same bound). Timeouts, 5xx, refused or dropped connections and
429 are retried; a bad request, a bad key or a malformed reply is not.

Every decision about a retryable failure that had a choice (a retry was allowed, or the server
asked for a wait) becomes a :class:`RetryNote` in the attempt's record (``"retries"``).

Example:
    >>> note = plan_retry(spec, error, retries_done=0, max_wait_s=5.0)
    >>> note.action, note.wait_s, note.reason
    ('waited', 2.0, 'Retry-After')
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from router.errors import ProviderError

RETRYABLE = frozenset({"timeout", "server", "connection", "rate_limit"})
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


@dataclass(frozen=True)
class RetryNote:
    """What the router did after one failed try of an attempt."""

    error: str  # the failure's kind
    action: Literal["waited", "escalated"]  # waited wait_s, then retried; or gave up at once
    reason: str  # "Retry-After", "backoff", "Retry-After 30 s > max_retry_wait_s 5 s", ...
    wait_s: float = 0.0
    retry_after_s: float | None = None

    @property
    def retries(self) -> bool:
        return self.action == "waited"

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "action": self.action, "reason": self.reason,
                "wait_s": round(self.wait_s, 3), "retry_after_s": self.retry_after_s}


def plan_retry(max_retries: int, error: ProviderError | None, retries_done: int,
               max_wait_s: float) -> RetryNote | None:
    """Whether to retry after ``error`` (a note whose ``action`` is ``waited``), to escalate
    with a note saying why (``escalated``), or None: nothing to retry or to record."""
    if error is None or error.kind not in RETRYABLE:
        return None
    after = error.retry_after_s
    if retries_done >= max_retries:
        if after is None and retries_done == 0:
            return None  # no retry allowed and none asked for: escalate, as always
        why = f"max_retries {max_retries} used" if max_retries else "max_retries is 0"
        return RetryNote(error.kind, "escalated", why, retry_after_s=after)
    if after is not None:
        if after > max_wait_s:
            return RetryNote(error.kind, "escalated", f"Retry-After {after:g} s > max_retry_wait_s "
                             f"{max_wait_s:g} s", retry_after_s=after)
        return RetryNote(error.kind, "waited", "Retry-After", wait_s=after, retry_after_s=after)
    backoff = min(max_wait_s, MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** retries_done)
    return RetryNote(error.kind, "waited", "backoff", wait_s=backoff * random.uniform(0.75, 1.0))
