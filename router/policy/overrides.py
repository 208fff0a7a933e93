"""The effective policy for one request: ``policy:`` + first matching rule + per-call overrides.

Overrides come from ``config={"configurable": {...}}`` or the CLI's ``--set``. Privacy and
offline only ratchet one way: a rule or override may turn them on, never off once the file or
a rule has turned them on (fails closed). Anything else in ``configurable`` that is not a
policy field is left alone (other runnables in a chain use it), unless it looks like a typo of
a policy field, which is an error rather than a silently ignored privacy flag.

Example:
    >>> eff = effective_settings(policy, metadata={"data_class": "pii"})
    >>> eff.settings.privacy
    True
"""

from __future__ import annotations

import difflib
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
    ignored, but a near-miss of a field name ("privcy") raises.
    """
    picked: dict[str, Any] = {}
    issues: list[PolicyIssue] = []
    for key, value in configurable.items():
        if key in FIELDS:
            picked[key] = value
            continue
        close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.8 if not strict else 0.5)
        if strict or close:
            issues.append(PolicyIssue(f"unknown policy field {key!r}", origin, key=key,
                                      suggestion=close[0] if close else None))
    if issues:
        raise PolicyError(issues)
    return picked


def effective_settings(policy: Policy, *, metadata: Mapping[str, Any] | None = None,
                       tags: Sequence[str] | None = None,
                       overrides: Mapping[str, Any] | None = None,
                       origin: str = "<configurable>") -> Effective:
    """Apply the first matching rule, then ``overrides``; validate; enforce the ratchets."""
    base = policy.policy
    rule_name: str | None = None
    merged: dict[str, Any] = {}
    for i, rule in enumerate(policy.rules):
        if rule.when.matches(metadata or {}, tags or ()):
            merged.update(rule.set_)
            rule_name = rule.name or f"rules[{i}]"
            break
    privacy_floor = base.privacy or bool(merged.get("privacy"))
    offline_floor = base.offline is True or merged.get("offline") is True
    overrides = dict(overrides or {})
    issues: list[PolicyIssue] = []
    if privacy_floor and overrides.get("privacy") is False:
        issues.append(PolicyIssue("privacy is on for this request and cannot be turned off by an "
                                  "override", origin, key="privacy"))
    if offline_floor and "offline" in overrides and overrides["offline"] is not True:
        issues.append(PolicyIssue("offline is on for this request and cannot be relaxed by an "
                                  "override", origin, key="offline"))
    for i, model in enumerate(overrides.get("cascade") or ()):
        if model not in policy.models:
            close = difflib.get_close_matches(str(model), list(policy.models), n=1)
            issues.append(PolicyIssue(f"{model!r} is not in the policy's models", origin,
                                      key=f"cascade.{i}", suggestion=close[0] if close else None))
    tier = overrides.get("quality_tier")
    if tier is not None and tier not in policy.tiers:
        close = difflib.get_close_matches(str(tier), list(policy.tiers), n=1)
        issues.append(PolicyIssue(f"unknown tier {tier!r}", origin, key="quality_tier",
                                  suggestion=close[0] if close else None))
    if issues:
        raise PolicyError(issues)
    merged.update(overrides)
    if not merged:
        return Effective(base, rule_name)
    try:
        settings = PolicySettings.model_validate({**base.model_dump(), **merged})
    except ValidationError as err:
        raise PolicyError([PolicyIssue(e["msg"], origin, key=".".join(map(str, e["loc"])))
                           for e in err.errors()]) from None
    return Effective(settings, rule_name)
