"""The policy file: typed, validated, immutable.

A policy is read from YAML into pydantic models. Unknown keys are errors with a "did you
mean"; every error names file, line, column and key; ``${VAR}`` / ``${VAR:-default}`` are
substituted when the file loads. ``rules:`` and per-call overrides produce an *effective*
:class:`PolicySettings` for one request (see :func:`effective_settings`).

Example:
    >>> policy = load_policy("policies/default.yaml")
    >>> policy.policy.cost_ceiling
    0.05
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from router.checks import CheckSpec, build_check, check_class, registered_checks
from router.errors import PolicyError, PolicyIssue
from router.policy.routing_block import RoutingBlock
from router.policy.yaml_source import LocatedDocument, YamlSyntaxError, load_located
from router.spend.config import Budget, LedgerURL, budget_problems

Provider = Literal["llamacpp", "openai", "google_genai", "recorded"]
NETWORK_PROVIDERS = frozenset({"openai", "google_genai"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Frozen):
    """USD per one million tokens."""

    input: NonNegativeFloat = 0.0
    output: NonNegativeFloat = 0.0


class ModelSpec(_Frozen):
    """One entry of the ``models:`` catalog."""

    provider: Provider
    model: str | None = None
    gguf: str | None = None
    chat_format: str | None = None
    tier: str = "basic"
    local: bool = False
    price: Price = Price()
    context_window: PositiveInt | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(0, ge=0, le=10)
    n_threads: PositiveInt | None = None
    n_batch: PositiveInt = 512
    dataset: str | None = None

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or not name.replace("_", "a").isalnum()):
            raise ValueError("must be the *name* of an environment variable, not a key")
        return name

    @property
    def is_network(self) -> bool:
        return self.provider in NETWORK_PROVIDERS

    def worst_case_usd(self, input_tokens: int, max_output_tokens: int) -> float:
        return (input_tokens * self.price.input + max_output_tokens * self.price.output) / 1e6

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price.input + output_tokens * self.price.output) / 1e6


class PolicySettings(_Frozen):
    """The ``policy:`` block: what one request may do. Rules and overrides replace fields."""

    cost_ceiling: NonNegativeFloat = 0.05
    privacy: bool = False
    offline: bool | Literal["auto"] = "auto"
    quality_tier: str = "basic"
    max_output_tokens: PositiveInt = 512
    temperature: float = Field(0.0, ge=0, le=2)
    cascade: tuple[str, ...] = Field(min_length=1)
    confidence: tuple[Any, ...] = ()
    on_exhausted: Literal["best", "raise"] = "best"

    @field_validator("confidence", mode="after")
    @classmethod
    def _checks(cls, entries: tuple[Any, ...]) -> tuple[Any, ...]:
        # Entries arrive as dicts from files; build_check validates them (the loader reports
        # their errors with locations first, so this only fires for programmatic use).
        return tuple(e if isinstance(e, CheckSpec) else build_check(e) for e in entries)

    @property
    def local_only(self) -> bool:
        return self.privacy or self.offline is True

    def summary(self) -> dict[str, Any]:
        return {"privacy": self.privacy, "offline": self.offline,
                "quality_tier": self.quality_tier, "cost_ceiling": self.cost_ceiling}


class RuleWhen(_Frozen):
    """A rule matches when every listed metadata pair and every listed tag is present.
    A metadata value given as a list matches any of its items."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def matches(self, metadata: Mapping[str, Any], tags: Sequence[str]) -> bool:
        for key, wanted in self.metadata.items():
            if key not in metadata:
                return False
            value = metadata[key]
            if isinstance(wanted, list) and value not in wanted:
                return False
            if not isinstance(wanted, list) and value != wanted:
                return False
        return all(tag in tags for tag in self.tags)


class Rule(_Frozen):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str | None = None
    when: RuleWhen
    set_: dict[str, Any] = Field(alias="set")


class Policy(_Frozen):
    """A whole policy file."""

    version: Literal[1]
    name: str
    description: str | None = None
    tiers: tuple[str, ...] = ("basic", "standard", "premium")
    models: Mapping[str, ModelSpec]
    policy: PolicySettings
    rules: tuple[Rule, ...] = ()
    budgets: tuple[Budget, ...] = ()
    ledger: LedgerURL | None = None
    routing: RoutingBlock | None = None  # learned estimates around the cascade (routing_block.py)
    _source: str = PrivateAttr(default="<policy>")
    _env_refs: dict[tuple[str | int, ...], list[str]] = PrivateAttr(default_factory=dict)

    @field_validator("models", mode="after")
    @classmethod
    def _freeze_models(cls, models: Mapping[str, ModelSpec]) -> Mapping[str, ModelSpec]:
        return MappingProxyType(dict(models))

    @property
    def source(self) -> str:
        """The file this policy was loaded from."""
        return self._source

    @property
    def env_refs(self) -> Mapping[tuple[str | int, ...], list[str]]:
        """Which environment variables each substituted value came from."""
        return MappingProxyType(self._env_refs)

    def tier_rank(self, tier: str) -> int:
        return self.tiers.index(tier)


