"""The ``breaker:`` block of a policy file: when a failing network model is set aside, for how
long, and how long a retry may wait for a server's ``Retry-After``.

Every key has a default, so a policy without the block gets a breaker that opens after 3
timeouts, 5xx replies or failed connections within 60 s, excludes the model for 30 s, then lets
one probe request through. See :mod:`router.providers.breaker`.

Example:
    >>> BreakerSettings(failures=5, cooldown_s=10).window_s
    60.0
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from router.policy.values import StrictBool, StrictNonNegativeFloat, StrictPositiveFloat, StrictPositiveInt

FailureKind = Literal["timeout", "server", "connection", "rate_limit", "malformed"]


class BreakerSettings(BaseModel):
    """``breaker:`` (one block for the policy's network models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = True
    failures: StrictPositiveInt = 3  # this many failures of ``kinds`` ...
    window_s: StrictPositiveFloat = 60.0  # ... within this many seconds open the breaker
    cooldown_s: StrictPositiveFloat = 30.0  # then the model is excluded this long, then probed
    kinds: tuple[FailureKind, ...] = ("timeout", "server", "connection")
    max_retry_wait_s: StrictNonNegativeFloat = 5.0  # a retry waits for a Retry-After up to this, else escalates
