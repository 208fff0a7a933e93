"""Strict values in a policy: numbers and flags that are not coerced, keys that are not shown.

Example:
    >>> looks_like_key("OPENAI_API_KEY"), looks_like_key("sk-proj-abc123")
    (False, True)
    >>> describe_value("false")
    "'false' (a str)"
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError, PydanticKnownError

# Numbers and flags are strict: ``cost_ceiling: true`` is not $1 and ``privacy: "false"`` is not False.
# Amounts are finite: ``.inf`` / ``.nan`` are no price or ceiling (an infinite worst case cannot be
# reserved, and NaN compares false with every limit).
#
# Every number and flag read from a policy file uses one of these (with its range as ``Field(...)``):
# a float field takes an int (``timeout_s: 5``) but never a bool or a string; an int field takes
# neither a bool nor a float; a flag takes only ``true``/``false``. Strictness is per field, never
# ``ConfigDict(strict=True)`` on a model, which would also refuse a YAML list for a tuple field.
StrictFiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
StrictNonNegativeFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
StrictPositiveFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
StrictInt = Annotated[int, Field(strict=True)]
StrictPositiveInt = Annotated[int, Field(strict=True, gt=0)]
StrictBool = Annotated[bool, Field(strict=True)]


def _exact_version(value: Any) -> Any:
    # ``Literal[1]`` alone takes ``true`` and ``1.0`` (they equal 1): the version is the integer 1.
    if isinstance(value, (bool, float)):
        raise PydanticKnownError("literal_error", {"expected": "1"})
    return value


Version = Annotated[Literal[1], BeforeValidator(_exact_version)]

_KEY_PREFIXES = ("sk-", "sk_", "AIza", "ya29.", "ghp_", "gho_", "github_pat_", "xox", "hf_", "glpat-")


def looks_like_key(value: str) -> bool:
    """A credential rather than an environment variable's name (``sk-...``, ``AIza...``, or a
    long mixed-case alphanumeric token)."""
    if value.startswith(_KEY_PREFIXES):
        return True
    return (len(value) >= 24 and "_" not in value and any(c.islower() for c in value)
            and any(c.isupper() for c in value) and any(c.isdigit() for c in value))


def _env_name(name: str) -> str:
    # The message never repeats the value: it is often the key itself.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or looks_like_key(name):
        raise PydanticCustomError(
            "env_name", "must be the *name* of an environment variable (like OPENAI_API_KEY); "
            "this value looks like a key, so it is not shown")
    return name


EnvVarName = Annotated[str, AfterValidator(_env_name)]  # ``api_key_env``: a variable's name, never a key


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
    """Whether ``url`` points at this machine (``localhost``, ``127.0.0.0/8``, ``::1``, a unix
    socket: ``unix:/path`` or ``http+unix://...``)."""
    if not url:
        return False
    try:
        parsed = urlparse(url)
        host = parsed.hostname or ""
    except ValueError:
        return False
    if parsed.scheme in ("unix", "http+unix"):
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
