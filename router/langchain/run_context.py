"""The context one public call of the router runs in.

``BaseChatModel`` does not hand the ``RunnableConfig`` to ``_generate``/``_stream``, and the
router needs it (overrides, tags and metadata drive the policy; child runs nest under its run).
:func:`enter` prepares the config and a ``contextvars.Context`` holding the :class:`Request`;
:func:`iterate_in` / :func:`aiterate_in` drive a (async) generator inside that context, so each
step of a stream sees the same request however the caller interleaves streams.

Example:
    >>> config, context, own_callbacks = enter(catalog, {"tags": ["demo"]})
    >>> message = context.run(chat_model_invoke, "hi", config)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextvars import Context, copy_context
from typing import Any, TypeVar
from uuid import uuid4

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.callbacks.usage import UsageMetadataCallbackHandler
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config

from router.langchain.boundary import refuse_traced_enclosing_run
from router.langchain.callbacks import active_usage_handlers
from router.langchain.privacy_scope import call_in_scope, private_scope
from router.langchain.request import CURRENT, Request
from router.langchain.tracing import handlers_of, local_only, private_config, with_environment_tracer
from router.routing.catalog import Catalog

T = TypeVar("T")


def enter(catalog: Catalog, config: RunnableConfig | None,
          own_callbacks: Any = None) -> tuple[RunnableConfig, Context, Any]:
    """The config and context one public call runs in, and the router's own callbacks for it:
    privacy covers tracing (:func:`private_config`), the run id is fixed so child runs can nest
    under it, usage handlers see the child runs only (the router's run repeats their usage), and
    the run plans on ``catalog``, the policy tracing was decided on."""
    config = ensure_config(config)
    private = local_only(catalog.policy, config)
    if private:
        refuse_traced_enclosing_run(config)  # before any model is called
    config, own_callbacks = private_config(catalog.policy, config, own_callbacks)
    config, enclosing_usage = _without_usage_handlers(config)
    if not private:
        config = with_environment_tracer(config)
    config = {**config, "run_id": config.get("run_id") or uuid4()}
    context = copy_context()
    # The enclosing chain's config is already in ``config``; left in the context, a child's
    # RunnableBinding would merge its callbacks back in (ensure_config reads it), and every
    # handler of the chain would see the child runs.
    context.run(var_child_runnable_config.set, None)
    usage = active_usage_handlers()
    for var, _ in usage:
        context.run(var.set, None)
    handlers = list({id(h): h for h in [*enclosing_usage, *(h for _, h in usage)]}.values())
    request_config: RunnableConfig = {k: v for k, v in config.items() if k != "run_id"}  # type: ignore[assignment]
    context.run(CURRENT.set, Request(request_config, config["run_id"], handlers, catalog, private=private))
    return config, context, own_callbacks


def _without_usage_handlers(config: RunnableConfig) -> tuple[RunnableConfig, list[Any]]:
    """``config`` without the ``get_usage_metadata_callback()`` handlers an enclosing run passed
    down (a chain's manager holds them), and those handlers: they count the child model runs,
    not the router's own run, which repeats the answer's usage."""
    callbacks = config.get("callbacks")
    found = [h for h in handlers_of(callbacks) if isinstance(h, UsageMetadataCallbackHandler)]
    if not found:
        return config, []
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.handlers = [h for h in manager.handlers if not isinstance(h, UsageMetadataCallbackHandler)]
        manager.inheritable_handlers = [h for h in manager.inheritable_handlers
                                        if not isinstance(h, UsageMetadataCallbackHandler)]
        return {**config, "callbacks": manager}, found
    return {**config, "callbacks": [h for h in callbacks if not isinstance(h, UsageMetadataCallbackHandler)]}, found


def with_fields(config: RunnableConfig | None, tags: list[str] | None,
                metadata: dict[str, Any] | None) -> RunnableConfig:
    """``config`` with a runnable's own ``tags``/``metadata`` fields added (its metadata wins, as
    in the run LangChain records), so the policy's rules see what tracers see."""
    config = ensure_config(config)
    if not tags and not metadata:
        return config
    known = list(config.get("tags") or [])
    return {**config, "tags": known + [t for t in tags or () if t not in known],
            "metadata": {**(config.get("metadata") or {}), **(metadata or {})}}


def generate_config(callbacks: Any, tags: list[str] | None, metadata: dict[str, Any] | None,
                     run_id: Any) -> RunnableConfig:
    """The config a direct ``generate`` call stands for (its arguments are a config's fields)."""
    config: RunnableConfig = {"callbacks": callbacks, "tags": list(tags or []), "metadata": dict(metadata or {})}
    if run_id is not None:
        config["run_id"] = run_id
    return config


def _scoped(fn: Any, *args: Any, **kwargs: Any) -> Any:
    request = CURRENT.get()
    return call_in_scope(bool(request is not None and request.private), fn, *args, **kwargs)


def run_in(context: Context, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside ``context``, and inside the private scope when the request
    it holds is private (:mod:`router.langchain.privacy_scope`)."""
    return context.run(_scoped, fn, *args, **kwargs)


async def _ascoped(awaitable: Any) -> Any:
    request = CURRENT.get()
    if request is None or not request.private:
        return await awaitable
    with private_scope():
        return await awaitable


def task_in(context: Context, awaitable: Any) -> asyncio.Task[Any]:
    """``awaitable`` as a task in ``context`` (inside the private scope for a private request)."""
    return asyncio.create_task(_ascoped(awaitable), context=context)


def iterate_in(context: Context, items: Iterator[T]) -> Iterator[T]:
    """``items``, each step (and the final close) run inside ``context``."""
    try:
        while True:
            try:
                item = run_in(context, next, items)
            except StopIteration:
                return
            yield item
    finally:
        run_in(context, items.close)  # type: ignore[attr-defined]


async def aiterate_in(context: Context, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items``, each step (and the final close) run as a task in ``context``."""

    async def step() -> T:
        return await items.__anext__()

    async def close() -> None:
        await items.aclose()  # type: ignore[attr-defined]

    try:
        while True:
            try:
                item = await task_in(context, step())
            except StopAsyncIteration:
                return
            yield item
    finally:
        await task_in(context, close())


def bind_stream(stream: Any, context: Context) -> Any:
    """A v3 ``ChatModelStream`` whose lazy start and pulls run inside ``context`` (it is pumped
    by whoever reads ``.text``/``.output``, from any context)."""
    start, more = stream._ensure_started, stream._request_more
    if start is not None:
        stream.set_start(lambda: run_in(context, start))
    if more is not None:
        stream.set_request_more(lambda: run_in(context, more))
    return stream


def abind_stream(stream: Any, context: Context) -> Any:
    """A v3 ``AsyncChatModelStream`` whose start (which creates its producer task, so the
    producer inherits the context) runs as a task in ``context``."""
    start = stream._ensure_started
    if start is not None:
        stream.set_start(lambda: task_in(context, start()))
    return stream


__all__ = ["abind_stream", "aiterate_in", "bind_stream", "enter", "generate_config", "iterate_in", "run_in",
           "task_in", "with_fields"]
