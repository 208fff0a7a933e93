"""Checks on each ``models:`` entry that need more than one field at a time.

Each problem is ``(path, message, suggestion)``, located by the loader. A network model that
is not ``local: true`` must declare ``price:``: with the default ``{input: 0, output: 0}`` it
would count as free, be called under any ceiling and budget, and be recorded at $0 whatever
its provider charged. Local models (``llamacpp``, ``local: true``) keep the free default, and so
do ``recorded`` models: the cost they charge, and the worst case reserved for them, is the
recorded one (see :mod:`router.providers.recorded`).

Example:
    >>> model_problems(loads_policy(text_with_an_unpriced_gpt4))
    [(('models', 'gpt-4', 'price'), 'a network model (provider: openai, not local: true) needs price: ...', None)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from router.policy.issues import closest
from router.policy.values import is_loopback_url

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec

NETWORK_PROVIDERS = frozenset({"openai", "google_genai"})

Problem = tuple[tuple[str | int, ...], str, str | None]


def needs_price(spec: ModelSpec) -> bool:
    """Whether this entry is a paid network model whose ``price:`` was left out."""
    return spec.provider in NETWORK_PROVIDERS and not spec.local and "price" not in spec.model_fields_set


def model_problems(models: Mapping[str, ModelSpec], tiers: Iterable[str]) -> list[Problem]:
    """Problems of the catalog's entries, each on its own."""
    tiers = list(tiers)
    problems: list[Problem] = []
    for name, spec in models.items():
        if spec.tier not in tiers:
            problems.append((("models", name, "tier"), f"unknown tier {spec.tier!r}; tiers are {tiers}",
                             closest(spec.tier, tiers)))
        if spec.provider == "llamacpp" and not spec.local:
            problems.append((("models", name, "local"), "a llamacpp model runs here: set local: true", None))
        if spec.local and spec.provider == "google_genai":
            problems.append((("models", name, "local"), "a google_genai model is never local", None))
        if spec.local and spec.provider == "openai" and not is_loopback_url(spec.base_url):
            problems.append((("models", name, "local"), "an openai model may be local only with a "
                             "loopback base_url (127.0.0.1, localhost)", None))
        if spec.provider in NETWORK_PROVIDERS | {"recorded"} and not spec.model:
            problems.append((("models", name), f"a {spec.provider} model needs 'model:'", None))
        if spec.provider == "llamacpp" and spec.gguf is None:
            problems.append((("models", name), "a llamacpp model needs 'gguf:' (a path or "
                             "bundled:gemma-3-270m)", None))
        if needs_price(spec):
            problems.append((("models", name, "price"),
                             f"a network model (provider: {spec.provider}, not local: true) needs price: "
                             "{input: USD, output: USD} per 1M tokens (without it every call would "
                             "count as free: no ceiling, no budget); write price: {input: 0, output: 0} "
                             "only for a model that really costs nothing", None))
    return problems
