"""Map a network client's exception to a typed :class:`ProviderError` (never leaking secrets)."""

from __future__ import annotations

import re

from router.errors import ProviderError

_SECRETISH = re.compile(r"(key=|api[_-]?key[\"']?\s*[:=]\s*[\"']?|Bearer\s+)[^\s\"'&]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove anything that looks like a credential from an error text."""
    return _SECRETISH.sub(r"\1***", text)


def translate_http_error(provider: str, model: str, exc: BaseException) -> ProviderError | None:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    name = type(exc).__name__.lower()
    if isinstance(status, int):
        kind = ("rate_limit" if status == 429 else "server" if status >= 500 else
                "auth" if status in (401, 403) else "bad_request")
    elif "timeout" in name:
        kind = "timeout"
    elif "connect" in name:
        kind = "connection"
    elif isinstance(exc, (ValueError, KeyError, TypeError)) or "decode" in name or "json" in name:
        kind = "malformed"
    elif isinstance(exc, (OSError, ConnectionError)) or "api" in name or "error" in name:
        kind = "other"
    else:
        return None
    return ProviderError(scrub(str(exc))[:500], provider=provider, model=model, kind=kind,
                         status_code=status if isinstance(status, int) else None)
