"""The scope a private request runs in: no tracing library records anything inside it.

Filtering a request's callbacks (:func:`router.langchain.tracing.private_config`) cannot catch
what joins later: OpenTelemetry instrumentors (``openinference-instrumentation-langchain``) add
their tracer to every ``CallbackManager`` LangChain builds, after any filter ran; LangSmith's
``@traceable`` code (a custom check, a tool) traces through its own context, not callbacks.
:func:`private_scope` turns each off at its source for the code run inside it:

- OpenTelemetry's *suppress instrumentation* context key (the one every instrumentor honours,
  ``opentelemetry.instrumentation.utils.suppress_instrumentation`` sets it): an OpenInference
  tracer starts and ends no span while it is set;
- LangSmith's ``tracing_context(enabled=False)``: ``@traceable`` and ``RunTree`` post nothing;
- LangChain's ``tracing_v2_enabled()`` context: no ``LangChainTracer`` is added from it.

Limits: an instrumentor that ignores the OpenTelemetry key, or a handler that sends data
elsewhere without being a tracer (see :func:`router.langchain.tracing.is_remote_tracer`) is not
stopped by the scope; the callback filter's default deny covers tracers, a package list and
handlers marked ``router_remote_tracer``.

Example:
    >>> with private_scope():
    ...     chain.invoke({"q": "the merger memo"})   # no span, no LangSmith post
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

try:  # without opentelemetry-api installed, no instrumentor can be either
    from opentelemetry import context as otel_context
except ImportError:  # pragma: no cover
    otel_context = None  # type: ignore[assignment]

#: OpenTelemetry's key: the one ``opentelemetry.instrumentation.utils.suppress_instrumentation()``
#: sets and instrumentors read (``opentelemetry.context`` exports no public name for it).
_SUPPRESS_KEY = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)

PRIVATE: ContextVar[bool] = ContextVar("policy_router_private_scope", default=False)


@contextlib.contextmanager
def private_scope() -> Iterator[None]:
    """Run the block with OpenTelemetry instrumentation suppressed and LangSmith and LangChain
    tracing off (see the module docstring); :func:`in_private_scope` is true inside it."""
    from langchain_core.tracers.context import tracing_v2_callback_var
    from langsmith.run_helpers import tracing_context

    token = otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True)) if _SUPPRESS_KEY else None
    private = PRIVATE.set(True)
    tracer = tracing_v2_callback_var.set(None)
    try:
        with tracing_context(enabled=False):
            yield
    finally:
        tracing_v2_callback_var.reset(tracer)
        PRIVATE.reset(private)
        if token is not None:
            otel_context.detach(token)


def in_private_scope() -> bool:
    """Whether the current context is inside :func:`private_scope`."""
    return PRIVATE.get() and (_SUPPRESS_KEY is None or bool(otel_context.get_value(_SUPPRESS_KEY)))


def call_in_scope(private: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, inside :func:`private_scope` when ``private``."""
    if not private:
        return fn(*args, **kwargs)
    with private_scope():
        return fn(*args, **kwargs)


async def await_in_scope(private: bool, awaitable: Any) -> Any:
    """``await awaitable``, inside :func:`private_scope` when ``private``."""
    if not private:
        return await awaitable
    with private_scope():
        return await awaitable


__all__ = ["PRIVATE", "await_in_scope", "call_in_scope", "in_private_scope", "private_scope"]
