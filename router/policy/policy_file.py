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

import itertools
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from router.checks import CheckSpec, build_check, check_class, registered_checks
from router.errors import CodeNotAllowedError, PolicyError, PolicyIssue
from router.policy.breaker_settings import BreakerSettings
from router.policy.collect import set_aside, under, validate_setting_aside
from router.policy.env_rules import allowed_names, credential_problems, env_place_problems
from router.policy.issues import closest, doc_path, from_validation, issue
from router.policy.model_checks import is_network, model_problems
from router.policy.routing_block import (
    RoutingBlock,
    routing_allowed_keys,
    routing_problems,
    task_blocks,
    task_settings_blocks,
)
from router.policy.values import (
    EnvVarName,
    StrictBool,
    StrictInt,
    StrictNonNegativeFloat,
    StrictPositiveFloat,
    StrictPositiveInt,
    Version,
    strict_flag,
)
from router.policy.yaml_source import LocatedDocument, YamlSyntaxError, load_located
from router.spend.config import Budget, LedgerURL, RedactedURL, budget_problems

#: A registered provider's name (built in, or installed: router.providers.registry), checked with
#: the catalog's other problems so an unknown one gets a located "did you mean".
Provider = Annotated[str, Field(strict=True, min_length=1, max_length=100)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Frozen):
    """USD per one million tokens."""

    input: StrictNonNegativeFloat = 0.0
    output: StrictNonNegativeFloat = 0.0


class ModelSpec(_Frozen):
    """One entry of the ``models:`` catalog."""

    provider: Provider
    model: str | None = None
    gguf: str | None = None
    chat_format: str | None = None
    tier: StrictStr = "basic"
    local: StrictBool = False
    price: Price = Price()
    context_window: StrictPositiveInt | None = None
    base_url: Annotated[str, AfterValidator(RedactedURL)] | None = None  # repr and pickle: password masked
    api_key_env: EnvVarName | None = None
    timeout_s: StrictPositiveFloat = 60.0
    max_retries: StrictInt = Field(0, ge=0, le=10)
    n_threads: StrictPositiveInt | None = None
    n_batch: StrictPositiveInt = 512
    prefix_cache: StrictBool = False  # llamacpp: reuse the KV cache across requests (faster, not reproducible)
    dataset: str | None = None

    @property
    def is_network(self) -> bool:
        return is_network(self.provider)

    def price_worst_case_usd(self, input_tokens: int, max_output_tokens: int) -> float:
        """What ``price:`` makes of the input tokens and the output limit."""
        return (input_tokens * self.price.input + max_output_tokens * self.price.output) / 1e6

    def worst_case_usd(self, input_tokens: int, max_output_tokens: int) -> float:
        """The most one call may cost: reserved against the ceiling and the budgets before it.
        It is never below the provider's floor: a ``recorded`` model charges its recorded cost,
        so its worst case is at least the most any of its recorded answers cost (the dataset is
        read once, when first needed)."""
        from router.providers.registry import get_adapter

        priced = self.price_worst_case_usd(input_tokens, max_output_tokens)
        return max(priced, get_adapter(self.provider).worst_case_floor_usd(self))

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.price.input + output_tokens * self.price.output) / 1e6


