"""The SQLite ledger: one file, safe across threads and processes on one host.

WAL journal (readers never block the writer), and every reserve/settle is one
``BEGIN IMMEDIATE`` transaction: it takes the database's write lock before reading, so two
processes can never both see the same room and both take it. ``memory://`` uses the same code
on an in-memory database.

A hold records its owner (:mod:`router.spend.owner`): past its TTL it expires only if that
process is gone, so a hold whose settle is still waiting for the ledger (or whose call is slow)
keeps holding its worst case. Before every operation the file is checked to be the one that was
opened: a deleted, replaced or truncated file raises :class:`LedgerLostError` instead of letting
a fresh file start every budget over.

Example:
    >>> ledger = SQLiteLedger("/tmp/ledger.db")
    >>> ledger.reserve(hold, now=time.time()) is None   # it fitted
    True
    >>> ledger.settle(hold, cost=1200, now=time.time())
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from router.files import NotRegularFileError, read_head
from router.spend.config import DEFAULT_TTL_S
from router.spend.ledger import (
    Bucket,
    BucketUsage,
    Hold,
    LedgerError,
    LedgerLostError,
    Shortfall,
    SpendEntry,
    to_usd,
)
from router.spend.owner import owner_alive

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    budget TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, subject, period));
CREATE TABLE IF NOT EXISTS holds (
    id TEXT NOT NULL, budget TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL,
    amount INTEGER NOT NULL, expires_at REAL NOT NULL, owner TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (id, budget, subject, period));
CREATE INDEX IF NOT EXISTS holds_by_bucket ON holds (budget, subject, period);
CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds (expires_at);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY, ts REAL NOT NULL, policy TEXT NOT NULL, model TEXT NOT NULL,
    purpose TEXT NOT NULL, cost INTEGER NOT NULL, worst_case INTEGER NOT NULL,
    budgets TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_by_ts ON entries (ts);
"""


_HEADER = b"SQLite format 3\x00"


def _key(bucket: Bucket) -> tuple[str, str, str]:
    return bucket.budget, bucket.subject or "", bucket.period


