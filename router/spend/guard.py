"""``BudgetGuard``: the router's :class:`router.routing.caller.SpendGuard` for a policy's ``budgets:``.

Before every paid model call (each cascade rung, each call a check makes) the guard reserves
the call's worst case in every budget that applies, atomically in the ledger; when one has no
room the call is not made and the cascade records why (the budget and what is left). After
the call it settles the reservation to the actual cost, or releases it on error. A reservation
left by a crashed process expires after the ledger's ``ttl_s``.

Settles are durable: one the ledger cannot take (SQLite write-locked by another process, Redis
unreachable) is kept and retried in the background, and before every later reservation, until
it lands; its hold meanwhile keeps holding the worst case (a SQLite hold of a live process
does not expire). A ledger file deleted or truncated under the router raises
:class:`router.spend.ledger.LedgerLostError` from :meth:`BudgetGuard.reserve`: paid calls stop.

Calls whose worst case is $0 (local models) need no budget: they are neither reserved nor
recorded. A ``per:`` budget applies to the value of its key in the call's LangChain
``config["metadata"]``; a paid call *without* that key is refused (fails closed), because
charging it nowhere would let untagged traffic bypass every per-user limit.

Example:
    >>> guard = BudgetGuard.from_policy(policy, clock=lambda: 1_800_000_000.0)
    >>> router = PolicyRouter(policy=policy, spend_guard=guard)
    >>> guard.status({"user": "ann"})[0].left_usd
    1.0
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.spend.config import Budget, redact
from router.spend.ledger import Bucket, Hold, Ledger, LedgerError, LedgerLostError, Shortfall, to_units, to_usd
from router.spend.ledger_url import open_ledger
from router.spend.owner import current_owner
from router.spend.periods import period_end, period_key

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from router.policy.policy_file import Policy
    from router.routing.model_call import ModelCall

logger = logging.getLogger(__name__)
Clock = Callable[[], float]


@dataclass(frozen=True)
class BudgetStatus:
    """One budget's standing in the current period."""

    label: str
    period: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float

    @property
    def left_usd(self) -> float:
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)


@dataclass(frozen=True)
class PendingSettle:
    """A settle (or a release: ``cost`` None) the ledger has not taken yet: retried until it lands."""

    hold: Hold
    cost: int | None  # nano-dollars; None: release the hold, nothing was spent
    ts: float
    error: str  # the last failure

    def apply(self, ledger: Ledger) -> None:
        if self.cost is None:
            ledger.release(self.hold)
        else:
            ledger.settle(self.hold, self.cost, self.ts)


RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
EXIT_FLUSH_S = 5.0  # at interpreter exit, how long to keep trying to land pending settles


def _usd(value: float) -> str:
    return f"${value:.6f}"


