"""What happened to each rung, one line each, and the rungs lost to configuration.

:func:`rung_lines` says which rungs ran and why each was not accepted (``router ask`` prints them
on stderr; a :class:`~router.errors.RoutingError` carries them in its message).
:func:`warn_lost_rungs` logs, once per router, model and reason, a rung that could never answer
as configured (a refused key, a GGUF file that is not there, a model package not installed) at
WARNING on the ``router.routing`` logger: such a rung fails the same way on every request, and
the cascade would otherwise quietly pay the next one. No secret is in any line: errors are
scrubbed when they are made, and an auth failure names the key's variable, never its value.

Example:
    >>> print("\\n".join(rung_lines(decision)))
    gemma-270m: not accepted: complete: empty answer: no text and no tool call
    gpt-3.5-turbo: auth: 401 from https://api.openai.com/v1 (check OPENAI_API_KEY)
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from router.routing.decision import Attempt, Decision, Exclusion

logger = logging.getLogger("router.routing")

#: Exclusion reasons that mean a configured model cannot run here (a path or a package that is
#: not there), as opposed to one the user left off on purpose (``TINYLLAMA_GGUF not set``).
_LOST = ("not found", "not installed")
_seen: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_seen_lock = threading.Lock()


def attempt_line(attempt: Attempt, final_model: str | None = None) -> str:
    """``model: verdict`` for one attempt."""
    if attempt.accepted:
        return f"{attempt.model}: accepted"
    if attempt.error is not None:
        error = attempt.error
        kind = error.get("kind", "error")
        if kind == "empty":
            return f"{attempt.model}: no answer"
        return f"{attempt.model}: {kind}: {error.get('hint') or error.get('message') or ''}".rstrip(": ")
    failed = next((c for c in attempt.checks if not c.passed), None)
    why = "not accepted"
    if failed is not None:
        score = f" (score {failed.score})" if failed.score is not None else ""
        detail = f": {failed.error or failed.detail}" if (failed.error or failed.detail) else ""
        why = f"not accepted: {failed.check}{score}{detail}"
    return f"{attempt.model}: {why}" + ("; returned as the best answer" if attempt.model == final_model else "")


def exclusion_line(exclusion: Exclusion) -> str:
    return f"{exclusion.model}: not tried: {exclusion.reason}"


def rung_lines(decision: Decision) -> list[str]:
    """One line per attempt, then one per excluded candidate."""
    final = decision.final_model if decision.status == "exhausted" else None
    return [attempt_line(a, final) for a in decision.attempts] + [exclusion_line(e) for e in decision.excluded]


def lost_to_configuration(decision: Decision) -> list[tuple[str, str]]:
    """``(model, reason)`` for each rung this request lost to configuration."""
    lost = [(e.model, e.reason) for e in decision.excluded if any(word in e.reason for word in _LOST)]
    for attempt in decision.attempts:
        if attempt.error is not None and attempt.error.get("kind") == "auth":
            lost.append((attempt.model, attempt_line(attempt).partition(": ")[2]))
    return lost


def warn_lost_rungs(owner: Any, decision: Decision) -> None:
    """Log each rung of ``decision`` lost to configuration at WARNING, once per ``owner`` (the
    router's catalog), model and reason."""
    lost = lost_to_configuration(decision)
    if not lost:
        return
    with _seen_lock:
        seen = _seen.setdefault(owner, set())
        fresh = [item for item in lost if item not in seen]
        seen.update(fresh)
    for model, reason in fresh:
        logger.warning("policy %r: model %r cannot answer as configured: %s", decision.policy, model, reason)