class SQLiteLedger:
    """A :class:`router.spend.ledger.Ledger` in one SQLite file (or in memory)."""

    def __init__(self, path: str | Path, *, ttl_s: float = DEFAULT_TTL_S, url: str | None = None,
                 backend: str = "sqlite", busy_timeout_s: float = 30.0) -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self.ttl_s = ttl_s
        self.backend = backend
        self._lock = threading.Lock()  # one connection per ledger, shared by threads
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crashed process loses nothing
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(holds)")}
                if "owner" not in columns:  # a ledger file from before holds had owners
                    self._db.execute("ALTER TABLE holds ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            self._identity = self._file_identity() if self.path != ":memory:" else None
            self._largest = 0  # the largest size seen: a file that shrinks below it was cut
        except (sqlite3.Error, OSError) as err:
            raise LedgerError(str(err), backend=backend, url=self.url) from err

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.url!r}, ttl_s={self.ttl_s})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on any error), under this ledger's lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _file_identity(self) -> tuple[int, int]:
        stat = os.stat(self.path)
        return stat.st_dev, stat.st_ino

    def _check_file(self) -> None:
        """Fail closed when the file under us is not the ledger we opened (SQLite itself would
        carry on writing to a deleted inode, or to a fresh empty file after a truncation)."""
        if self._identity is None:
            return
        what = None
        try:
            stat = os.stat(self.path)
            header = read_head(self.path, 100)  # never blocks: the path may now name a FIFO
        except FileNotFoundError:
            what = "deleted"
        except NotRegularFileError:
            what = "replaced"
        except OSError as err:
            raise LedgerError(f"cannot read the ledger file: {err.strerror}", backend=self.backend,
                              url=self.url) from err
        else:
            page_size = int.from_bytes(header[16:18], "big")
            page_size = 65536 if page_size == 1 else page_size  # how the format writes 64 KiB
            if (stat.st_dev, stat.st_ino) != self._identity:
                what = "replaced"
            elif len(header) < 100 or not header.startswith(_HEADER):
                what = "truncated"
            elif stat.st_size < self._largest and stat.st_size < int.from_bytes(header[28:32], "big") * page_size:
                # Smaller than before *and* than its header says (a checkpoint in progress may
                # show the header before the file grows; a VACUUM shrinks both together).
                what = "truncated"
            self._largest = max(self._largest, stat.st_size)
        if what is not None:
            raise LedgerLostError(f"the ledger file {self.path} was {what} while this process was using "
                                  "it; paid calls are refused so that no budget silently starts over "
                                  "(restore the file, or restart to begin a new ledger)",
                                  backend=self.backend, url=self.url, path=self.path, what=what)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._check_file()
        try:
            with self._transaction() as db:
                return work(db)
        except sqlite3.Error as err:
            self._check_file()  # a truncated file may first show up as "malformed"
            raise LedgerError(str(err), backend=self.backend, url=self.url) from err

    @staticmethod
    def _purge(db: sqlite3.Connection, now: float) -> None:
        """Drop expired holds, except those whose owner process is still running here."""
        expired = db.execute("SELECT DISTINCT id, owner FROM holds WHERE expires_at <= ?", (now,)).fetchall()
        gone = [(hold_id,) for hold_id, owner in expired if not owner_alive(owner)]
        db.executemany("DELETE FROM holds WHERE id = ?", gone)

    def reserve(self, hold: Hold, now: float) -> Shortfall | None:
        def work(db: sqlite3.Connection) -> Shortfall | None:
            self._purge(db, now)
            for bucket in hold.buckets:
                usage = self._usage(db, bucket)
                left = bucket.limit - usage.spent - usage.reserved
                if hold.amount > left:
                    return Shortfall(bucket, max(0, left))
            db.executemany("INSERT INTO holds VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(hold.id, *_key(b), hold.amount, hold.expires_at, hold.owner)
                            for b in hold.buckets])
            return None

        return self._run(work)

    def settle(self, hold: Hold, cost: int, now: float) -> None:
        entry = SpendEntry.from_hold(hold, cost, now)

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM holds WHERE id = ?", (hold.id,))
            if db.execute("SELECT 1 FROM entries WHERE id = ?", (hold.id,)).fetchone():
                return  # settled already (a retried settle): count it once
            db.executemany("INSERT INTO buckets VALUES (?, ?, ?, ?) ON CONFLICT (budget, subject, period) "
                           "DO UPDATE SET spent = spent + excluded.spent",
                           [(*_key(b), cost) for b in hold.buckets])
            db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (entry.id, entry.ts, entry.policy, entry.model, entry.purpose, cost, hold.amount,
                        json.dumps(list(entry.budgets)), json.dumps(entry.metadata, sort_keys=True)))

        self._run(work)

    def release(self, hold: Hold) -> None:
        self._run(lambda db: db.execute("DELETE FROM holds WHERE id = ?", (hold.id,)))

    def usage(self, bucket: Bucket, now: float) -> BucketUsage:
        def work(db: sqlite3.Connection) -> BucketUsage:
            self._purge(db, now)
            return self._usage(db, bucket)

        return self._run(work)

    @staticmethod
    def _usage(db: sqlite3.Connection, bucket: Bucket) -> BucketUsage:
        row = db.execute("SELECT spent FROM buckets WHERE budget = ? AND subject = ? AND period = ?",
                         _key(bucket)).fetchone()
        (reserved,) = db.execute("SELECT COALESCE(SUM(amount), 0) FROM holds WHERE budget = ? AND "
                                 "subject = ? AND period = ?", _key(bucket)).fetchone()
        return BucketUsage(int(row[0]) if row else 0, int(reserved))

    def entries(self, since: float | None = None) -> list[SpendEntry]:
        def work(db: sqlite3.Connection) -> list[SpendEntry]:
            rows = db.execute("SELECT id, ts, policy, model, purpose, cost, worst_case, budgets, metadata "
                              "FROM entries WHERE ts >= ? ORDER BY ts, id",
                              (since if since is not None else float("-inf"),)).fetchall()
            return [SpendEntry(r[0], r[1], r[2], r[3], r[4], to_usd(r[5]), to_usd(r[6]),
                               tuple(json.loads(r[7])), json.loads(r[8])) for r in rows]

        return self._run(work)

    def close(self) -> None:
        with self._lock:
            self._db.close()
