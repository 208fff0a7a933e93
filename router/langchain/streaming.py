"""Streaming the cascade: the attempt whose answer will be returned whatever its checks say
streams live; every other attempt is buffered, checked, and replayed only when accepted.

An attempt is *final* when nothing can replace its answer: ``on_exhausted: best`` and it is the
last candidate with no earlier answer to prefer. A policy with no confidence checks still rejects
an incomplete answer (cut off at ``max_tokens``, filtered, an unparsed tool call: the built-in
completeness check), so its earlier rungs are buffered too; under ``on_exhausted: raise`` even the
last rung's answer may be rejected, so nothing streams live. :class:`ChunkSink` decides per call; the cascade runs in a worker
thread (sync) or task (async) and live chunks cross a queue as they arrive.

Example:
    >>> sink = ChunkSink(plan, streaming=True)
    >>> for item in stream_cascade(run_cascade(plan), caller, sink): ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableConfig

from router.routing.caller import CallAbandoned
from router.routing.cascade import CascadeResult, Plan, adrive, drive
from router.routing.model_call import CallOutcome, ModelCall


@dataclass
class ChunkSink:
    """Decides which calls stream live, carries their chunks, and the child callbacks of each."""

    plan: Plan
    streaming: bool
    callbacks_for: Callable[[bool], Any] | None = None
    put: Callable[[AIMessageChunk], None] = field(default=lambda chunk: None)
    answered: bool = False
    live_model: str | None = None
    closed: bool = False  # the consumer stopped reading: the cascade stops at its next chunk or call

    def wants(self, call: ModelCall) -> bool:
        """True when ``call``'s answer is returned whatever its checks say."""
        if not self.streaming or call.purpose != "answer" or self.answered:
            return False
        candidates = self.plan.selection.candidates
        return self.plan.settings.on_exhausted == "best" and bool(candidates) and call.model == candidates[-1]

    def child_callbacks(self, call: ModelCall) -> Any:
        return None if self.callbacks_for is None else self.callbacks_for(self.wants(call))

    def emit(self, call: ModelCall, chunk: AIMessageChunk) -> None:
        self.live_model = call.model
        self.put(chunk)

    def note(self, call: ModelCall, outcome: CallOutcome) -> None:
        if call.purpose == "answer" and outcome.message is not None and outcome.error is None:
            self.answered = True


@dataclass
class _End:
    result: CascadeResult | None = None
    error: BaseException | None = None


#: How long closing an abandoned stream waits for its worker to stop (at the model's next chunk,
#: usually milliseconds; a call still waiting for its first token may take longer, and is left to
#: stop on its own).
ABANDON_WAIT_S = 5.0


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _workers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads streams run their cascades on, reused: llama.cpp's OpenMP team belongs to the
    thread that calls it, and a fresh thread per request paid for a new team while the last one's
    threads still spun (prompt evaluation 87 ms instead of 65 ms on 2 cores, measured with
    ``bench/first_chunk.py``). An idle thread is reused before a new one starts."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="policy-router-stream")
        return _POOL


def stream_cascade(cascade: Any, caller: Callable[[ModelCall], CallOutcome],
                   sink: ChunkSink) -> Iterator[AIMessageChunk | CascadeResult]:
    """Drive ``cascade`` in a worker thread; yield live chunks as they come, then the result."""
    items: queue.Queue[AIMessageChunk | _End] = queue.Queue()
    sink.put = items.put

    def work() -> None:
        try:
            items.put(_End(result=drive(cascade, caller)))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put(_End(error=exc))

    worker = _workers().submit(copy_context().run, work)
    ended = False
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                ended = True
                worker.result()
                if item.error is not None and not isinstance(item.error, CallAbandoned):
                    raise item.error
                assert item.result is not None
                yield item.result
                return
            yield item
    finally:
        if not ended:  # the consumer left (break, close): stop the model, spend nothing more
            sink.closed = True
            with contextlib.suppress(concurrent.futures.TimeoutError):
                worker.result(ABANDON_WAIT_S)


async def astream_cascade(cascade: Any, acall: Callable[[ModelCall], Any], sink: ChunkSink,
                          config: RunnableConfig | None = None) -> AsyncIterator[AIMessageChunk | CascadeResult]:
    """:func:`stream_cascade` on the running loop: the cascade runs as a task."""
    items: asyncio.Queue[AIMessageChunk | _End] = asyncio.Queue()
    sink.put = items.put_nowait
    task = asyncio.ensure_future(adrive(cascade, acall))
    task.add_done_callback(lambda _: items.put_nowait(_End()))
    try:
        while True:
            item = await items.get()
            if isinstance(item, _End):
                break
            yield item
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
