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

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config

from router.langchain.callbacks import active_usage_handlers
from router.langchain.request import CURRENT, Request
from router.langchain.tracing import private_config, with_environment_tracer
from router.routing.catalog import Catalog

T = TypeVar("T")


def enter(catalog: Catalog, config: RunnableConfig | None,
          own_callbacks: Any = None) -> tuple[RunnableConfig, Context, Any]:
    """The config and context one public call runs in, and the router's own callbacks for it:
    privacy covers tracing (:func:`private_config`), the run id is fixed so child runs can nest
    under it, usage handlers see the child runs only (the router's run repeats their usage), and
    the run plans on ``catalog``, the policy tracing was decided on."""
    config, own_callbacks = private_config(catalog.policy, config, own_callbacks)
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
    request_config: RunnableConfig = {k: v for k, v in config.items() if k != "run_id"}  # type: ignore[assignment]
    context.run(CURRENT.set, Request(request_config, config["run_id"], [h for _, h in usage], catalog))
    return config, context, own_callbacks


def generate_config(callbacks: Any, tags: list[str] | None, metadata: dict[str, Any] | None,
                     run_id: Any) -> RunnableConfig:
    """The config a direct ``generate`` call stands for (its arguments are a config's fields)."""
    config: RunnableConfig = {"callbacks": callbacks, "tags": list(tags or []), "metadata": dict(metadata or {})}
    if run_id is not None:
        config["run_id"] = run_id
    return config


def iterate_in(context: Context, items: Iterator[T]) -> Iterator[T]:
    """``items``, each step (and the final close) run inside ``context``."""
    try:
        while True:
            try:
                item = context.run(next, items)
            except StopIteration:
                return
            yield item
    finally:
        context.run(items.close)  # type: ignore[attr-defined]


async def aiterate_in(context: Context, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items``, each step (and the final close) run as a task in ``context``."""

    async def step() -> T:
        return await items.__anext__()

    async def close() -> None:
        await items.aclose()  # type: ignore[attr-defined]

    try:
        while True:
            try:
                item = await asyncio.create_task(step(), context=context)
            except StopAsyncIteration:
                return
            yield item
    finally:
        await asyncio.create_task(close(), context=context)


def bind_stream(stream: Any, context: Context) -> Any:
    """A v3 ``ChatModelStream`` whose lazy start and pulls run inside ``context`` (it is pumped
    by whoever reads ``.text``/``.output``, from any context)."""
    start, more = stream._ensure_started, stream._request_more
    if start is not None:
        stream.set_start(lambda: context.run(start))
    if more is not None:
        stream.set_request_more(lambda: context.run(more))
    return stream


def abind_stream(stream: Any, context: Context) -> Any:
    """A v3 ``AsyncChatModelStream`` whose start (which creates its producer task, so the
    producer inherits the context) runs as a task in ``context``."""
    start = stream._ensure_started
    if start is not None:
        stream.set_start(lambda: asyncio.create_task(start(), context=context))
    return stream


__all__ = ["abind_stream", "aiterate_in", "bind_stream", "enter", "generate_config", "iterate_in"]
