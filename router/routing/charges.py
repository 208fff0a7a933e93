"""What a model call's tries used, for :mod:`router.routing.caller`: one message from a stream,
whether a failed try may have been billed, and reporting usage to LangChain's usage handlers.

A failed try is charged at the usage it reported, else at its worst case (the provider may have
billed a timeout, a malformed reply, or a stream cut after the answer), unless it provably did
not run: the provider answered with an error status (429, 4xx, 5xx; not the timeouts 408 and
504, after which the model may have run), the client refused to send it, a replayed model has
no record for it (:data:`UNBILLED_KINDS`), or the client never connected (:data:`UNSENT`).

Example:
    >>> provably_unbilled(ProviderError("429", provider="openai", model="m", kind="rate_limit"), RuntimeError())
    True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import UsageMetadata

from router.errors import ProviderError
from router.providers.base import HTTPX_UNSENT
from router.routing.completeness import stream_end_metadata
from router.routing.model_call import CallOutcome
from router.routing.usage import token_count

#: Failures after which the provider billed nothing: it (or the client) refused the request.
UNBILLED_KINDS = frozenset({"rate_limit", "auth", "bad_request", "missing_record"})
#: Error statuses after which the model may still have run (a timeout on the way).
TIMEOUT_STATUSES = frozenset({408, 504})
#: The built-in HTTP providers' unsent exceptions (each adapter declares its own: ``unsent_exceptions``).
UNSENT = HTTPX_UNSENT


def provably_unbilled(error: ProviderError, exc: BaseException, unsent: frozenset[str] = UNSENT) -> bool:
    """True when the failed try cannot have been billed: refused, or never sent (``unsent``: the
    provider's client exceptions, by class name, raised before a request leaves)."""
    if error.kind in UNBILLED_KINDS:
        return True
    if error.status_code is not None and error.status_code >= 400:
        return error.status_code not in TIMEOUT_STATUSES
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if type(current).__name__ in unsent:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def merge_chunks(chunks: list[AIMessageChunk]) -> AIMessage:
    """One message from a stream's chunks (single-valued metadata: each key's last value)."""
    if not chunks:
        return AIMessage(content="")
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    data = total.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"})
    data["response_metadata"] = {**(data.get("response_metadata") or {}), **stream_end_metadata(chunks)}
    return AIMessage(**{k: v for k, v in data.items() if k in AIMessage.model_fields})


@runtime_checkable
class UsageSink(Protocol):
    """A callback handler that counts model calls' usage (see :mod:`router.langchain.callbacks`):
    told of each call once, under its catalog name, estimated when the provider sent none."""

    def count_call(self, model: str, usage: UsageMetadata) -> None: ...


def report_usage(callbacks: Any, model: str, outcome: CallOutcome) -> None:
    """Tell the :class:`UsageSink` handlers among ``callbacks`` (a child run's callback manager)
    what one try of catalog model ``model`` used: the provider's usage, else the router's count."""
    if not (outcome.input_tokens or outcome.output_tokens):
        return
    reported = outcome.message.usage_metadata if outcome.message is not None and not outcome.cost_estimated else None
    usage = UsageMetadata(input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
                          total_tokens=outcome.input_tokens + outcome.output_tokens)
    for key in ("input_token_details", "output_token_details"):  # the provider's breakdown, if counts
        details = (reported or {}).get(key)
        if isinstance(details, dict) and all(token_count(v) is not None for v in details.values()):
            usage[key] = details  # type: ignore[literal-required]
    for handler in getattr(callbacks, "handlers", None) or ():
        if isinstance(handler, UsageSink):
            handler.count_call(model, usage)
