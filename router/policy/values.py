"""Strict values in a policy: numbers and flags that are not coerced, keys that are not shown.

Example:
    >>> looks_like_key("OPENAI_API_KEY"), looks_like_key("sk-proj-abc123")
    (False, True)
    >>> describe_value("false")
    "'false' (a str)"
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import Field
from pydantic_core import PydanticCustomError

# Numbers and flags are strict: ``cost_ceiling: true`` is not $1 and ``privacy: "false"`` is not False.
# Amounts are finite: ``.inf`` / ``.nan`` are no price or ceiling (an infinite worst case cannot be
# reserved, and NaN compares false with every limit).
StrictNonNegativeFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
StrictPositiveInt = Annotated[int, Field(strict=True, gt=0)]
_KEY_PREFIXES = ("sk-", "sk_", "AIza", "ya29.", "ghp_", "gho_", "github_pat_", "xox", "hf_", "glpat-")


def looks_like_key(value: str) -> bool:
    """A credential rather than an environment variable's name (``sk-...``, ``AIza...``, or a
    long mixed-case alphanumeric token)."""
    if value.startswith(_KEY_PREFIXES):
        return True
    return (len(value) >= 24 and "_" not in value and any(c.islower() for c in value)
            and any(c.isupper() for c in value) and any(c.isdigit() for c in value))


def strict_flag(field: str, value: Any, *, auto: bool = False) -> Any:
    if isinstance(value, bool) or (auto and value == "auto"):
        return value
    allowed = "true, false or auto" if auto else "true or false"
    raise PydanticCustomError("strict_flag", "{field} takes {allowed}, not {shown}",
                              {"field": field, "allowed": allowed, "shown": describe_value(value)})


def describe_value(value: Any) -> str:
    """``'false' (a string)``: how a rejected value is shown (short, typed)."""
    if isinstance(value, (str, int, float)) or value is None:
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        return f"{text} (a {type(value).__name__ if value is not None else 'null'})"
    return f"a {type(value).__name__}"


def is_loopback_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if not url:
        return False
    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
