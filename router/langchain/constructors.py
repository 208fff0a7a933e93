"""The ways to make a :class:`~router.langchain.policy_router.PolicyRouter` from a policy
source: a packaged name, a file (optionally watched and reloaded), a mapping or YAML text.

Example:
    >>> router = PolicyRouter.from_yaml("policies/default.yaml", reload=True)
    >>> router.policy_watcher is not None
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from typing_extensions import Self

from router.policy.reload import PolicyWatcher
from router.policy.sources import PolicySource, policy_from_dict, policy_from_string, policy_path, resolve_policy


class PolicyConstructors:
    """Class methods of ``PolicyRouter`` that build one from a policy source."""

    @classmethod
    def from_policy(cls, source: PolicySource | None = None, *, models: Mapping[str, Any] | None = None,
                    **load_options: Any) -> Self:
        """A router for a packaged name (``"default"``, ``"offline"``...), a file path, a mapping
        or a :class:`Policy`; ``None`` is the default policy. ``load_options`` go to the loader.
        ``models``: chat model objects for the policy's ``provider: instance`` entries, by name
        (on every constructor)."""
        return cls(policy=resolve_policy(source, **load_options), models=dict(models or {}))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | None = None, *, reload: bool = False,
                  reload_interval_s: float = 0.0, models: Mapping[str, Any] | None = None,
                  **load_options: Any) -> Self:
        """Load a policy file or packaged name (default: ``$ROUTER_POLICY``, ``policies/default.yaml``
        or the packaged ``default``).

        With ``reload=True`` the file is checked at the start of each request (at most every
        ``reload_interval_s``): a changed file is validated, then replaces the policy for the
        following requests; an invalid one keeps the policy in force and logs the error.
        """
        if not reload:
            return cls.from_policy(path, models=models, **load_options)
        watcher = PolicyWatcher(policy_path(path), interval_s=reload_interval_s, **load_options)
        router = cls(policy=watcher.policy, models=dict(models or {}))
        router._watcher = watcher
        return router

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, models: Mapping[str, Any] | None = None,
                  **load_options: Any) -> Self:
        """A router for a policy given as a mapping; errors name ``<dict>`` and the key path."""
        return cls(policy=policy_from_dict(data, **load_options), models=dict(models or {}))

    @classmethod
    def from_string(cls, text: str, filename: str = "<string>", *, models: Mapping[str, Any] | None = None,
                    **load_options: Any) -> Self:
        """A router for a policy given as YAML text; errors name ``filename``, line and column."""
        return cls(policy=policy_from_string(text, filename, **load_options), models=dict(models or {}))