class PolicySettings(_Frozen):
    """The ``policy:`` block: what one request may do. Rules and overrides replace fields."""

    cost_ceiling: StrictNonNegativeFloat = 0.05
    privacy: bool = False
    offline: bool | Literal["auto"] = "auto"
    quality_tier: StrictStr = "basic"
    max_output_tokens: StrictPositiveInt = 512
    max_input_bytes: StrictPositiveInt = 4_000_000  # a larger request is an InputTooLargeError
    temperature: Annotated[float, Field(strict=True, ge=0, le=2, allow_inf_nan=False)] = 0.0
    cascade: tuple[StrictStr, ...] = Field(min_length=1)
    confidence: tuple[Any, ...] = ()
    on_exhausted: Literal["best", "raise"] = "best"

    @field_validator("privacy", mode="before")
    @classmethod
    def _privacy(cls, value: Any) -> Any:
        return strict_flag("privacy", value)

    @field_validator("offline", mode="before")
    @classmethod
    def _offline(cls, value: Any) -> Any:
        return strict_flag("offline", value, auto=True)

    @field_validator("confidence", mode="after")
    @classmethod
    def _checks(cls, entries: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        # Entries arrive as dicts from files; build_check validates them (the loader reports
        # their errors with locations first, so this only fires for programmatic use).
        # ``allow_code`` comes from the validation context (load_policy(..., allow_code=True)).
        allow_code = bool((info.context or {}).get("allow_code"))
        return tuple(e if isinstance(e, CheckSpec) else build_check(e, allow_code=allow_code) for e in entries)

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

    version: Version
    name: str
    description: str | None = None
    tiers: tuple[str, ...] = ("basic", "standard", "premium")
    models: Mapping[str, ModelSpec]
    policy: PolicySettings
    rules: tuple[Rule, ...] = ()
    budgets: tuple[Budget, ...] = ()
    ledger: LedgerURL | None = None
    breaker: BreakerSettings = BreakerSettings()
    routing: RoutingBlock | None = None  # learned estimates around the cascade (routing_block.py)
    _source: str = PrivateAttr(default="<policy>")
    _env_refs: dict[tuple[str | int, ...], list[str]] = PrivateAttr(default_factory=dict)
    _allow_code: bool = PrivateAttr(default=False)

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

    @property
    def allow_code(self) -> bool:
        """Whether this policy was loaded with ``allow_code=True`` (``module:function`` checks)."""
        return self._allow_code

    def tier_rank(self, tier: str) -> int:
        return self.tiers.index(tier)


# --------------------------------------------------------------------------- loading


def load_policy(source: str | os.PathLike[str] | Mapping[str, Any], *,
                environ: Mapping[str, str] | None = None, allow_code: bool = False,
                allow_env: str | Collection[str] | None = None) -> Policy:
    """Load and validate a policy from a YAML file path or a plain mapping.

    A policy file is data: it never imports or runs code. A ``check: "module:function"`` entry
    is refused unless ``allow_code=True`` (then that function is your own, unsandboxed code).
    Nor does it choose which environment variable's value is sent anywhere: an ``api_key_env``
    other than the provider's conventional variable, a ``base_url`` host that receives a key,
    and a ``${VAR}`` outside numbers, flags and local file paths need the variable's name in
    ``allow_env`` (see :mod:`router.policy.env_rules`).
    Raises :class:`PolicyError` listing every problem with file, line, column and key.
    """
    if isinstance(source, Mapping):
        return _validate(LocatedDocument(data=dict(source)), "<dict>", allow_code, allowed_names(allow_env))
    path = Path(source)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise PolicyError([PolicyIssue(f"cannot read policy file: {err.strerror}", str(path))]) from None
    except UnicodeDecodeError as err:
        raise PolicyError([PolicyIssue(f"not UTF-8 text (byte {err.start})", str(path), 1, 1)]) from None
    return loads_policy(text, str(path), environ=environ, allow_code=allow_code, allow_env=allow_env)


def loads_policy(text: str, filename: str = "<string>", *,
                 environ: Mapping[str, str] | None = None, allow_code: bool = False,
                 allow_env: str | Collection[str] | None = None) -> Policy:
    """Load and validate a policy from YAML text (see :func:`load_policy`)."""
    try:
        doc = load_located(text, environ)
    except YamlSyntaxError as err:
        raise PolicyError([PolicyIssue(str(err), filename, err.location.line, err.location.column)]) from None
    return _validate(doc, filename, allow_code, allowed_names(allow_env))


def _validate(doc: LocatedDocument, filename: str, allow_code: bool = False,
              allow_env: frozenset[str] = frozenset()) -> Policy:
    try:
        return _validate_located(doc, filename, allow_code, allow_env)
    except PolicyError as err:
        # Values that came from ${VAR} are shown as ${VAR}, whatever message mentions them.
        raise PolicyError([replace(issue, message=doc.redact(issue.message)) for issue in err.issues]) from None


def _validate_located(doc: LocatedDocument, filename: str, allow_code: bool, allow_env: frozenset[str]) -> Policy:
    issues = [issue(doc, filename, p.path, p.message, at=p.location) for p in doc.problems]
    issues += [issue(doc, filename, path, message) for path, message in env_place_problems(doc, allow_env)]
    if not isinstance(doc.data, dict):
        issues.append(issue(doc, filename, (), "a policy file must be a mapping with version, name, "
                                                 "models and policy"))
        raise PolicyError(issues)
    aside: list[tuple[str | int, ...]] = []
    issues += _check_entries(doc, filename, dict(doc.data), allow_code, aside)
    # What a stage rejected is set aside and the next stages run on the rest: every problem of
    # the file in one run (router/policy/collect.py).
    data = set_aside(dict(doc.data), aside, stand_in=_STAND_IN_CHECK)
    validated, err, dropped = validate_setting_aside(Policy, data, {"allow_code": allow_code},
                                                     lambda loc: doc_path(doc, (), loc))
    if err is not None:
        issues += from_validation(doc, filename, err, allowed_keys=_allowed_keys)
    if validated is None:
        raise PolicyError(issues)
    policy = cast(Policy, validated)
    aside += dropped
    issues += [issue(doc, filename, path, msg, suggestion=hint)
               for path, msg, hint in [*_semantic_problems(policy, allow_code),
                                        *credential_problems(policy.models, allow_env)]
               if not under(path, aside)]
    if issues:
        raise PolicyError(issues)
    policy._source = filename
    policy._env_refs = dict(doc.env_refs)
    policy._allow_code = allow_code
    return policy


#: What stands in for a check entry set aside (its index, and the others', still locate problems).
_STAND_IN_CHECK = {"check": "min_length", "chars": 0}


def _check_entries(doc: LocatedDocument, filename: str, data: dict[str, Any],
                   allow_code: bool, aside: list[tuple[str | int, ...]]) -> list[PolicyIssue]:
    """Validate confidence checks and rule ``set`` blocks with locations (pydantic would lose
    them inside the field validators); the path of each part found bad goes to ``aside``."""
    issues: list[PolicyIssue] = []
    models = data.get("models")
    for name, entry in (models.items() if isinstance(models, dict) else ()):
        if isinstance(entry, dict) and ("models", name, "api_key_env") in doc.env_raw:
            aside.append(("models", name, "api_key_env"))
            issues.append(issue(doc, filename, ("models", name, "api_key_env"),
                                 "api_key_env is the *name* of the variable that holds the key: write "
                                 f"api_key_env: {doc.env_refs[('models', name, 'api_key_env')][0]}, "
                                 "not ${...} (its value is not shown)"))
    settings = data.get("policy")
    blocks: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(settings, dict):
        blocks.append((("policy", "confidence"), settings.get("confidence")))
    for i, rule in enumerate(data.get("rules") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("set"), dict):
            continue
        for key in rule["set"]:
            if key not in PolicySettings.model_fields:
                aside.append(("rules", i, "set", key))
                issues.append(issue(doc, filename, ("rules", i, "set", key),
                                     f"unknown policy field {key!r} in rule", prefer_key=True,
                                     suggestion=closest(key, PolicySettings.model_fields)))
        blocks.append((("rules", i, "set", "confidence"), rule["set"].get("confidence")))
    blocks += task_settings_blocks(data)
    for prefix, entries in blocks:
        if not isinstance(entries, list):
            continue
        for j, entry in enumerate(entries):
            path = (*prefix, j)
            if not isinstance(entry, dict) or not isinstance(entry.get("check"), str):
                aside.append(path)
                issues.append(issue(doc, filename, path, "each check needs a 'check:' name"))
                continue
            found = len(issues)
            try:
                build_check(entry, allow_code=allow_code)
            except CodeNotAllowedError as err:
                issues.append(issue(doc, filename, (*path, "check"), str(err)))
            except KeyError:
                issues.append(issue(doc, filename, (*path, "check"),
                                     f"unknown check {entry['check']!r}; known: "
                                     f"{', '.join(registered_checks())} or 'module:function'",
                                     suggestion=closest(entry["check"], registered_checks())))
            except ValidationError as err:
                issues += from_validation(doc, filename, err, prefix=path, allowed_keys=_allowed_keys,
                                           model=check_class(entry["check"]))
            except ValueError as err:
                issues.append(issue(doc, filename, (*path, "check"), str(err)))
            if len(issues) > found:
                aside.append(path)
    return issues


def _semantic_problems(policy: Policy,
                       allow_code: bool = False) -> list[tuple[tuple[str | int, ...], str, str | None]]:
    problems: list[tuple[tuple[str | int, ...], str, str | None]] = []
    if len(set(policy.tiers)) != len(policy.tiers):
        problems.append((("tiers",), "tiers must be distinct, ordered weakest first", None))
    problems += model_problems(policy.models, policy.tiers)
    settings_blocks: list[tuple[tuple[str | int, ...], Mapping[str, Any]]] = [
        (("policy",), policy.policy.model_dump())]
    settings_blocks += [(("rules", i, "set"), rule.set_) for i, rule in enumerate(policy.rules)]
    settings_blocks += task_blocks(policy.routing)  # routing.tasks[i] with its own cascade/confidence
    for prefix, block in settings_blocks:
        tier = block.get("quality_tier")
        if tier is not None and tier not in policy.tiers:
            problems.append(((*prefix, "quality_tier"), f"unknown tier {tier!r}; tiers are "
                             f"{list(policy.tiers)}", closest(tier, policy.tiers)))
        cascade = block.get("cascade") or ()
        for i, model in enumerate(cascade):
            if model not in policy.models:
                problems.append(((*prefix, "cascade", i), f"{model!r} is not in models:",
                                 closest(model, policy.models)))
            elif model in cascade[:i]:
                problems.append(((*prefix, "cascade", i), f"{model!r} is named twice in the cascade", None))
        for j, check in enumerate(block.get("confidence") or ()):
            # Checks that consult models (agreement, verifier...) must name catalog models.
            if not isinstance(check, Mapping):
                continue
            named = [*(check.get("models") or ()), check.get("model"), *(check.get("apply_to") or ())]
            for model in named:
                if isinstance(model, str) and model not in policy.models:
                    problems.append(((*prefix, "confidence", j), f"{model!r} is not in models:",
                                     closest(model, policy.models)))
        ranks = [policy.tier_rank(policy.models[m].tier) for m in cascade
                 if m in policy.models and policy.models[m].tier in policy.tiers]
        if any(b < a for a, b in itertools.pairwise(ranks)):
            problems.append(((*prefix, "cascade"), "cascade must go from weaker to stronger tiers", None))
    for i, rule in enumerate(policy.rules):
        try:
            PolicySettings.model_validate({**dict(policy.policy), **rule.set_},
                                          context={"allow_code": allow_code})
        except ValidationError as err:
            for e in err.errors():
                problems.append((("rules", i, "set", *e["loc"]), e["msg"], None))
        if rule.set_.get("privacy") is False and policy.policy.privacy:
            problems.append((("rules", i, "set", "privacy"), "privacy cannot be relaxed by a rule", None))
        if rule.set_.get("offline") in (False, "auto") and policy.policy.offline is True:
            problems.append((("rules", i, "set", "offline"), "offline cannot be relaxed by a rule", None))
    problems += routing_problems(policy.routing, policy.models)
    problems += budget_problems(policy.budgets)
    return problems


def _allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    """The keys a mapping at ``path`` may hold, for "did you mean"."""
    if path[:1] == ("routing",):
        return routing_allowed_keys(path)
    shapes: dict[tuple[str, ...], type[BaseModel]] = {
        (): Policy, ("policy",): PolicySettings, ("models", "*"): ModelSpec,
        ("models", "*", "price"): Price, ("rules", "*"): Rule, ("rules", "*", "when"): RuleWhen,
        ("budgets", "*"): Budget, ("breaker",): BreakerSettings, ("routing",): RoutingBlock,
    }
    generic = tuple("*" if (i > 0 and path[0] in ("models", "rules", "budgets")) and i == 1 else str(p)
                    for i, p in enumerate(path))
    model = shapes.get(generic)
    if model is None:
        return []
    return [f.alias or k for k, f in model.model_fields.items()]
