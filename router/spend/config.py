"""The ``budgets:`` and ``ledger:`` blocks of a policy file.

A budget caps what paid model calls may spend in a calendar period (UTC). With ``per:``, the
budget is kept separately for each distinct value of that key in the call's LangChain
``config["metadata"]`` (one budget per user, per tenant...). ``ledger:`` says where spending is
kept: ``sqlite:///path`` (the default, in the user state dir), ``redis://host:port/db`` or
``memory://``. A ``?ttl_s=N`` query parameter sets how long a reservation lives if its process
dies mid-call (default 600 s).

Example:
    >>> Budget(name="per-user", period="day", limit_usd=1.0, per="user").label({"user": "ann"})
    "per-user[user=ann]"
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlparse, urlunparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from router.policy.values import StrictNonNegativeFloat

Period = Literal["minute", "hour", "day", "month"]
LEDGER_SCHEMES = ("sqlite", "redis", "rediss", "memory")
LEDGER_OPTIONS = ("ttl_s", "prefix")
DEFAULT_TTL_S = 600.0


class Budget(BaseModel):
    """One entry of ``budgets:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[^\s\[\]|]+$")
    period: Period
    limit_usd: StrictNonNegativeFloat  # .inf is no limit: leave the budget out; true is no $1
    per: str | None = Field(None, min_length=1)

    def subject(self, metadata: Mapping[str, Any]) -> str | None:
        """The ``per:`` value this call is charged under; None for a budget without ``per:``.
        Raises ``KeyError`` when the call's metadata lacks the key."""
        if self.per is None:
            return None
        value = metadata[self.per]
        return value if isinstance(value, str) else str(value)

    def label(self, metadata: Mapping[str, Any] | None = None) -> str:
        """``daily``, or ``per-user[user=ann]`` for the budget kept for one value of ``per:``."""
        if self.per is None or metadata is None or self.per not in metadata:
            return self.name
        return f"{self.name}[{self.per}={self.subject(metadata)}]"


def redact(url: str) -> str:
    """The URL without its password (for messages, reprs and records)."""
    parsed = urlparse(url)
    userinfo, at, host = parsed.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    # Built from the netloc's text, never from ``.port``, which raises on a malformed port.
    return urlunparse(parsed._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))


class RedactedURL(str):
    """A URL (ledger, endpoint) whose repr hides the password (a policy's repr may be logged), and
    whose pickle carries it masked, as ``dumpd`` does: a pickled policy holds no secret (a
    router unpickled elsewhere cannot use that URL until its policy gives the password again).
    Copies in this process keep it."""

    def __repr__(self) -> str:
        return repr(redact(str(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (RedactedURL, (redact(str(self)),))

    def __copy__(self) -> RedactedURL:
        return self

    def __deepcopy__(self, memo: Any) -> RedactedURL:
        return self


def _check_ledger_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in LEDGER_SCHEMES:
        hint = difflib.get_close_matches(parsed.scheme, LEDGER_SCHEMES, n=1)
        raise ValueError("ledger must be sqlite:///path, redis://host:port/db or memory://"
                         + (f" (did you mean {hint[0]}://?)" if hint else ""))
    try:
        parsed.port  # noqa: B018 (urllib checks the port only when it is read)
    except ValueError:
        raise ValueError("the ledger's port must be a number from 0 to 65535") from None
    if parsed.scheme == "sqlite" and not parsed.path.strip("/"):
        raise ValueError("a sqlite ledger needs a path: sqlite:///path/to/ledger.db")
    for key, values in parse_qs(parsed.query, keep_blank_values=True).items():
        if key not in LEDGER_OPTIONS:
            raise ValueError(f"unknown ledger option {key!r}; options: {', '.join(LEDGER_OPTIONS)}")
        if key == "ttl_s":
            try:
                ok = 0 < float(values[-1]) < math.inf  # inf: a dead process's reservation never expires
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("ttl_s must be a number of seconds > 0")
    return RedactedURL(url)


LedgerURL = Annotated[str, AfterValidator(_check_ledger_url)]


def budget_problems(budgets: Sequence[Budget]) -> list[tuple[tuple[str | int, ...], str, str | None]]:
    """Problems across budgets (a name used twice), as ``(path, message, suggestion)``."""
    problems: list[tuple[tuple[str | int, ...], str, str | None]] = []
    seen: set[str] = set()
    for i, budget in enumerate(budgets):
        if budget.name in seen:
            problems.append((("budgets", i, "name"), f"budget name {budget.name!r} is used twice", None))
        seen.add(budget.name)
    return problems