class BudgetGuard:
    """Reserve, settle and release against ``budgets`` in one ledger.

    ``ledger`` is a :class:`router.spend.ledger.Ledger` or a URL (opened on first use, so
    building a router touches no file or socket); ``clock`` returns epoch seconds (inject
    one in tests to cross a period boundary).
    """

    def __init__(self, budgets: Sequence[Budget], ledger: Ledger | str | None = None, *,
                 policy: str = "?", clock: Clock = time.time) -> None:
        self.budgets = tuple(budgets)
        self.policy = policy
        self.clock = clock
        self._ledger: Ledger | None = None if ledger is None or isinstance(ledger, str) else ledger
        self._ledger_url = ledger if isinstance(ledger, str) else None
        self._open_lock = threading.Lock()
        self._pending: dict[str, PendingSettle] = {}
        self._pending_lock = threading.Lock()
        self._retrier: threading.Thread | None = None

    @classmethod
    def from_policy(cls, policy: Policy, *, ledger: Ledger | str | None = None,
                    clock: Clock = time.time) -> BudgetGuard | None:
        """The guard for ``policy``'s budgets and ledger, or None when it declares no budget."""
        if not policy.budgets:
            return None
        return cls(policy.budgets, ledger if ledger is not None else policy.ledger, policy=policy.name,
                   clock=clock)

    def __repr__(self) -> str:
        where = self._ledger.url if self._ledger is not None else redact(self._ledger_url or "default")
        return f"BudgetGuard({[b.name for b in self.budgets]}, ledger={where!r})"

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            with self._open_lock:
                if self._ledger is None:
                    self._ledger = open_ledger(self._ledger_url)
        return self._ledger

    # ------------------------------------------------------------------ SpendGuard

    def reserve(self, call: ModelCall, config: RunnableConfig) -> Hold | str | None:
        """A hold on ``call.worst_case_usd`` in every applicable budget; a reason when one has
        no room (or the ledger cannot be reached: fails closed); None for a free call."""
        if call.worst_case_usd <= 0 or not self.budgets:
            return None
        metadata: Mapping[str, Any] = config.get("metadata") or {}
        now = self.clock()
        missing = [b for b in self.budgets if b.per is not None and b.per not in metadata]
        if missing:
            return (f"budget {missing[0].name!r}: no {missing[0].per!r} in the call's metadata "
                    f"(a per-{missing[0].per} budget refuses untagged paid calls)")
        buckets = tuple(Bucket(b.name, b.subject(metadata), period_key(b.period, now), to_units(b.limit_usd),
                               period_end(b.period, now)) for b in self.budgets)
        try:
            ledger = self.ledger
            self.flush_pending()  # earlier spending lands before new room is taken
            hold = Hold(uuid.uuid4().hex, buckets, to_units(call.worst_case_usd, round_up=True),
                        now + ledger.ttl_s, self.policy, call.model, call.purpose,
                        tuple(b.label(metadata) for b in self.budgets),
                        {b.per: str(metadata[b.per]) for b in self.budgets if b.per is not None},
                        owner=current_owner())
            shortfall = ledger.reserve(hold, now)
        except LedgerLostError:
            raise  # not a passing outage: the operator must act, and every paid call stops
        except LedgerError as err:
            logger.warning("budget check failed closed: %s", err)
            return f"budget ledger unavailable ({err.backend}): refused a paid call"
        return hold if shortfall is None else self._reason(shortfall, hold)

    def settle(self, reservation: Hold, cost_usd: float) -> None:
        """Record the call's actual cost. When the ledger refuses the write, the settle is kept
        and retried (its hold keeps holding the worst case) until it lands. A cost that is not
        an amount (negative, NaN, infinite) is settled at the hold's worst case: never a credit."""
        credible = isinstance(cost_usd, (int, float)) and math.isfinite(cost_usd) and cost_usd >= 0
        units = to_units(cost_usd) if credible else reservation.amount
        self._finish(PendingSettle(reservation, units, self.clock(), ""))

    def release(self, reservation: Hold) -> None:
        """Drop the reservation (the call failed: nothing spent); retried like a settle."""
        self._finish(PendingSettle(reservation, None, self.clock(), ""))

    def _finish(self, pending: PendingSettle) -> None:
        try:
            pending.apply(self.ledger)
        except LedgerError as err:  # a paid call keeps its answer; the record is retried
            what = "release" if pending.cost is None else f"record {_usd(to_usd(pending.cost))} for"
            logger.warning("could not %s %s yet (%s); retrying until it lands, its reservation of %s "
                           "holds meanwhile", what, pending.hold.model, err, _usd(to_usd(pending.hold.amount)))
            with self._pending_lock:
                self._pending[pending.hold.id] = PendingSettle(pending.hold, pending.cost, pending.ts, str(err))
            self._start_retrying()

    @property
    def pending_settles(self) -> list[PendingSettle]:
        """Settles and releases not yet written to the ledger (oldest first)."""
        with self._pending_lock:
            return list(self._pending.values())

    def flush_pending(self) -> int:
        """Try to land every pending settle now; the number still pending. Raises
        :class:`LedgerLostError` when the ledger file is gone (they can never land there)."""
        for item in self.pending_settles:
            try:
                item.apply(self.ledger)
            except LedgerLostError:
                raise
            except LedgerError as err:
                with self._pending_lock:
                    if item.hold.id in self._pending:
                        self._pending[item.hold.id] = PendingSettle(item.hold, item.cost, item.ts, str(err))
                break  # the ledger still refuses writes: keep the order, try again later
            with self._pending_lock:
                self._pending.pop(item.hold.id, None)
            logger.info("a retried %s for %s landed", "release" if item.cost is None else "settle",
                        item.hold.model)
        with self._pending_lock:
            return len(self._pending)

    def _start_retrying(self) -> None:
        with self._pending_lock:
            if self._retrier is not None and self._retrier.is_alive():
                return
            self._retrier = threading.Thread(target=_retry_loop, args=(weakref.ref(self),),
                                             name="budget-settle-retry", daemon=True)
            self._retrier.start()
        _exit_flush.add(self)


    # ------------------------------------------------------------------ reading

    def status(self, metadata: Mapping[str, Any] | None = None) -> list[BudgetStatus]:
        """Each budget's spent, reserved and left amounts in the current period; a ``per:``
        budget is shown for the value ``metadata`` gives it (skipped without one)."""
        metadata = metadata or {}
        now = self.clock()
        out = []
        for b in self.budgets:
            if b.per is not None and b.per not in metadata:
                continue
            bucket = Bucket(b.name, b.subject(metadata), period_key(b.period, now), to_units(b.limit_usd))
            usage = self.ledger.usage(bucket, now)
            out.append(BudgetStatus(b.label(metadata), bucket.period, b.limit_usd, to_usd(usage.spent),
                                    to_usd(usage.reserved)))
        return out

    def _reason(self, shortfall: Shortfall, hold: Hold) -> str:
        bucket = shortfall.bucket
        budget = next(b for b in self.budgets if b.name == bucket.budget)
        who = f" for {budget.per}={bucket.subject!r}" if budget.per is not None else ""
        return (f"over budget {budget.name!r}{who} ({budget.period} {bucket.period}): worst case "
                f"{_usd(to_usd(hold.amount))} > {_usd(to_usd(shortfall.left))} left of "
                f"{_usd(budget.limit_usd)}")


def _retry_loop(guard_ref: weakref.ReferenceType[BudgetGuard]) -> None:
    """Land a guard's pending settles, backing off while the ledger refuses; ends when none is left."""
    delay = RETRY_FIRST_S
    while True:
        time.sleep(delay)
        guard = guard_ref()
        if guard is None:
            return
        try:
            left = guard.flush_pending()
        except LedgerLostError as err:
            logger.error("pending settles cannot land: %s", err)
            return
        if left == 0:
            return
        del guard
        delay = min(RETRY_MAX_S, delay * 2)


_exit_flush: weakref.WeakSet[BudgetGuard] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Last chance before the process (and with it, its holds' owner) goes away."""
    deadline = time.monotonic() + EXIT_FLUSH_S
    for guard in list(_exit_flush):
        while guard.pending_settles and time.monotonic() < deadline:
            try:
                if guard.flush_pending() == 0:
                    break
            except LedgerLostError:
                break
            time.sleep(RETRY_FIRST_S)
        for item in guard.pending_settles:
            if item.cost is not None:
                logger.error("exiting with $%.6f for %s not recorded in the ledger (%s)",
                             to_usd(item.cost), item.hold.model, item.error)
