"""The exception tree.

Every error the router raises derives from :class:`RouterError`; each subclass carries the
context a caller needs to act on it (where in a policy file, which provider, what was decided
so far). No secret is ever part of an error message.

Example:
    >>> from router import PolicyError, load_policy
    >>> try:
    ...     load_policy("broken.yaml")
    ... except PolicyError as err:
    ...     print(err.issues[0].line, err.issues[0].key)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.routing.decision import Decision


class RouterError(Exception):
    """Base class of every error raised by this package."""


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file, located as precisely as the file allows."""

    message: str
    file: str = "<policy>"
    line: int = 0
    column: int = 0
    key: str = ""
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"{where}:{key} {self.message}{hint}"


class PolicyError(RouterError, ValueError):
    """A policy file (or a per-call override) is invalid.

    ``issues`` lists every problem found; ``file``, ``line``, ``column`` and ``key`` are those of
    the first one, for callers that handle one at a time.
    """

    def __init__(self, issues: list[PolicyIssue]) -> None:
        if not issues:
            raise ValueError("PolicyError needs at least one issue")
        self.issues = list(issues)
        first = self.issues[0]
        self.file, self.line, self.column, self.key = first.file, first.line, first.column, first.key
        self.suggestion = first.suggestion
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ProviderError(RouterError):
    """A model provider failed: timeout, rate limit, server error, refused connection, bad reply.

    ``kind`` is one of ``timeout``, ``rate_limit``, ``server``, ``connection``, ``malformed``,
    ``auth``, ``bad_request``, ``other``. ``decision`` is the record so far, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        kind: str = "other",
        status_code: int | None = None,
        retry_after_s: float | None = None,
        decision: Decision | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.kind = kind
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.decision = decision
        super().__init__(f"{provider} model {model!r} failed ({kind}): {message}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in an attempt's ``error`` field."""
        return {
            "type": type(self).__name__,
            "provider": self.provider,
            "kind": self.kind,
            "status_code": self.status_code,
            "retry_after_s": self.retry_after_s,
            "message": str(self),
        }


class RoutingError(RouterError):
    """No candidate produced an acceptable answer and the policy says ``on_exhausted: raise``,
    or no candidate was eligible at all. ``decision`` is the full record."""

    def __init__(self, message: str, decision: Decision) -> None:
        self.decision = decision
        super().__init__(message)


class ModelUnavailableError(RouterError):
    """A model cannot be used here (missing or unreadable weights, ...). Selection records the
    message as the model's exclusion reason instead of failing the request."""


class CheckError(RouterError):
    """A confidence check could not run (bad custom check, verifier unavailable...)."""


class DecisionMissingError(RouterError, LookupError):
    """An object holds no decision record (``response_metadata["routing"]``): it did not come
    from a PolicyRouter, or its metadata was dropped on the way. ``source`` names its type."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"no decision record on this {source} (expected response_metadata['routing'] "
                         "from a PolicyRouter answer)")
