"""The effective policy for one request: ``policy:`` + first matching rule + per-call overrides.

Overrides come from ``config={"configurable": {...}}`` or the CLI's ``--set``. They are
validated as the same strict types as the policy file (``privacy`` takes ``True``/``False``
only, never ``"false"``, ``0`` or ``"off"``). Privacy and offline only ratchet one way: a rule
or override may turn them on, never off once the file or a rule has turned them on (fails
closed); the comparison runs on the validated, merged settings. Anything else in ``configurable`` that is not a
policy field is left alone (other runnables in a chain use it), unless it looks meant for a
policy field (``PRIVACY``, ``privcy``, ``privacy_mode``: :func:`near_field`), which is an error
naming the field rather than a silently ignored privacy flag.

Example:
    >>> eff = effective_settings(policy, metadata={"data_class": "pii"})
    >>> eff.settings.privacy
    True
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from router.errors import PolicyError, PolicyIssue
from router.policy.policy_file import Policy, PolicySettings

FIELDS = tuple(PolicySettings.model_fields)


@dataclass(frozen=True)
class Effective:
    settings: PolicySettings
    rule: str | None = None


def policy_overrides(configurable: Mapping[str, Any], *, strict: bool = False,
                     origin: str = "<configurable>") -> dict[str, Any]:
    """Pick the policy fields out of ``configurable``.

    With ``strict`` (the CLI), every key must be a policy field. Otherwise unrelated keys are
    ignored (``thread_id``, ``checkpoint_ns``, ``__pregel_...``), but a key that looks meant for
    a policy field raises, naming it: the field in another case or spelling (``PRIVACY``,
    ``costCeiling``, ``cost-ceiling``), a typo (``privcy``), or the field's words with one more
    (``privacy_mode``, ``enable_privacy``). See :func:`near_field`.
    """
    picked: dict[str, Any] = {}
    issues: list[PolicyIssue] = []
    for key, value in configurable.items():
        if not isinstance(key, str):
            continue  # not ours: policy fields are strings
        if key in FIELDS:
            picked[key] = value
            continue
        close = near_field(key) if not strict else near_field(key, cutoff=0.5)
        if strict or close:
            issues.append(PolicyIssue(f"unknown policy field {key!r}", origin, key=key, suggestion=close))
    if issues:
        raise PolicyError(issues)
    return picked


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_FIELD_WORDS = {name: tuple(name.split("_")) for name in FIELDS}


def _words(key: str) -> tuple[str, ...]:
    """``costCeiling``, ``cost-ceiling``, ``COST_CEILING`` -> ``("cost", "ceiling")``."""
    return tuple(w.lower() for w in _WORD.findall(key))


def near_field(key: str, *, cutoff: float = 0.8) -> str | None:
    """The policy field ``key`` (not a field itself) seems meant for, else None.

    A near miss is: the same words in another case or separator; a spelling within ``cutoff``
    (difflib's ratio, on the words joined); or the field's words, in order, with one word more
    before or after them. Other runnables' keys (``thread_id``, ``checkpoint_ns``, ``user_id``,
    ``max_tokens``) are none of these.

    Example:
        >>> near_field("PRIVACY"), near_field("privacy_mode"), near_field("privcy"), near_field("thread_id")
        ('privacy', 'privacy', 'privacy', None)
    """
    words = _words(key)
    joined = "_".join(words)
    for name, field_words in _FIELD_WORDS.items():
        if words == field_words:
            return name
    for name, field_words in _FIELD_WORDS.items():
        n = len(field_words)
        if len(words) == n + 1 and field_words in (words[:n], words[1:]):
            return name
    close = difflib.get_close_matches(joined, FIELDS, n=1, cutoff=cutoff)
    return close[0] if close else None


def effective_settings(policy: Policy, *, metadata: Mapping[str, Any] | None = None,
                       tags: Sequence[str] | None = None,
                       overrides: Mapping[str, Any] | None = None,
                       origin: str = "<configurable>") -> Effective:
    """Apply the first matching rule, then ``overrides``; validate strictly; enforce the ratchets.

    Each layer is validated as the policy file's own types (``privacy: "false"`` or ``0`` is an
    error, never False); the "only turned on" comparison runs on the validated settings.
    """
    base = policy.policy
    rule_name: str | None = None
    layered = base
    for i, rule in enumerate(policy.rules):
        if rule.when.matches(metadata or {}, tags or ()):
            rule_name = rule.name or f"rules[{i}]"
            layered = _layer(policy, layered, rule.set_, f"rule {rule_name}")
            break
    privacy_floor = base.privacy or layered.privacy
    offline_floor = base.offline is True or layered.offline is True
    overrides = dict(overrides or {})
    if not overrides:
        if (privacy_floor and not layered.privacy) or (offline_floor and layered.offline is not True):
            raise PolicyError([PolicyIssue("a rule cannot relax privacy or offline", f"rule {rule_name}")])
        return Effective(layered, rule_name)
    settings = _layer(policy, layered, overrides, origin)
    issues: list[PolicyIssue] = []
    if privacy_floor and settings.privacy is not True:
        issues.append(PolicyIssue("privacy is on for this request and cannot be turned off by an "
                                  "override", origin, key="privacy"))
    if offline_floor and settings.offline is not True:
        issues.append(PolicyIssue("offline is on for this request and cannot be relaxed by an "
                                  "override", origin, key="offline"))
    if "cascade" in overrides:
        for i, model in enumerate(settings.cascade):
            if model not in policy.models:
                close = difflib.get_close_matches(model, list(policy.models), n=1)
                issues.append(PolicyIssue(f"{model!r} is not in the policy's models", origin,
                                          key=f"cascade.{i}", suggestion=close[0] if close else None))
            elif model in settings.cascade[:i]:
                issues.append(PolicyIssue(f"{model!r} is named twice in the cascade", origin, key=f"cascade.{i}"))
    if "quality_tier" in overrides and settings.quality_tier not in policy.tiers:
        close = difflib.get_close_matches(settings.quality_tier, list(policy.tiers), n=1)
        issues.append(PolicyIssue(f"unknown tier {settings.quality_tier!r}", origin, key="quality_tier",
                                  suggestion=close[0] if close else None))
    if issues:
        raise PolicyError(issues)
    return Effective(settings, rule_name)


def _layer(policy: Policy, under: PolicySettings, changes: Mapping[str, Any], origin: str) -> PolicySettings:
    """``under`` with ``changes`` applied, validated as strictly as the policy file."""
    try:
        return PolicySettings.model_validate({**dict(under), **changes},  # built checks kept as they are
                                             context={"allow_code": policy.allow_code})
    except ValidationError as err:
        raise PolicyError([PolicyIssue(e["msg"], origin, key=".".join(map(str, e["loc"])) or "confidence")
                           for e in err.errors()]) from None
