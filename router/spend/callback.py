"""Per-run cost: total USD across every router call in a block, like LangChain's
``get_usage_metadata_callback``.

The handler reads the decision record each router run ends with (``response_metadata
["routing"]``, or the ``decision`` a ``RoutingError`` carries: money spent on a request that
found no answer still counts). A record is counted once per request: a chain that merely
passes the router's message on ends with the same record, before the router (``prompt |
router``: skipped because one of its descendant runs was already counted) or after it
(``router | RunnablePassthrough()``, a guard, a logger: skipped because the message is the one
already counted, known by its id, which LangChain derives from the router's run id).

Not counted: a stream the consumer leaves mid-way ends without a record, though its budget is
charged the live call's worst case (the budget, not this handler, is the account of record).

Example:
    >>> with get_cost_callback() as cb:
    ...     chain.invoke({"q": "What is the capital of France?"})
    ...     await router.ainvoke("And of Italy?")
    >>> cb.total_usd, cb.requests, cb.by_model
    (0.000024, 2, {'gemma-270m': 0.0, 'gpt-3.5-turbo': 0.000024})
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook


def _routing(output: Any) -> dict[str, Any] | None:
    metadata = getattr(output, "response_metadata", None)
    routing = metadata.get("routing") if isinstance(metadata, dict) else None
    return routing if isinstance(routing, dict) and "total_cost_usd" in routing else None


def _message_key(output: Any) -> str | None:
    """The id of the message that carries a record: one per router run (``lc_run--<run id>``)."""
    message_id = getattr(output, "id", None)
    return message_id if isinstance(message_id, str) and message_id else None


class CostCallbackHandler(BaseCallbackHandler):
    """Totals the USD cost of router runs it sees: ``total_usd``, ``requests``, ``by_model``."""

    run_inline = True  # keep start/end order; the bookkeeping is a few dict operations

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._parents: dict[UUID, UUID | None] = {}
        self._covered: set[UUID] = set()  # chains around a run already counted
        self._counted: set[str] = set()  # ids of the messages already counted
        self.total_usd = 0.0
        self.requests = 0
        self.by_model: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"CostCallbackHandler(total_usd={self.total_usd:.6f}, requests={self.requests})"

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        with self._lock:
            self._parents[run_id] = parent_run_id

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._ended(run_id, _routing(outputs), _message_key(outputs))

    # The router is a chat model: its own run is an LLM run whose message carries the record.
    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self.on_chain_start(serialized, messages, run_id=run_id, parent_run_id=parent_run_id)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        generations = getattr(response, "generations", None) or [[]]
        first = generations[0][0] if generations and generations[0] else None
        message = getattr(first, "message", None)
        self._ended(run_id, _routing(message), _message_key(message))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.on_chain_error(error, run_id=run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        decision = getattr(error, "decision", None)
        self._ended(run_id, decision.to_dict() if hasattr(decision, "to_dict") else None, None)

    def _ended(self, run_id: UUID, routing: dict[str, Any] | None, key: str | None) -> None:
        with self._lock:
            parent = self._parents.pop(run_id, None)
            if run_id in self._covered:
                self._covered.discard(run_id)
                return
            if routing is None:
                return
            while parent is not None:  # every enclosing chain ends with this same record
                self._covered.add(parent)
                parent = self._parents.get(parent)
            if key is not None:  # a later step that passes the router's message on
                if key in self._counted:
                    return
                self._counted.add(key)
            self._count(routing)

    def _count(self, routing: dict[str, Any]) -> None:
        self.requests += 1
        self.total_usd += float(routing["total_cost_usd"])
        for attempt in routing.get("attempts", []):
            self._add(attempt["model"], attempt.get("cost_usd", 0.0))
            for check in attempt.get("checks", []):
                for call in check.get("calls", []):
                    self._add(call["model"], call.get("cost_usd", 0.0))

    def _add(self, model: str, cost: float) -> None:
        self.by_model[model] = self.by_model.get(model, 0.0) + float(cost)


@contextmanager
def get_cost_callback() -> Iterator[CostCallbackHandler]:
    """A :class:`CostCallbackHandler` attached to every run started inside the ``with`` block
    (sync or async, nested blocks each count their own)."""
    # One context variable per block, as LangChain's own helper does: an outer block keeps
    # counting while an inner one is open.
    var: ContextVar[CostCallbackHandler | None] = ContextVar("router_cost_callback", default=None)
    register_configure_hook(var, inheritable=True)
    handler = CostCallbackHandler()
    token = var.set(handler)
    try:
        yield handler
    finally:
        var.reset(token)
