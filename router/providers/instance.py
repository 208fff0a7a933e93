"""``provider: instance``: a chat model object the caller built, bound by name in Python.

The policy file still declares the entry (tier, ``price:``, ``local:``, ``context_window``); the
object is passed to the router's constructor: ``PolicyRouter.from_yaml(path, models={"mine":
chat_model})`` (the same keyword on ``from_policy``, ``from_dict``, ``from_string`` and
``PolicyRouter(policy=..., models=...)``). An entry with no object bound is excluded with a reason
saying how to bind one; an object bound to a name that is not a ``provider: instance`` entry is a
:class:`~router.errors.PolicyError`.

What the router cannot know of an arbitrary object it assumes safely: a network model (a
``price:`` is required unless the entry says ``local: true``; ``local: true`` is the caller's
claim, made in the policy they pass with the object), input tokens bounded at one per UTF-8 byte
plus overhead (tools counted), only an explicit stop (any built-in provider's name for one)
complete, no failure proven unsent. The router passes the object no call keywords: set its
output limit and temperature on the object (usage beyond the policy's ``max_output_tokens`` is
recorded as an overrun and charged).

Example:
    >>> router = PolicyRouter.from_yaml("policy.yaml", models={"mine": ChatAnthropic(model="claude-x")})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.providers.base import COMMON_FINISH_REASONS, BaseAdapter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from router.policy.policy_file import ModelSpec


class _InstanceAdapter(BaseAdapter):
    name = "instance"
    network = True
    local_rule = "any"
    required_fields = ()
    accepts_objects = True
    finish_reasons = COMMON_FINISH_REASONS
    supports_tools = True
    per_event_loop = False

    def unavailable_reason(self, spec: ModelSpec, env_hint: str | None) -> str | None:
        return None  # an unbound entry: see unbound_reason

    def unbound_reason(self, name: str) -> str:
        return (f"unavailable: no chat model object bound to {name!r}: pass it to the router, "
                f"PolicyRouter.from_yaml(path, models={{{name!r}: chat_model}})")

    def build(self, name: str, spec: ModelSpec) -> BaseChatModel:
        raise LookupError(self.unbound_reason(name))

    def call_kwargs(self, spec: ModelSpec, *, max_tokens: int, temperature: float,
                    want_logprobs: bool) -> dict[str, Any]:
        # Call keywords are each client's own (ChatOllama refuses max_tokens): the object's
        # settings apply; usage above the policy's max_output_tokens is charged as an overrun.
        return {}


ADAPTER = _InstanceAdapter()
