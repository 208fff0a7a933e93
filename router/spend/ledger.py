"""The ledger: where budgets' spending and live reservations are kept, behind one Protocol.

Backends (chosen by URL, see :func:`open_ledger`):

- ``sqlite:///path`` — :class:`router.spend.sqlite_ledger.SQLiteLedger`: WAL, ``BEGIN IMMEDIATE``
  transactions, safe across processes on one host. The default, in the user state dir.
- ``redis://host:port/db`` — :class:`router.spend.redis_ledger.RedisLedger`: atomic Lua scripts,
  shared across hosts.
- ``memory://[name]`` — an in-memory SQLite database for one process (routers in the same
  process that name the same URL share it).

Amounts are integer nano-dollars (:data:`UNITS_PER_USD`) inside every backend, so sums are
exact and a limit is never crossed by rounding. A reservation rounds the worst case up.

Example:
    >>> ledger = open_ledger("memory://")
    >>> ledger.reserve(hold, now=time.time())  # None when it fits, else a Shortfall
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from router.errors import RouterError

UNITS_PER_USD = 1_000_000_000


def to_units(usd: float, *, round_up: bool = False) -> int:
    """USD → integer nano-dollars (``round_up`` for reservations: never reserve too little)."""
    scaled = usd * UNITS_PER_USD
    return max(0, math.ceil(scaled - 1e-6) if round_up else round(scaled))


def to_usd(units: int) -> float:
    return units / UNITS_PER_USD


class LedgerError(RouterError):
    """The ledger could not be read or written (database locked too long, Redis unreachable).

    ``backend`` is ``sqlite``, ``redis`` or ``memory``; ``url`` is the ledger URL with any
    password removed.
    """

    def __init__(self, message: str, *, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        super().__init__(f"{backend} ledger {url}: {message}")


class LedgerLostError(LedgerError):
    """The ledger's file was deleted, replaced or truncated under a running router.

    Carrying on would silently start every budget over, so every later operation fails with
    this error (paid calls are refused) until the file is restored or the process restarts.
    ``path`` is the file; ``what`` is ``deleted``, ``replaced`` or ``truncated``.
    """

    def __init__(self, message: str, *, backend: str, url: str, path: str, what: str) -> None:
        self.path = path
        self.what = what
        super().__init__(message, backend=backend, url=url)


@dataclass(frozen=True)
class Bucket:
    """One budget in one period (and, for a ``per:`` budget, for one value of its key)."""

    budget: str
    subject: str | None
    period: str
    limit: int
    keep_until: float = 0.0  # the period's end: counters may be dropped some time after


@dataclass(frozen=True)
class Hold:
    """A reservation: ``amount`` held in every bucket until settled, released or expired."""

    id: str
    buckets: tuple[Bucket, ...]
    amount: int
    expires_at: float
    policy: str
    model: str
    purpose: str = "answer"
    labels: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)  # the per: keys this call was charged by
    owner: str = ""  # router.spend.owner.current_owner() of the reserving process; "" → TTL only


@dataclass(frozen=True)
class Shortfall:
    """Why a reservation did not fit: the first bucket without room, and what it had left."""

    bucket: Bucket
    left: int


@dataclass(frozen=True)
class BucketUsage:
    spent: int
    reserved: int


@dataclass(frozen=True)
class SpendEntry:
    """One settled call: what was spent, where, charged to which budgets. No prompt, no secret."""

    id: str
    ts: float
    policy: str
    model: str
    purpose: str
    cost_usd: float
    worst_case_usd: float
    budgets: tuple[str, ...]
    metadata: dict[str, str]

    @classmethod
    def from_hold(cls, hold: Hold, cost: int, ts: float) -> SpendEntry:
        return cls(hold.id, ts, hold.policy, hold.model, hold.purpose, to_usd(cost), to_usd(hold.amount),
                   hold.labels, dict(hold.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": self.ts, "policy": self.policy, "model": self.model,
                "purpose": self.purpose, "cost_usd": self.cost_usd, "worst_case_usd": self.worst_case_usd,
                "budgets": list(self.budgets), "metadata": dict(self.metadata)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpendEntry:
        return cls(data["id"], float(data["ts"]), data["policy"], data["model"], data["purpose"],
                   float(data["cost_usd"]), float(data["worst_case_usd"]), tuple(data["budgets"]),
                   dict(data["metadata"]))


class Ledger(Protocol):
    """What a budget guard needs from a store. Every method is atomic on its own."""

    url: str
    ttl_s: float

    def reserve(self, hold: Hold, now: float) -> Shortfall | None:
        """Hold ``hold.amount`` in every bucket if all have room (expired holds do not count),
        else hold nothing and say which bucket was short."""

    def settle(self, hold: Hold, cost: int, now: float) -> None:
        """Drop the hold, add ``cost`` to every bucket's spending, record a :class:`SpendEntry`.
        Idempotent: settling the same hold id again changes nothing (safe to retry)."""

    def release(self, hold: Hold) -> None:
        """Drop the hold; nothing spent. Harmless when the hold is already gone."""

    def usage(self, bucket: Bucket, now: float) -> BucketUsage:
        """Spent and (live) reserved amounts of one bucket."""

    def entries(self, since: float | None = None) -> list[SpendEntry]:
        """Settled entries, oldest first, optionally from ``since`` (epoch seconds) on."""

    def close(self) -> None: ...
