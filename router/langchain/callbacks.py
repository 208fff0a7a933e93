"""Callback filtering for the router's child model runs.

The router is a chat model whose answer is re-emitted on its own run, so child runs must not
reach the caller's streaming channels a second time, and a buffered attempt (one the checks may
still reject) must not leak its tokens at all:

- streaming handlers (``astream_events``, LangGraph's ``stream_mode="messages"``) are removed
  from every child run: they see the router's run, which emits only what the caller may see;
- every other handler except tracers is wrapped in :class:`TokenHold`, which drops
  ``on_llm_new_token`` and forwards everything else: the router's run emits the tokens the
  caller may see (a live rung's as they come, a buffered one's once accepted), each once;
- LangChain's usage handlers are attached to the children only, so each model call is counted
  once (the router's own run, which repeats the answer's usage, is kept out of them).

Example:
    >>> manager = child_manager(config, run_id, usage_handlers=[], live=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.callbacks.usage import UsageMetadataCallbackHandler
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.context import _configure_hooks


class TokenHold(BaseCallbackHandler):
    """``handler`` without ``on_llm_new_token``: the tokens of an attempt not yet accepted."""

    def __init__(self, handler: BaseCallbackHandler) -> None:
        object.__setattr__(self, "_held", handler)

    def __getattribute__(self, name: str) -> Any:
        if name == "on_llm_new_token":
            return _drop
        if name.startswith(("on_", "ignore_", "raise_error", "run_inline")):
            return getattr(object.__getattribute__(self, "_held"), name)
        return object.__getattribute__(self, name)


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


def is_streaming_handler(handler: BaseCallbackHandler) -> bool:
    """True for handlers that turn tokens into a caller-visible stream."""
    from langchain_core.tracers._streaming import _StreamingCallbackHandler, _V2StreamingCallbackHandler

    return isinstance(handler, (_StreamingCallbackHandler, _V2StreamingCallbackHandler))


def active_usage_handlers() -> list[tuple[Any, UsageMetadataCallbackHandler]]:
    """The context variables and handlers of the open ``get_usage_metadata_callback()`` blocks."""
    found = []
    for var, *_ in _configure_hooks:
        value = var.get()
        if isinstance(value, UsageMetadataCallbackHandler):
            found.append((var, value))
    return found


def _filtered(handlers: Sequence[BaseCallbackHandler]) -> list[BaseCallbackHandler]:
    kept: list[BaseCallbackHandler] = []
    for handler in handlers:
        if is_streaming_handler(handler):
            continue
        if isinstance(handler, (BaseTracer, UsageMetadataCallbackHandler)):
            kept.append(handler)
        else:
            kept.append(TokenHold(handler))
    return kept


def child_manager(config: RunnableConfig, run_id: UUID, *, usage_handlers: Sequence[BaseCallbackHandler],
                  live: bool, local: Sequence[BaseCallbackHandler] = ()) -> CallbackManager:
    """The callback manager of one child model run under the router run ``run_id`` (``live``:
    whether the run streams live; the filtering is the same, kept for plug-ins that differ)."""
    configured = CallbackManager.configure(config.get("callbacks"), list(local) or None, False,
                                           config.get("tags"), None, config.get("metadata"))
    manager = CallbackManager(handlers=[], parent_run_id=run_id)
    handlers = [*configured.inheritable_handlers, *usage_handlers]
    manager.set_handlers(_filtered(handlers), inherit=True)
    manager.add_tags(configured.inheritable_tags, inherit=True)
    manager.add_metadata(configured.inheritable_metadata, inherit=True)
    return manager
