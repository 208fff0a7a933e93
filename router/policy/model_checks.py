"""Checks on each ``models:`` entry that need more than one field at a time.

Each problem is ``(path, message, suggestion)``, located by the loader. The provider must be a
registered one (built in or installed: :mod:`router.providers.registry`), with a "did you mean";
its adapter says which fields an entry needs and what ``local: true`` may mean for it. A network
model (any provider that does not declare ``network = False``) that is not ``local: true`` must
declare ``price:``: with the default ``{input: 0, output: 0}`` it would count as free, be called
under any ceiling and budget, and be recorded at $0 whatever its provider charged. Local models
(``llamacpp``, ``local: true``) keep the free default, and so do ``recorded`` models: the cost
they charge, and the worst case reserved for them, is the recorded one (see
:mod:`router.providers.recorded`).

Example:
    >>> model_problems(loads_policy(text_with_an_unpriced_gpt4))
    [(('models', 'gpt-4', 'price'), 'a network model (provider: openai, not local: true) needs price: ...', None)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from router.policy.issues import closest
from router.providers.registry import get_adapter, is_registered, registered_providers

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec

Problem = tuple[tuple[str | int, ...], str, str | None]


def is_network(provider: str) -> bool:
    """Whether ``provider``'s models are reached over a network (undeclared or unknown: yes)."""
    try:
        return bool(get_adapter(provider).network)
    except (ValueError, ImportError):
        return True


def needs_price(spec: ModelSpec) -> bool:
    """Whether this entry is a paid network model whose ``price:`` was left out."""
    return is_network(spec.provider) and not spec.local and "price" not in spec.model_fields_set


def provider_problem(name: str, spec: ModelSpec) -> Problem | None:
    """An unknown provider, or an installed one that cannot load."""
    if not is_registered(spec.provider):
        known = registered_providers()
        return (("models", name, "provider"), f"unknown provider {spec.provider!r}; providers are {known} "
                "(a package may add one: entry-point group policy_router.providers)",
                closest(spec.provider, known))
    try:
        get_adapter(spec.provider)
    except ImportError as err:
        return (("models", name, "provider"), str(err), None)
    return None


def model_problems(models: Mapping[str, ModelSpec], tiers: Iterable[str]) -> list[Problem]:
    """Problems of the catalog's entries, each on its own."""
    tiers = list(tiers)
    problems: list[Problem] = []
    for name, spec in models.items():
        if spec.tier not in tiers:
            problems.append((("models", name, "tier"), f"unknown tier {spec.tier!r}; tiers are {tiers}",
                             closest(spec.tier, tiers)))
        unknown = provider_problem(name, spec)
        if unknown is not None:
            problems.append(unknown)
            continue
        for path, message in get_adapter(spec.provider).entry_problems(spec):
            problems.append((("models", name, *path), message, None))
        if needs_price(spec):
            problems.append((("models", name, "price"),
                             f"a network model (provider: {spec.provider}, not local: true) needs price: "
                             "{input: USD, output: USD} per 1M tokens (without it every call would "
                             "count as free: no ceiling, no budget); write price: {input: 0, output: 0} "
                             "only for a model that really costs nothing", None))
    return problems
