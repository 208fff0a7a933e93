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


class _Unchained:
    """An error that never shows a chained exception.

    Client exceptions can carry what a server echoed back (a key, a prompt), so errors that
    wrap them keep a scrubbed summary instead: ``raise ... from exc``, ``err.__cause__ = exc``
    or raising inside an ``except`` block leave ``__cause__`` and ``__context__`` reading
    ``None``, which is what ``traceback.format_exception``, loggers and pytest print.
    """

    @property  # type: ignore[misc]
    def __cause__(self) -> None:
        return None

    @__cause__.setter
    def __cause__(self, value: BaseException | None) -> None:
        if value is not None and not getattr(self, "client_exception", None):
            self.client_exception = f"{type(value).__module__}.{type(value).__qualname__}"

    @property  # type: ignore[misc]
    def __context__(self) -> None:
        return None

    @__context__.setter
    def __context__(self, value: BaseException | None) -> None:
        return None


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


class PolicyError(_Unchained, RouterError, ValueError):
    """A policy file (or a per-call override) is invalid. Never chained: the validation error
    underneath may hold the rejected value (a key pasted in the wrong place).

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


class ProviderError(_Unchained, RouterError):
    """A model provider failed: timeout, rate limit, server error, refused connection, bad reply.

    ``kind`` is one of ``timeout``, ``rate_limit``, ``server``, ``connection``, ``malformed``,
    ``auth``, ``bad_request``, ``other``. ``decision`` is the record so far, when known.
    The message is the client's, scrubbed of secrets; ``client_exception`` names the client
    exception's class (the exception itself is not chained: see ``_Unchained``).
    """

    client_exception: str | None = None

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
        client_exception: str | None = None,
    ) -> None:
        self.client_exception = client_exception
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


class RoutingError(_Unchained, RouterError):
    """No candidate produced an acceptable answer and the policy says ``on_exhausted: raise``,
    or no candidate was eligible at all. ``decision`` is the full record (each attempt's error
    included, scrubbed); ``last_error`` is the last attempt's :class:`ProviderError`, if any.
    Nothing is chained (``__cause__`` is None)."""

    def __init__(self, message: str, decision: Decision, *, last_error: ProviderError | None = None) -> None:
        self.decision = decision
        self.last_error = last_error
        super().__init__(message)


class PolicyBypassError(RouterError, PermissionError):
    """A model other than the policy's router was about to be called where only the router may
    answer (a middleware below ``PolicyMiddleware`` swapped the agent's model). Raised before
    the model sends anything; ``model`` names the refused model's type."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"refused to call {model}: under PolicyMiddleware only the PolicyRouter answers a model "
                         "call (a middleware below it swapped the model; put model-swapping middlewares above "
                         "PolicyMiddleware, or make the policy's cascade hold the fallback)")


class CodeNotAllowedError(RouterError, ValueError):
    """A policy names Python code (``check: "module:function"``) and the caller did not allow code."""


class ModelUnavailableError(RouterError):
    """A model cannot be used here (missing or unreadable weights, ...). Selection records the
    message as the model's exclusion reason instead of failing the request."""


class UnboundedContentError(ModelUnavailableError, ValueError):
    """A message holds content (an image, audio, a file) whose tokens this router cannot bound
    for ``provider``: the model is excluded rather than called at an unknown cost."""

    def __init__(self, provider: str, message_index: int, content_type: str) -> None:
        self.provider, self.message_index, self.content_type = provider, message_index, content_type
        super().__init__(f"cannot bound the tokens of {content_type!r} content (message {message_index}) "
                         f"for {provider}; send text only")


class UnencodableInputError(ModelUnavailableError, ValueError):
    """A message's text is not valid Unicode (a lone surrogate): no model can be sent it."""

    def __init__(self, message_index: int, position: int, fragment: str) -> None:
        self.message_index, self.position = message_index, position
        super().__init__(f"message {message_index} is not valid Unicode at character {position} "
                         f"({fragment}: a lone surrogate)")


class InputError(RouterError, TypeError, ValueError):
    """The input is not something a chat model accepts (``None``, a number...): nothing was
    planned or called. ``received`` names its type. A TypeError, and a ValueError as
    langchain-core's chat models raise for the same input."""

    def __init__(self, received: str) -> None:
        self.received = received
        super().__init__(f"PolicyRouter input must be a str, PromptValue or messages, got {received}")


class InputTooLargeError(InputError):
    """The request's input (its messages' text and other content, tool calls, the bound tools'
    schemas) holds more UTF-8 bytes than the policy's ``max_input_bytes``: refused before
    selection counts its tokens and before any model is called."""

    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit, self.received = size, limit, f"{size} bytes"
        Exception.__init__(self, f"input of {size} bytes is over the policy's max_input_bytes ({limit}); "
                                 "raise policy.max_input_bytes to allow it")


class CheckError(RouterError):
    """A confidence check could not run (bad custom check, verifier unavailable...)."""


class DecisionMissingError(RouterError, LookupError):
    """An object holds no decision record (``response_metadata["routing"]``): it did not come
    from a PolicyRouter, or its metadata was dropped on the way. ``source`` names its type."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__(f"no decision record on this {source} (expected response_metadata['routing'] "
                         "from a PolicyRouter answer)")