# --------------------------------------------------------------------------- loading


def load_policy(source: str | os.PathLike[str] | Mapping[str, Any], *,
                environ: Mapping[str, str] | None = None) -> Policy:
    """Load and validate a policy from a YAML file path or a plain mapping.

    Raises :class:`PolicyError` listing every problem with file, line, column and key.
    """
    if isinstance(source, Mapping):
        return _validate(LocatedDocument(data=dict(source)), "<dict>")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PolicyError([PolicyIssue(f"cannot read policy file: {err.strerror}", str(path))]) from None
    return loads_policy(text, str(path), environ=environ)


def loads_policy(text: str, filename: str = "<string>", *,
                 environ: Mapping[str, str] | None = None) -> Policy:
    """Load and validate a policy from YAML text."""
    try:
        doc = load_located(text, environ)
    except YamlSyntaxError as err:
        raise PolicyError([PolicyIssue(str(err), filename, err.location.line, err.location.column)]) from None
    return _validate(doc, filename)


def _validate(doc: LocatedDocument, filename: str) -> Policy:
    issues = [_issue(doc, filename, path, message) for path, message in doc.problems]
    if not isinstance(doc.data, dict):
        issues.append(_issue(doc, filename, (), "a policy file must be a mapping with version, name, "
                                                 "models and policy"))
        raise PolicyError(issues)
    data = dict(doc.data)
    issues += _check_entries(doc, filename, data)
    if issues:
        raise PolicyError(issues)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as err:
        raise PolicyError(_from_validation(doc, filename, err)) from None
    issues = [_issue(doc, filename, path, msg, suggestion=hint)
              for path, msg, hint in _semantic_problems(policy)]
    if issues:
        raise PolicyError(issues)
    policy._source = filename
    policy._env_refs = dict(doc.env_refs)
    return policy


def _check_entries(doc: LocatedDocument, filename: str, data: dict[str, Any]) -> list[PolicyIssue]:
    """Validate confidence checks and rule ``set`` blocks with locations (pydantic would lose
    them inside the field validators)."""
    issues: list[PolicyIssue] = []
    settings = data.get("policy")
    blocks: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(settings, dict):
        blocks.append((("policy", "confidence"), settings.get("confidence")))
    for i, rule in enumerate(data.get("rules") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("set"), dict):
            continue
        for key in rule["set"]:
            if key not in PolicySettings.model_fields:
                issues.append(_issue(doc, filename, ("rules", i, "set", key),
                                     f"unknown policy field {key!r} in rule", prefer_key=True,
                                     suggestion=_closest(key, PolicySettings.model_fields)))
        blocks.append((("rules", i, "set", "confidence"), rule["set"].get("confidence")))
    for prefix, entries in blocks:
        if not isinstance(entries, list):
            continue
        for j, entry in enumerate(entries):
            path = (*prefix, j)
            if not isinstance(entry, dict) or not isinstance(entry.get("check"), str):
                issues.append(_issue(doc, filename, path, "each check needs a 'check:' name"))
                continue
            try:
                build_check(entry)
            except KeyError:
                issues.append(_issue(doc, filename, (*path, "check"),
                                     f"unknown check {entry['check']!r}; known: "
                                     f"{', '.join(registered_checks())} or 'module:function'",
                                     suggestion=_closest(entry["check"], registered_checks())))
            except ValidationError as err:
                issues += _from_validation(doc, filename, err, prefix=path,
                                           model=check_class(entry["check"]))
            except ValueError as err:
                issues.append(_issue(doc, filename, (*path, "check"), str(err)))
    return issues


