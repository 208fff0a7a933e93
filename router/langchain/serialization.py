"""Pickling, copying and LangChain serialization of a :class:`PolicyRouter`.

A router is its fields (the validated policy, tools, standard parameters); everything else
(the catalog and its loaded models, the spend guard built from the policy's budgets, a reload
watcher) is rebuilt from them. ``dumpd``/``loads`` carry the policy as data and validate it again
on load, like ``from_dict``; the data holds no secret (the password of any URL in it, a ledger's
``redis://user:password@...`` say, is ``***``, so a router loaded from it cannot use that ledger until
its policy gives the password again) and a relative ``routing.estimator`` is made absolute against
the policy file's folder, where the router read it. A policy's frozen ``models`` mapping (a ``mappingproxy``) pickles
as a plain mapping that is frozen again on load.

Example:
    >>> again = pickle.loads(pickle.dumps(router))
    >>> loads(json.dumps(dumpd(router)), valid_namespaces=["router"])
"""

from __future__ import annotations

import copy
import copyreg
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from router.policy.issues import mask_urls


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
    """The policy as plain data (``dumpd``), loaded back with ``policy_from_dict``: no URL
    password in it, and the estimator artifact where this policy finds it (an absolute path)."""
    data = policy.model_dump(mode="json", exclude={"models"}, exclude_defaults=True, warnings=False)
    data["version"] = policy.version
    data["models"] = {name: spec.model_dump(mode="json", exclude_defaults=True, warnings=False)
                      for name, spec in policy.models.items()}
    if policy.routing is not None and isinstance(data.get("routing"), dict):
        # Relative to the policy file: a dict has no folder, so carry the path it resolved to.
        data["routing"]["estimator"] = str(policy.routing.estimator_path(policy.source).absolute())
    return _without_passwords(data)


def _without_passwords(value: Any) -> Any:
    """``value`` with every URL password in its strings masked (see :func:`mask_urls`)."""
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, dict):
        return {key: _without_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_passwords(item) for item in value]
    return value


class RouterSerialization:
    """What :class:`PolicyRouter` adds for ``pickle``, ``copy.deepcopy`` and ``dumpd``."""

    _guard_from_policy: bool
    spend_guard: Any
    policy: Any

    def __reduce__(self) -> tuple[Any, ...]:
        return (rebuild, (type(self), router_state(self, keep_guard=False)))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        state = copy.deepcopy(router_state(self, keep_guard=False), memo)
        if not self._guard_from_policy:
            state["spend_guard"] = self.spend_guard  # a caller's guard (a ledger) is shared, not copied
        return type(self)(**state)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["router", "langchain"]

    def to_json(self) -> Any:
        """``dumpd(router)``: the policy as data (validated again by ``loads``) and the fields set."""
        state = router_state(self, keep_guard=False)
        kwargs = {k: v for k, v in state.items() if k != "policy" and v not in (None, (), [], {})}
        kwargs["policy"] = policy_data(self.policy)
        if "tools" in kwargs:
            kwargs["tools"] = list(kwargs["tools"])
        return {"lc": 1, "type": "constructor", "id": [*self.get_lc_namespace(), type(self).__name__],
                "kwargs": kwargs}

