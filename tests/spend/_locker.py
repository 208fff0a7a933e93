"""A second OS process that write-locks a SQLite ledger on command, for the durable-settle tests.

    python _locker.py LEDGER_FILE
    stdin "lock"    → BEGIN IMMEDIATE (holds the write lock), says "locked"
    stdin "release" → COMMIT, then at once tries to reserve ROOM nano-dollars of the day's
                      "daily" budget (as another router would), says "fitted" (and releases
                      it again) or "refused"
    stdin "exit"    → exits
"""

from __future__ import annotations

import sqlite3
import sys
import time
import uuid

from router.spend import Bucket, Hold
from router.spend.periods import period_key
from router.spend.sqlite_ledger import SQLiteLedger


def main() -> None:
    path, limit, room = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    ledger = SQLiteLedger(path, busy_timeout_s=30)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "lock":
            db.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
        elif command == "release":
            db.execute("COMMIT")
            now = time.time()
            today = Bucket("daily", None, period_key("day", now), limit)
            hold = Hold(uuid.uuid4().hex, (today,), room, now + 60, "other", "flash")
            fitted = ledger.reserve(hold, now) is None
            if fitted:
                ledger.release(hold)  # it only asks: the router's own calls are counted next
            print("fitted" if fitted else "refused", flush=True)
        elif command == "exit":
            return


if __name__ == "__main__":
    main()