def _semantic_problems(policy: Policy) -> list[tuple[tuple[str | int, ...], str, str | None]]:
    problems: list[tuple[tuple[str | int, ...], str, str | None]] = []
    if len(set(policy.tiers)) != len(policy.tiers):
        problems.append((("tiers",), "tiers must be distinct, ordered weakest first", None))
    for name, spec in policy.models.items():
        if spec.tier not in policy.tiers:
            problems.append((("models", name, "tier"), f"unknown tier {spec.tier!r}; tiers are "
                             f"{list(policy.tiers)}", _closest(spec.tier, policy.tiers)))
        if spec.provider == "llamacpp" and not spec.local:
            problems.append((("models", name, "local"), "a llamacpp model runs here: set local: true", None))
        if spec.local and spec.provider == "google_genai":
            problems.append((("models", name, "local"), "a google_genai model is never local", None))
        if spec.local and spec.provider == "openai" and not _is_loopback(spec.base_url):
            problems.append((("models", name, "local"), "an openai model may be local only with a "
                             "loopback base_url (127.0.0.1, localhost)", None))
        if spec.provider in NETWORK_PROVIDERS | {"recorded"} and not spec.model:
            problems.append((("models", name), f"a {spec.provider} model needs 'model:'", None))
        if spec.provider == "llamacpp" and spec.gguf is None:
            problems.append((("models", name), "a llamacpp model needs 'gguf:' (a path or "
                             "bundled:gemma-3-270m)", None))
    settings_blocks: list[tuple[tuple[str | int, ...], Mapping[str, Any]]] = [
        (("policy",), policy.policy.model_dump())]
    settings_blocks += [(("rules", i, "set"), rule.set_) for i, rule in enumerate(policy.rules)]
    for prefix, block in settings_blocks:
        tier = block.get("quality_tier")
        if tier is not None and tier not in policy.tiers:
            problems.append(((*prefix, "quality_tier"), f"unknown tier {tier!r}; tiers are "
                             f"{list(policy.tiers)}", _closest(tier, policy.tiers)))
        cascade = block.get("cascade") or ()
        for i, model in enumerate(cascade):
            if model not in policy.models:
                problems.append(((*prefix, "cascade", i), f"{model!r} is not in models:",
                                 _closest(model, policy.models)))
        for j, check in enumerate(block.get("confidence") or ()):
            # Checks that consult models (agreement, verifier...) must name catalog models.
            if not isinstance(check, Mapping):
                continue
            named = [*(check.get("models") or ()), check.get("model"), *(check.get("apply_to") or ())]
            for model in named:
                if isinstance(model, str) and model not in policy.models:
                    problems.append(((*prefix, "confidence", j), f"{model!r} is not in models:",
                                     _closest(model, policy.models)))
        ranks = [policy.tier_rank(policy.models[m].tier) for m in cascade
                 if m in policy.models and policy.models[m].tier in policy.tiers]
        if any(b < a for a, b in itertools.pairwise(ranks)):
            problems.append(((*prefix, "cascade"), "cascade must go from weaker to stronger tiers", None))
    for i, rule in enumerate(policy.rules):
        try:
            PolicySettings.model_validate({**policy.policy.model_dump(), **rule.set_})
        except ValidationError as err:
            for e in err.errors():
                problems.append((("rules", i, "set", *e["loc"]), e["msg"], None))
        if rule.set_.get("privacy") is False and policy.policy.privacy:
            problems.append((("rules", i, "set", "privacy"), "privacy cannot be relaxed by a rule", None))
        if rule.set_.get("offline") in (False, "auto") and policy.policy.offline is True:
            problems.append((("rules", i, "set", "offline"), "offline cannot be relaxed by a rule", None))
    problems += budget_problems(policy.budgets)
    return problems


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _closest(word: str, choices: Any) -> str | None:
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def _issue(doc: LocatedDocument, filename: str, path: tuple[str | int, ...], message: str, *,
           prefer_key: bool = False, suggestion: str | None = None) -> PolicyIssue:
    where = doc.locate(path, prefer_key=prefer_key)
    key = ".".join(str(p) for p in path)
    return PolicyIssue(message, filename, where.line, where.column, key, suggestion)


def _from_validation(doc: LocatedDocument, filename: str, err: ValidationError, *,
                     prefix: tuple[str | int, ...] = (),
                     model: type[BaseModel] | None = None) -> list[PolicyIssue]:
    issues = []
    # Unknown keys first: a misspelt key usually explains the "missing" error beside it.
    for e in sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        path = (*prefix, *(p for p in e["loc"] if not (isinstance(p, str) and "[" in p)))
        if e["type"] == "extra_forbidden":
            key = path[-1]
            allowed = list(model.model_fields) if model else _allowed_keys(path[:-1])
            issues.append(_issue(doc, filename, path, f"unknown key {key!r}", prefer_key=True,
                                 suggestion=_closest(str(key), allowed)))
        elif e["type"] == "missing":
            issues.append(_issue(doc, filename, path, "required key is missing"))
        else:
            value = e.get("input")
            shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) else ""
            issues.append(_issue(doc, filename, path, f"{e['msg']}{shown}"))
    return issues


def _allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``path`` may hold, for "did you mean"."""
    shapes: dict[tuple[str, ...], type[BaseModel]] = {
        (): Policy, ("policy",): PolicySettings, ("models", "*"): ModelSpec,
        ("models", "*", "price"): Price, ("rules", "*"): Rule, ("rules", "*", "when"): RuleWhen,
        ("budgets", "*"): Budget, ("routing",): RoutingBlock,
    }
    generic = tuple("*" if (i > 0 and path[0] in ("models", "rules", "budgets")) and i == 1 else str(p)
                    for i, p in enumerate(path))
    model = shapes.get(generic)
    if model is None:
        return []
    return [f.alias or k for k, f in model.model_fields.items()]
