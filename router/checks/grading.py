"""Grade an answer against a labeled reference: is it right?

Used to label outcomes on a labeled prompt set (``data/labeled/prompts.jsonl``) before
calibrating checks on them. ``extract`` names how (as in each row of the set):

- ``contains``: the reference (or one of ``aliases``) appears in the answer as whole words;
- ``number``: the answer's number (:func:`router.checks.extractors.extract_number`) equals it;
- ``number_only``: the stripped answer *is* that number (a format instruction);
- ``yes_no``: the answer's first word is the reference's yes or no;
- ``one_word``: the answer is one word (trailing punctuation aside) equal to it;
- ``tool_call``: the answer calls the reference's tool with the same arguments;
- ``open``: no single answer; any non-empty complete answer is right.

Example:
    >>> grade({"extract": "contains", "reference": "Paris"}, " The capital of France is Paris.")
    True
    >>> grade({"extract": "yes_no", "reference": "no"}, "Yes, it is.")
    False
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from router.checks.extractors import canonical_number, extract_number, normalize_text

_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def _words(text: str) -> str:
    return f" {normalize_text(text) or ''} "


def grade(row: Mapping[str, Any], text: str, tool_calls: Sequence[Mapping[str, Any]] = (),
          complete: bool = True) -> bool:
    """True when ``text`` (or ``tool_calls``) answers ``row`` right."""
    kind, ref = row["extract"], row.get("reference")
    if kind == "tool_call":
        return any(c.get("name") == ref["name"] and dict(c.get("args") or {}) == ref["args"] for c in tool_calls)
    text = text or ""
    if kind == "open":
        return bool(text.strip()) and complete
    if kind == "contains":
        said = _words(text)
        return any(_words(r).strip() and _words(r) in said for r in [ref, *row.get("aliases", ())])
    if kind == "number":
        return extract_number(text) == canonical_number(str(ref))
    if kind == "number_only":
        stripped = text.strip().rstrip(".")
        return bool(re.fullmatch(r"-?\d+(?:\.\d+)?", stripped)) and canonical_number(stripped) == str(ref)
    if kind == "yes_no":
        found = _YES_NO.match(text)
        return found is not None and found.group(1).lower() == ref
    if kind == "one_word":
        words = (normalize_text(text) or "").split()
        return len(words) == 1 and words[0] in {normalize_text(r) for r in [ref, *row.get("aliases", ())]}
    raise ValueError(f"unknown extract {kind!r}")


__all__ = ["grade"]
