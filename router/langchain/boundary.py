"""The privacy boundary around a chain: a private request's whole run tree stays on this machine.

The router keeps its own run and its children private, but the runs *above* it (the chain's, the
prompt template's) start before the router is called, with your prompt as their input, under
whatever tracers the chain was given or the environment adds. :class:`PolicyBoundary` (also
``router.guard(chain)``) decides privacy from the request's config — ``configurable``
overrides, ``metadata`` and ``tags`` through the policy's ``rules`` — *before* the chain starts,
and runs a private request's whole chain with remote tracers replaced by a
:class:`~router.langchain.tracing.RedactedTracer` and inside
:func:`~router.langchain.privacy_scope.private_scope` (OpenTelemetry instrumentation
suppressed, LangSmith and LangChain environment tracing off). A request that is not private runs
the chain unchanged.

Outside a boundary, a private request whose enclosing run is traced by a remote tracer fails
closed: the router raises :class:`PrivateRunTracedError` before any model is called (so no
answer reaches the tracer). What the enclosing runs received before the router was reached (the
chain's input) is out of the router's hands: that is what the boundary is for.

Example:
    >>> chain = router.guard(ChatPromptTemplate.from_template("Summarise: {doc}") | router)
    >>> chain.invoke({"doc": memo}, config={"configurable": {"privacy": True}})
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config

from router.errors import RouterError
from router.langchain.privacy_scope import call_in_scope, in_private_scope, private_scope
from router.langchain.tracing import handlers_of, honours_suppression, is_remote_tracer, local_only, private_config
from router.policy.policy_file import Policy


class PrivateRunTracedError(RouterError, PermissionError):
    """A private request reached the router inside a chain whose runs a remote tracer records.

    Raised before any model is called. Wrap the chain: ``router.guard(chain)`` (or
    ``PolicyBoundary(chain, router)``) decides privacy before the chain starts
    and keeps every run of it private."""


class CacheNotAllowedError(RouterError, TypeError):
    """``PolicyRouter(cache=...)`` was given a cache. The router never reads or writes LangChain's
    LLM cache (its own nor the global ``set_llm_cache()`` one): an answer is only valid under the
    policy of the request that got it, and a private request's text must not be stored."""


def refuse_cache(cache: Any) -> None:
    """Raise :class:`CacheNotAllowedError` unless ``cache`` is ``False`` or ``None``."""
    if cache is not None and cache is not False:
        raise CacheNotAllowedError(
            f"PolicyRouter does not use LangChain's LLM cache (got cache={cache!r}): a cached answer was given "
            "under another request's policy, and a private request must not be stored. Leave cache unset; "
            "the global set_llm_cache() cache is not used by the router nor the models it calls either.")


def leaking_handlers(config: RunnableConfig) -> list[str]:
    """The remote tracers recording the run that encloses a call made with ``config`` (an
    enclosing run's child manager), except those silenced by the current private scope; and
    LangSmith's, when the call is made inside a ``@traceable`` function's run."""
    from langsmith.run_helpers import get_current_run_tree
    from langsmith.utils import tracing_is_enabled

    found = ["langsmith @traceable run"] if get_current_run_tree() is not None and tracing_is_enabled() is True else []
    callbacks = config.get("callbacks")
    if not isinstance(callbacks, BaseCallbackManager) or callbacks.parent_run_id is None:
        return found
    scoped = in_private_scope()
    return sorted({type(h).__name__ for h in handlers_of(callbacks)
                   if is_remote_tracer(h) and not (scoped and honours_suppression(h))}) + found


def refuse_traced_enclosing_run(config: RunnableConfig) -> None:
    """Raise :class:`PrivateRunTracedError` when a private request's enclosing run is recorded by
    a remote tracer (see :func:`leaking_handlers`)."""
    leaking = leaking_handlers(config)
    if leaking:
        raise PrivateRunTracedError(
            f"a private request runs inside a chain traced by {', '.join(leaking)}; no model was called. "
            "Wrap the chain so its runs stay private too: router.guard(chain) or "
            "PolicyBoundary(chain, router)")


class PolicyBoundary(Runnable[Any, Any]):
    """``bound``, with every run of a private request (the policy's effective ``privacy`` or
    ``offline: true``) kept from remote tracers and instrumentors (module docstring)."""

    def __init__(self, bound: Runnable[Any, Any], policy: Any) -> None:
        """``policy``: a :class:`Policy`, or a router (its current policy is read per request, so
        a reloaded policy applies)."""
        self.bound = bound
        self.source = policy

    @property
    def policy(self) -> Policy:
        return self.source if isinstance(self.source, Policy) else self.source.policy

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 (LangChain's name)
        return self.bound.OutputType

    @property
    def config_specs(self) -> list[Any]:
        return self.bound.config_specs

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_output_schema(config)

    def _prepare(self, config: RunnableConfig | None) -> tuple[RunnableConfig, bool]:
        config = ensure_config(config)
        if not local_only(self.policy, config):
            return config, False
        refuse_traced_enclosing_run(config)
        private, _ = private_config(self.policy, config)
        return private, True

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config, private = self._prepare(config)
        return call_in_scope(private, self.bound.invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config, private = self._prepare(config)
        if not private:
            return await self.bound.ainvoke(input, config, **kwargs)
        with private_scope():
            return await self.bound.ainvoke(input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        config, private = self._prepare(config)
        items = self.bound.stream(input, config, **kwargs)
        while True:
            try:
                item = call_in_scope(private, next, items)
            except StopIteration:
                return
            yield item

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        config, private = self._prepare(config)
        items = self.bound.astream(input, config, **kwargs).__aiter__()
        while True:
            try:
                if private:
                    with private_scope():
                        item = await items.__anext__()
                else:
                    item = await items.__anext__()
            except StopAsyncIteration:
                return
            yield item

    def __repr__(self) -> str:
        return f"PolicyBoundary(policy={self.policy.name!r}, bound={self.bound!r})"


__all__ = ["CacheNotAllowedError", "PolicyBoundary", "PrivateRunTracedError", "leaking_handlers", "refuse_cache",
           "refuse_traced_enclosing_run"]
