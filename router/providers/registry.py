"""The provider registry: built-in providers plus those installed packages add.

A provider is an adapter object (:class:`~router.providers.base.BaseAdapter`, or any object: what
it does not declare takes the base's safe default). Built-ins are named here as ``module:ADAPTER``
and imported only when a policy uses them; an installed package adds one through the entry-point
group ``policy_router.providers`` (``name = "package.module:ADAPTER"``, an instance or a class),
without editing the router. Nothing here imports a provider's client package: adapters import
theirs when they build a model.

Example:
    >>> "openai" in registered_providers()
    True
    >>> get_adapter("llamacpp").network
    False
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from router.providers.base import BaseAdapter

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec

ENTRY_POINT_GROUP = "policy_router.providers"

_BUILTIN: dict[str, str] = {
    "llamacpp": "router.providers.llamacpp:ADAPTER",
    "openai": "router.providers.openai:ADAPTER",
    "google_genai": "router.providers.google_genai:ADAPTER",
    "recorded": "router.providers.recorded:ADAPTER",
    "anthropic": "router.providers.anthropic:ADAPTER",
    "ollama": "router.providers.ollama:ADAPTER",
    "instance": "router.providers.instance:ADAPTER",
}
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


class UnknownProviderError(ValueError):
    """A provider name neither built in nor installed."""


class WithDefaults:
    """An adapter seen through the registry: its own declarations, and :class:`BaseAdapter`'s
    safe default for each it lacks (methods bound to this view, so a default method uses the
    adapter's own declarations)."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return getattr(self._inner, attr)
        except AttributeError:
            pass
        default = getattr(BaseAdapter, attr)
        return default.__get__(self, type(self)) if callable(default) and hasattr(default, "__get__") else default

    def __repr__(self) -> str:
        return f"<provider {self.name!r}: {self._inner!r}>"


@functools.cache
def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed providers by name; reading the metadata imports nothing."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.name not in _BUILTIN}


def refresh() -> None:
    """Forget what was read of the installed packages (after installing one in this process)."""
    _plugins.cache_clear()
    with _LOCK:
        for name in [n for n in _LOADED if n not in _BUILTIN]:
            del _LOADED[name]


def registered_providers() -> list[str]:
    """Built-in and installed provider names."""
    return sorted({*_BUILTIN, *_plugins()})


def is_registered(name: str) -> bool:
    return name in _BUILTIN or name in _plugins()


def replays_dataset(spec: ModelSpec) -> bool:
    """Whether ``spec``'s provider answers from a recorded dataset (the policy lab's models)."""
    try:
        return bool(get_adapter(spec.provider).replays_dataset)
    except (ValueError, ImportError):
        return False


def get_adapter(name: str) -> Any:
    """The adapter of provider ``name`` (loaded once). Raises :class:`UnknownProviderError` for an
    unknown name, ``ImportError`` naming the entry point for a plug-in that cannot load."""
    with _LOCK:
        adapter = _LOADED.get(name)
    if adapter is not None:
        return adapter
    adapter = _load(name)
    with _LOCK:
        return _LOADED.setdefault(name, adapter)


def _load(name: str) -> Any:
    target = _BUILTIN.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        adapter = getattr(importlib.import_module(module), attr)
    else:
        ep = _plugins().get(name)
        if ep is None:
            raise UnknownProviderError(f"unknown provider {name!r}; providers are {registered_providers()}")
        try:
            adapter = ep.load()
        except Exception as err:  # an installed package's bug: named, never a crash at import
            raise ImportError(f"cannot load the installed provider {name!r} ({ep.value}): "
                              f"{type(err).__name__}: {err}") from None
        if isinstance(adapter, type):
            adapter = adapter()
    return adapter if isinstance(adapter, BaseAdapter) else WithDefaults(adapter, name)


def bind_objects(specs: Mapping[str, ModelSpec], objects: Mapping[str, Any] | None) -> dict[str, Any]:
    """``objects`` checked against the catalog ``specs``: each name must be an entry whose
    provider takes objects (``provider: instance``), each object a LangChain chat model."""
    from langchain_core.language_models import BaseChatModel

    from router.errors import PolicyError, PolicyIssue
    from router.policy.issues import closest

    if not objects:
        return {}
    takers = [n for n, s in specs.items() if getattr(get_adapter(s.provider), "accepts_objects", False)]
    issues: list[PolicyIssue] = []
    for name, obj in objects.items():
        spec = specs.get(name)
        key = f"models.{name}"
        if spec is None:
            issues.append(PolicyIssue(f"models={{{name!r}: ...}} names no model of the policy; its provider: "
                                      f"instance entries are {takers}", key=key, suggestion=closest(str(name), takers)))
        elif name not in takers:
            issues.append(PolicyIssue(f"models={{{name!r}: ...}}: {name!r} is provider: {spec.provider}; an object "
                                      "binds only to a provider: instance entry", key=key))
        elif not isinstance(obj, BaseChatModel):
            issues.append(PolicyIssue(f"models={{{name!r}: ...}} is a {type(obj).__name__}, not a LangChain chat "
                                      "model (BaseChatModel)", key=key))
    if issues:
        raise PolicyError(issues)
    return dict(objects)
