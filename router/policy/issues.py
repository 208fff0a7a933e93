"""Policy issues located in their file: from a path in the document, or from a pydantic error.

A rejected value shown in a message (``(got 'redis://...')``) goes through :func:`shown_value`:
shortened, a huge integer described rather than printed (``repr`` of a 5,000-digit int raises),
and the user-info of any URL (``admin:password@``) masked, in the value and in the message.

Example:
    >>> issue(doc, "p.yaml", ("policy", "privacy"), "privacy takes true or false").line
    7
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from router.errors import PolicyIssue
from router.policy.yaml_source import LocatedDocument

# ``scheme://user:password@`` or ``scheme://token@``: the user-info runs to the last ``@`` of the
# URL, so an unescaped ``@``, ``/`` or ``#`` in a password cannot leave part of it in the open.
# Quotes count as part of it (RFC 3986 allows ``'`` in a password): masking too much is harmless.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(\S*)@")
MAX_SHOWN = 80
_MAX_INT_BITS = 256  # larger integers are described by their size, never converted to text


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it masked (``user:password@`` becomes
    ``user:***@``; a lone ``token@`` becomes ``***@``).

    Example:
        >>> mask_urls("redis://admin:pw@db:6379/0")
        'redis://admin:***@db:6379/0'
    """
    return _USERINFO.sub(_mask_userinfo, text)


def shown_value(value: Any) -> str:
    """How a rejected value appears in a message: its ``repr``, URL user-info masked, at most
    :data:`MAX_SHOWN` characters; an integer too large to print is described by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(mask_urls(value)) if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def closest(word: str, choices: Any) -> str | None:
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def issue(doc: LocatedDocument, filename: str, path: tuple[str | int, ...], message: str, *,
           prefer_key: bool = False, suggestion: str | None = None, at: Any = None) -> PolicyIssue:
    where = at or doc.locate(path, prefer_key=prefer_key)
    key = ".".join(str(p) for p in path)
    return PolicyIssue(mask_urls(message), filename, where.line, where.column, key, suggestion)


def from_validation(doc: LocatedDocument, filename: str, err: ValidationError, *,
                     prefix: tuple[str | int, ...] = (),
                     model: type[BaseModel] | None = None,
                     allowed_keys: Callable[[tuple[str | int, ...]], list[str]] = lambda path: [],
                     ) -> list[PolicyIssue]:
    issues = []
    # Unknown keys first: a misspelt key usually explains the "missing" error beside it.
    for e in sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        path = doc_path(doc, prefix, e["loc"])
        if e["type"] == "extra_forbidden":
            key = path[-1]
            allowed = list(model.model_fields) if model else allowed_keys(path[:-1])
            issues.append(issue(doc, filename, path, f"unknown key {key!r}", prefer_key=True,
                                 suggestion=closest(str(key), allowed)))
        elif e["type"] == "missing":
            issues.append(issue(doc, filename, path, "required key is missing"))
        else:
            value = doc.env_raw.get(path, e.get("input"))  # ${VAR}, never the value it held
            secret = e["type"] in ("env_name", "strict_flag") or (path and path[-1] == "api_key_env")
            shown = f" (got {shown_value(value)})" if isinstance(value, (str, int, float, bool)) and not secret else ""
            issues.append(issue(doc, filename, path, f"{e['msg']}{shown}"))
    return issues


def doc_path(doc: LocatedDocument, prefix: tuple[str | int, ...], loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """A pydantic error location as a document path: pydantic's own steps (``function-after[...]``,
    ``literal['auto']``) are dropped, a key that merely contains ``[`` is kept."""
    path = prefix
    for part in loc:
        if isinstance(part, str) and "[" in part and (*path, part) not in doc.keys:
            continue
        path = (*path, part)
    return path

