"""Open a ledger from its URL: ``sqlite:///path``, ``redis://host:port/db`` or ``memory://``.

Example:
    >>> from router.spend.ledger_url import open_ledger
    >>> ledger = open_ledger("memory://doc")
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlparse, urlunparse

from router.spend.config import DEFAULT_TTL_S, redact
from router.spend.ledger import Ledger, LedgerError


def default_ledger_url() -> str:
    """``sqlite:///<user state dir>/ledger.db`` (platformdirs)."""
    from platformdirs import user_state_path

    return f"sqlite:///{user_state_path('policy-router', ensure_exists=True) / 'ledger.db'}"


_memory_ledgers: dict[str, Ledger] = {}
_memory_lock = threading.Lock()


def open_ledger(url: str | None = None) -> Ledger:
    """Open the ledger at ``url`` (default: :func:`default_ledger_url`)."""
    url = url or default_ledger_url()
    parsed = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    ttl_s = float(options.get("ttl_s", DEFAULT_TTL_S))
    if parsed.scheme == "sqlite":
        from router.spend.sqlite_ledger import SQLiteLedger

        path = parsed.path[1:] if parsed.path.startswith("//") else parsed.path
        return SQLiteLedger(path, ttl_s=ttl_s, url=url)
    if parsed.scheme in ("redis", "rediss"):
        from router.spend.redis_ledger import RedisLedger

        return RedisLedger(urlunparse(parsed._replace(query="")), ttl_s=ttl_s,
                           prefix=options.get("prefix", "router-spend"))
    if parsed.scheme == "memory":
        from router.spend.sqlite_ledger import SQLiteLedger

        with _memory_lock:
            if url not in _memory_ledgers:
                _memory_ledgers[url] = SQLiteLedger(":memory:", ttl_s=ttl_s, url=url, backend="memory")
            return _memory_ledgers[url]
    raise LedgerError("unknown scheme; use sqlite:///path, redis://host:port/db or memory://",
                      backend=parsed.scheme or "?", url=redact(url))
