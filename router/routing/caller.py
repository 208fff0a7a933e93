"""Performing the cascade's model calls: build the request, time it, price it, catch failures.

:class:`Caller` answers :class:`ModelCall` requests for :func:`router.routing.cascade.drive` (``__call__``)
and :func:`router.routing.cascade.adrive` (``acall``). Both share the preparation and accounting; only
the one line that talks to the model differs. Child runs get the router run's child callbacks,
so they nest under it and usage callbacks count each model call once.

As a last line of defence, a call to a network model under privacy or offline is refused here
too, even though selection and the cascade never ask for one.

Each network call first passes its model's circuit breaker (:mod:`router.providers.breaker`:
a half-open breaker admits one probe), every try's outcome is recorded there, and a failed try
is retried up to the model's ``max_retries`` as :func:`router.providers.retries.plan_retry`
decides (``Retry-After`` within the policy's bound, else at once to the next rung).

Every try is charged: a failed one at the usage it reported, else at its worst case (the provider
may have billed it: a timeout, a stream cut after the answer), except when it provably did not
run (a 4xx refusal, no connection made). A retry is made only while the call's tries so far plus
one more worst case fit in what was left of the ceiling, and under a budget hold of its own.

Each call's usage (the router's own count when the provider sent none) is reported once to the
usage handlers the child runs carry (:class:`router.routing.charges.UsageSink`), under the model's catalog name.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import Runnable, RunnableConfig

from router.providers._http_errors import unexpected_error
from router.providers.breaker import ModelGate, model_gate
from router.providers.retries import RetryNote
from router.routing.cascade import Plan
from router.routing.charges import merge_chunks, provably_unbilled, report_usage
from router.routing.model_call import CallOutcome, ModelCall
from router.routing.selection import format_usd
from router.routing.tokens import count_answer_tokens, usage_overrun
from router.routing.usage import Incredible, credible_cost, read_usage


class CallAbandoned(BaseException):
    """The consumer closed the stream: the call in progress stops and no later call is made.

    A ``BaseException``, so no handler of provider errors turns it into a failed attempt (the
    cascade would go on to the next rung for nobody). The call's reservation is settled at its
    worst case: a provider may bill the whole answer of a request the client left."""


class ChunkSink(Protocol):
    """Plug-in point for live streaming (see :mod:`router.langchain.streaming`): which answer
    calls stream live, where their chunks go, and the callbacks each child run gets."""

    closed: bool  # the consumer has gone: raise CallAbandoned at the next chunk or call

    def wants(self, call: ModelCall) -> bool: ...

    def emit(self, call: ModelCall, chunk: AIMessageChunk) -> None: ...

    def child_callbacks(self, call: ModelCall) -> Any: ...

    def note(self, call: ModelCall, outcome: CallOutcome) -> None: ...


class SpendGuard(Protocol):
    """Plug-in point for period budgets (see :mod:`router.spend`): reserve a call's worst case
    before it is made, settle to its actual cost after, release on error."""

    def reserve(self, call: ModelCall, config: RunnableConfig) -> Any:
        """A reservation handle, or a ``str`` saying why the call does not fit."""

    def settle(self, reservation: Any, cost_usd: float) -> None: ...

    def release(self, reservation: Any) -> None: ...


@dataclass
class _Tries:
    """One call's tries so far: the budget hold of the current one, what the earlier ones cost
    (settled already), and what was decided after each failure."""

    reservation: Any
    notes: list[RetryNote] = field(default_factory=list)
    in_flight: bool = False  # the hold covers a try that was sent and is not settled yet
    unfinished: asyncio.Future[Any] | None = None  # ledger work in a thread a cancel left running
    charged: float = 0.0
    estimated: bool = False
    count: int = 1
    started: float = field(default_factory=time.perf_counter)


def uncached(model: Any) -> Any:
    """``model`` with LangChain's LLM cache off: a cached answer was given under another request's
    policy (no cache key holds it), and a private request's text must not be stored in a shared
    cache. ``cache=None`` would read and write the process-wide ``set_llm_cache()`` one."""
    if getattr(model, "cache", False) is not False:
        model.cache = False
    return model


@dataclass
class Caller:
    plan: Plan
    config: RunnableConfig
    stream: bool = False
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = None
    guard: SpendGuard | None = None
    sink: ChunkSink | None = None
    params: dict[str, Any] = field(default_factory=dict)  # passed to every answer call (stop, top_p...)

    def _prepare(self, call: ModelCall,
                 loop: asyncio.AbstractEventLoop | None = None) -> tuple[Runnable[Any, Any], dict[str, Any]] | CallOutcome:
        catalog, settings = self.plan.catalog, self.plan.settings
        spec = catalog.spec(call.model)
        if settings.local_only and not spec.local:
            return CallOutcome(call.model, skipped="not local: refused a network call")
        adapter = catalog.adapter(call.model)
        model: Runnable[Any, Any] = uncached(catalog.chat_model(call.model, loop))
        if self.tools and call.purpose == "answer":
            model = model.bind_tools(list(self.tools), tool_choice=self.tool_choice)  # type: ignore[attr-defined]
        kwargs = adapter.call_kwargs(
            spec, max_tokens=int(call.settings.get("max_tokens", settings.max_output_tokens)),
            temperature=float(call.settings.get("temperature", settings.temperature)),
            want_logprobs=any(getattr(c, "uses_logprobs", False) for c in settings.confidence))
        kwargs.update({k: v for k, v in call.settings.items() if k not in ("max_tokens", "temperature")})
        if call.purpose == "answer":
            kwargs.update(self.params)
        return model, kwargs

    def _child_config(self, call: ModelCall) -> RunnableConfig:
        tags = [f"router:{call.purpose}", f"router-model:{call.model}"]
        config: RunnableConfig = {**self.config, "tags": [*(self.config.get("tags") or []), *tags]}
        if self.sink is not None and (callbacks := self.sink.child_callbacks(call)) is not None:
            config["callbacks"] = callbacks
        return config

    def _streams(self, call: ModelCall) -> bool:
        return self.stream and call.purpose == "answer"

    def _reserve(self, call: ModelCall) -> Any:
        if self.guard is None:
            return None
        return self.guard.reserve(call, self.config)

    def _admit(self, call: ModelCall, gate: ModelGate) -> Any:
        """The breaker, then the budget: a reservation (or None), or a ``str`` saying why not."""
        refusal = gate.admit()
        if refusal is not None:
            return refusal
        try:
            reservation = self._reserve(call)
        except BaseException:
            gate.abandon()
            raise
        if isinstance(reservation, str):
            gate.abandon()
        return reservation

    async def _admit_off_loop(self, call: ModelCall, gate: ModelGate) -> Any:
        """:meth:`_admit` in a thread. A request cancelled meanwhile gives back what the thread
        took (a live process's SQLite hold would otherwise never expire)."""
        task = asyncio.ensure_future(asyncio.to_thread(self._admit, call, gate))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._give_back(done, gate))
            raise

    def _give_back(self, done: asyncio.Future[Any], gate: ModelGate) -> None:
        if done.cancelled() or done.exception() is not None or isinstance(done.result(), str):
            return
        reservation = done.result()

        def give_back() -> None:
            gate.abandon()
            if self.guard is not None and reservation is not None:
                self.guard.release(reservation)

        threading.Thread(target=give_back, name="give-back-reservation", daemon=True).start()

    def _retry(self, gate: ModelGate, outcome: CallOutcome, notes: list[RetryNote]) -> float | None:
        """Seconds to wait before trying again, or None: ``outcome`` is the attempt's."""
        note = gate.after_try(outcome.error, len([n for n in notes if n.retries]))
        if note is not None:
            notes.append(note)
        return note.wait_s if note is not None and note.retries else None

    def _settle(self, reservation: Any, outcome: CallOutcome) -> None:
        """Settle a try's hold to its cost; give it back when a failed try cost nothing."""
        if self.guard is None or reservation is None:
            return
        if (outcome.error is not None or outcome.message is None) and outcome.cost_usd <= 0:
            self.guard.release(reservation)
        else:
            self.guard.settle(reservation, outcome.cost_usd)

    def _next_try(self, call: ModelCall, gate: ModelGate, outcome: CallOutcome, tries: _Tries) -> float | None:
        """After a try: seconds to wait before the next, or None (``outcome`` is the attempt's).
        A live answer that failed part-way is not retried (its tokens were shown). A retry must
        fit what is left of the ceiling after this try's charge, and takes a budget hold of its
        own once this try's hold is settled to its charge."""
        wait = None if outcome.shown else self._retry(gate, outcome, tries.notes)
        if wait is None:
            return None
        refusal = self._no_room(call, outcome, tries)
        if refusal is None:
            self._settle(tries.reservation, outcome)
            tries.reservation, tries.in_flight = None, False
            held = self._reserve(call)
            refusal = held if isinstance(held, str) else None
            tries.reservation = None if refusal is not None else held
        if refusal is not None:
            kind, after = (outcome.error.kind, outcome.error.retry_after_s) if outcome.error else ("other", None)
            tries.notes[-1] = RetryNote(kind, "escalated", refusal, retry_after_s=after)
            return None
        tries.charged += outcome.cost_usd
        tries.estimated = tries.estimated or outcome.cost_estimated
        tries.count += 1
        return wait

    def _no_room(self, call: ModelCall, outcome: CallOutcome, tries: _Tries) -> str | None:
        """Why no retry may follow ``outcome`` within the ceiling (None: one may)."""
        if outcome.overrun is not None:
            return f"no retry after an overrun ({outcome.overrun})"
        left = call.room_usd - tries.charged - outcome.cost_usd
        if call.worst_case_usd > left:
            return f"over ceiling: a retry's worst case {format_usd(call.worst_case_usd)} > {format_usd(left)} left"
        return None

    def _done(self, call: ModelCall, outcome: CallOutcome, tries: _Tries) -> CallOutcome:
        """The attempt's outcome: the last try's, charged for every try; its hold settled."""
        self._settle(tries.reservation, outcome)
        tries.reservation, tries.in_flight = None, False
        return replace(outcome, cost_usd=tries.charged + outcome.cost_usd, retries=tuple(tries.notes),
                       worst_case_usd=call.worst_case_usd * tries.count,
                       cost_estimated=tries.estimated or outcome.cost_estimated,
                       latency_s=time.perf_counter() - tries.started)

    def _check_open(self) -> None:
        if self.sink is not None and self.sink.closed:
            raise CallAbandoned

    def _abandon(self, call: ModelCall, tries: _Tries) -> None:
        """Settle the hold a call left by an exception, a cancel, Ctrl-C or a closed stream: at
        its worst case when it covers a try that was sent (the provider may bill the whole
        answer of a request the client left), else give it back (nothing was sent on it)."""
        reservation, tries.reservation = tries.reservation, None
        if self.guard is None or reservation is None:
            return
        if tries.in_flight:
            self.guard.settle(reservation, call.worst_case_usd)
        else:
            self.guard.release(reservation)

    def _abandon_after(self, call: ModelCall, tries: _Tries) -> None:
        """:meth:`_abandon`, once ledger work a cancel left running in a thread has finished
        (it may still take a retry's hold: that one must be given back too)."""
        unfinished = tries.unfinished
        if unfinished is None or unfinished.done():
            self._abandon(call, tries)
            return
        unfinished.add_done_callback(lambda _: threading.Thread(
            target=self._abandon, args=(call, tries), name="settle-abandoned-call", daemon=True).start())

    async def _off_loop(self, tries: _Tries, function: Any, *args: Any) -> Any:
        """``function(*args)`` (ledger I/O) in a thread; a cancel does not stop it, so the thread
        is kept in ``tries.unfinished`` for :meth:`_abandon_after`."""
        task = asyncio.ensure_future(asyncio.to_thread(function, *args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            tries.unfinished = task
            raise

    def __call__(self, call: ModelCall) -> CallOutcome:
        self._check_open()
        prepared = self._prepare(call)
        if isinstance(prepared, CallOutcome):
            return prepared
        gate = model_gate(self.plan.catalog, call.model)
        reservation = self._admit(call, gate)
        if isinstance(reservation, str):
            return CallOutcome(call.model, skipped=reservation)
        tries = _Tries(reservation)
        try:
            while True:
                tries.in_flight = True
                outcome = self._perform(call, *prepared)
                wait = self._next_try(call, gate, outcome, tries)
                if wait is None:
                    break
                time.sleep(wait)
            return self._done(call, outcome, tries)
        except BaseException:
            gate.abandon()  # a probe that did not finish: let the next request probe
            self._abandon(call, tries)
            raise

    async def acall(self, call: ModelCall) -> CallOutcome:
        self._check_open()
        # Building a provider's client the first time imports it (seconds): not on the loop.
        loop = asyncio.get_running_loop()
        prepared = (self._prepare(call, loop) if self.plan.catalog.is_built(call.model, loop)
                    else await asyncio.to_thread(self._prepare, call, loop))
        if isinstance(prepared, CallOutcome):
            return prepared
        gate = model_gate(self.plan.catalog, call.model)
        # Ledger and shared breaker I/O blocks (SQLite, Redis): keep it off the event loop. A $0
        # call (a local model) is neither reserved nor recorded: no ledger I/O, no thread hop.
        ledger_io = self.guard is not None and call.worst_case_usd > 0
        blocking = ledger_io or gate.blocking
        reservation = await self._admit_off_loop(call, gate) if blocking else self._admit(call, gate)
        if isinstance(reservation, str):
            return CallOutcome(call.model, skipped=reservation)
        tries = _Tries(reservation)
        try:
            while True:
                tries.in_flight = True
                outcome = await self._aperform(call, *prepared)
                wait = (await self._off_loop(tries, self._next_try, call, gate, outcome, tries) if blocking
                        else self._next_try(call, gate, outcome, tries))
                if wait is None:
                    break
                await asyncio.sleep(wait)
            return (await self._off_loop(tries, self._done, call, outcome, tries)
                    if ledger_io else self._done(call, outcome, tries))
        except BaseException:
            gate.abandon()  # a probe that did not finish: let the next request probe
            self._abandon_after(call, tries)
            raise

    def _perform(self, call: ModelCall, model: Runnable[Any, Any], kwargs: dict[str, Any]) -> CallOutcome:
        started, config = time.perf_counter(), self._child_config(call)
        chunks: list[AIMessageChunk] = []
        shown = False  # some of this answer already reached the caller (a live rung)
        try:
            if self._streams(call):
                live = self.sink is not None and self.sink.wants(call)
                for chunk in model.stream(list(call.messages), config, **kwargs):
                    self._check_open()
                    chunks.append(chunk)
                    if live:
                        self.sink.emit(call, chunk)  # type: ignore[union-attr]
                        shown = True
                message = merge_chunks(chunks)
            else:
                message = model.invoke(list(call.messages), config, **kwargs)
        except Exception as exc:  # translated into a typed ProviderError, or re-raised
            return self._reported(config, call, replace(self._failed(call, exc, started, chunks), shown=shown))
        outcome = replace(self._finished(call, message, chunks, started), shown=shown)
        return self._noted(call, self._reported(config, call, outcome))

    async def _aperform(self, call: ModelCall, model: Runnable[Any, Any],
                        kwargs: dict[str, Any]) -> CallOutcome:
        started, config = time.perf_counter(), self._child_config(call)
        chunks: list[AIMessageChunk] = []
        shown = False  # some of this answer already reached the caller (a live rung)
        try:
            if self._streams(call):
                live = self.sink is not None and self.sink.wants(call)
                async for chunk in model.astream(list(call.messages), config, **kwargs):
                    self._check_open()
                    chunks.append(chunk)
                    if live:
                        self.sink.emit(call, chunk)  # type: ignore[union-attr]
                        shown = True
                message = merge_chunks(chunks)
            else:
                message = await model.ainvoke(list(call.messages), config, **kwargs)
        except Exception as exc:  # translated into a typed ProviderError, or re-raised
            return self._reported(config, call, replace(self._failed(call, exc, started, chunks), shown=shown))
        outcome = replace(self._finished(call, message, chunks, started), shown=shown)
        return self._noted(call, self._reported(config, call, outcome))

    def _noted(self, call: ModelCall, outcome: CallOutcome) -> CallOutcome:
        if self.sink is not None:
            self.sink.note(call, outcome)
        return outcome

    def _reported(self, config: RunnableConfig, call: ModelCall, outcome: CallOutcome) -> CallOutcome:
        """Tell the child run's usage handlers what this try used (once, under the catalog name)."""
        report_usage(config.get("callbacks"), call.model, outcome)
        return outcome

    def _failed(self, call: ModelCall, exc: Exception, started: float, chunks: list[AIMessageChunk]) -> CallOutcome:
        """A failed try, charged at the usage it reported, else its worst case unless it
        provably did not run (the provider may have billed a timeout or a cut stream)."""
        spec = self.plan.catalog.spec(call.model)
        error = (self.plan.catalog.adapter(call.model).translate_error(spec, exc)
                 or unexpected_error(spec.provider, spec.model or call.model, exc))
        failed = CallOutcome(call.model, error=error, latency_s=time.perf_counter() - started)
        usage = read_usage(merge_chunks(chunks).usage_metadata if chunks else None)
        if isinstance(usage, Incredible):
            return replace(failed, cost_usd=call.worst_case_usd, cost_estimated=call.worst_case_usd > 0,
                           overrun=usage.reason)
        if usage is not None:
            used_in, used_out = usage
            return replace(failed, input_tokens=used_in, output_tokens=used_out,
                           cost_usd=spec.cost_usd(used_in, used_out), overrun=self._overrun(call, used_in, used_out))
        unsent = frozenset(self.plan.catalog.adapter(call.model).unsent_exceptions)
        if provably_unbilled(error, exc, unsent) and not chunks:  # a stream that sent a chunk ran
            return failed
        return replace(failed, cost_usd=call.worst_case_usd, cost_estimated=call.worst_case_usd > 0)

    def _input_bound(self, call: ModelCall) -> int:
        """The input tokens the call's worst case assumed: its messages, and the bound tools'
        schemas for an answer call (the only calls that send them)."""
        tools = self.tools if call.purpose == "answer" else ()
        return self.plan.catalog.count_tokens(call.model, call.messages, tools)

    def _overrun(self, call: ModelCall, input_tokens: int, output_tokens: int,
                 input_bound: int | None = None) -> str | None:
        """Usage above the bounds the worst case assumed (None: within them, or a free model).
        ``input_bound``: :meth:`_input_bound`, when the caller has counted it already."""
        price = self.plan.catalog.spec(call.model).price
        if not (price.input or price.output):
            return None
        bound = self._input_bound(call) if input_bound is None else input_bound
        return usage_overrun(input_tokens, output_tokens, input_bound=bound,
                             output_bound=int(call.settings.get("max_tokens", self.plan.settings.max_output_tokens)))

    def _finished(self, call: ModelCall, message: AIMessage, chunks: list[AIMessageChunk],
                  started: float) -> CallOutcome:
        """A completed try, priced at its reported usage, else at the router's own count (the
        input bound; the answer's text and tool calls). Either may overrun the bounds."""
        latency = time.perf_counter() - started
        catalog = self.plan.catalog
        spec, adapter = catalog.spec(call.model), catalog.adapter(call.model)
        usage = read_usage(message.usage_metadata)
        reported, incredible = self._reported_cost(adapter, message)
        estimated = usage is None or isinstance(usage, Incredible)
        bound = None
        if estimated:  # the input is counted once: it is the bound, so it cannot overrun it
            input_tokens = bound = self._input_bound(call)
            output_tokens = count_answer_tokens(message)
        else:
            input_tokens, output_tokens = usage  # type: ignore[misc]
        if isinstance(usage, Incredible):
            incredible = incredible or usage.reason
        if incredible is not None:  # not believed: an overrun, charged at no less than the worst case
            cost = max(call.worst_case_usd, spec.cost_usd(input_tokens, output_tokens))
            overrun: str | None = incredible
        else:
            cost = reported if reported is not None else spec.cost_usd(input_tokens, output_tokens)
            overrun = None if reported is not None else self._overrun(call, input_tokens, output_tokens, bound)
        return CallOutcome(call.model, message=message, latency_s=latency, input_tokens=input_tokens,
                           output_tokens=output_tokens, cost_usd=cost,
                           cost_estimated=estimated and reported is None,
                           token_logprobs=adapter.token_logprobs(message), chunks=chunks, overrun=overrun)

    @staticmethod
    def _reported_cost(adapter: Any, message: AIMessage) -> tuple[float | None, str | None]:
        """The provider's own cost figure (None: it reports none), and why it is not believed."""
        try:
            raw = adapter.reported_cost_usd(message)
        except (TypeError, ValueError, OverflowError):
            return None, "reported cost is not a number"
        if raw is None:
            return None, None
        cost = credible_cost(raw)
        return (cost, None) if cost is not None else (None, f"reported cost {raw!r:.40} is not an amount")

