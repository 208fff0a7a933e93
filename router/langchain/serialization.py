"""Pickling, copying and LangChain serialization of a :class:`PolicyRouter`.

A router is its fields (the validated policy, tools, standard parameters); everything else
(the catalog and its loaded models, the spend guard built from the policy's budgets, a reload
watcher) is rebuilt from them. ``dumpd``/``loads`` carry the policy as data and validate it again
on load, like ``from_dict``. A policy's frozen ``models`` mapping (a ``mappingproxy``) pickles
as a plain mapping that is frozen again on load.

Example:
    >>> again = pickle.loads(pickle.dumps(router))
    >>> loads(json.dumps(dumpd(router)), valid_namespaces=["router"])
"""

from __future__ import annotations

import copyreg
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def frozen_mapping(data: dict[str, Any]) -> Mapping[str, Any]:
    """Rebuilds a pickled ``mappingproxy``."""
    return MappingProxyType(data)


copyreg.pickle(MappingProxyType, lambda proxy: (frozen_mapping, (dict(proxy),)))

#: Fields a copy keeps (``spend_guard`` is shared by copies but not pickled: a fresh process
#: builds the policy's own guard).
STATE_FIELDS = ("policy", "tools", "tool_choice", "max_tokens", "temperature", "stop", "top_p", "seed",
                "timeout", "max_retries", "tags", "metadata")


def router_state(router: Any, *, keep_guard: bool) -> dict[str, Any]:
    state = {name: getattr(router, name) for name in STATE_FIELDS}
    if keep_guard and not router._guard_from_policy:
        state["spend_guard"] = router.spend_guard
    return state


def rebuild(cls: type, state: dict[str, Any]) -> Any:
    """The reconstructor pickle calls: a router from its fields."""
    return cls(**state)


def policy_data(policy: Any) -> dict[str, Any]:
    """The policy as plain data (``dumpd``), loaded back with ``policy_from_dict``."""
    data = policy.model_dump(mode="json", exclude={"models"}, exclude_defaults=True, warnings=False)
    data["version"] = policy.version
    data["models"] = {name: spec.model_dump(mode="json", exclude_defaults=True, warnings=False)
                      for name, spec in policy.models.items()}
    return data
