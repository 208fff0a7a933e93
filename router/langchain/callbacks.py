"""Callback filtering for the router's child model runs.

To its caller the router is one chat model: a handler passed in ``callbacks`` sees one
``on_chat_model_start``, the tokens the caller may see and one ``on_llm_end``, as with any chat
model (LangChain's standard suites count them). The models it calls run as children of its run:

- tracers (``BaseTracer``: LangSmith's ``LangChainTracer``, ``ConsoleCallbackHandler``...) see the
  child runs nested under the router's run, rejected attempts included, for explanation;
- streaming handlers (``astream_events``, LangGraph's ``stream_mode="messages"``) and every other
  handler see the router's run only: its tokens are a live rung's as they come, or a buffered
  attempt's once its checks accepted it, each once; a rejected attempt's tokens and its
  ``on_llm_end`` never reach them;
- LangChain's usage handlers are attached to the children only, so each model call is counted
  once (the router's own run, which repeats the answer's usage, is kept out of them). In a child
  run they stand behind one :class:`CallUsage`, which the router tells of each call's usage under
  the model's catalog name, with its own count when the provider reported none (a stream from
  llama.cpp's OpenAI server): the child's own ``on_llm_end`` would carry no usage then.

Example:
    >>> manager = child_manager(config, run_id, usage_handlers=[], live=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.callbacks.usage import UsageMetadataCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.context import _configure_hooks


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


class CallUsage(BaseCallbackHandler):
    """The usage handlers of a child run. A child's own ``on_llm_end`` is ignored; the router
    reports each call with :meth:`count_call` (a :class:`router.routing.charges.UsageSink`)."""

    def __init__(self, handlers: Sequence[UsageMetadataCallbackHandler]) -> None:
        super().__init__()
        self.handlers = list(handlers)

    def count_call(self, model: str, usage: UsageMetadata) -> None:
        """Count one call of catalog model ``model`` in every usage handler."""
        message = AIMessage("", usage_metadata=usage, response_metadata={"model_name": model})
        result = LLMResult(generations=[[ChatGeneration(message=message)]])
        for handler in self.handlers:
            handler.on_llm_end(result, run_id=uuid4())


def _filtered(handlers: Sequence[BaseCallbackHandler]) -> list[BaseCallbackHandler]:
    """The tracers, and the usage handlers behind one :class:`CallUsage` (each once)."""
    unique = list({id(handler): handler for handler in handlers if not is_streaming_handler(handler)}.values())
    usage = [handler for handler in unique if isinstance(handler, UsageMetadataCallbackHandler)]
    tracers: list[BaseCallbackHandler] = [handler for handler in unique if isinstance(handler, BaseTracer)]
    return [*tracers, CallUsage(usage)] if usage else tracers


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
