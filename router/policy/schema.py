"""The JSON Schema of a policy file, generated from the pydantic models.

Editors that read JSON Schema (VS Code / yaml-language-server, JetBrains) complete and check
policy files with it: ``router schema > policy.schema.json``, then put
``# yaml-language-server: $schema=policy.schema.json`` at the top of a policy file.

The pydantic models are the source of truth; two places are made more precise than the models
can say by themselves: each ``confidence:`` entry is one of the registered checks (its
parameters from its own model) or a ``"module:function"`` check, and a rule's ``set:`` takes
the fields of the ``policy:`` block; a network model that is not ``local: true`` requires
``price``. What a schema cannot express (a cascade naming catalog
models, tiers in order, ratchets) is still checked by ``router validate``. Values written as
``${VAR}`` are substituted before validation, so a non-string field written that way is
flagged by an editor though the file loads.

Example:
    >>> schema = policy_json_schema()
    >>> schema["properties"]["version"]
    {'const': 1, 'title': 'Version', 'type': 'integer'}
"""

from __future__ import annotations

import copy
from typing import Any

from router.checks import check_class, registered_checks
from router.checks.builtin import CustomCheck
from router.policy.model_checks import is_network
from router.policy.policy_file import Policy
from router.providers.registry import registered_providers

DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF = "#/$defs/{model}"
CUSTOM_CHECK_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a version-1 policy file."""
    schema = Policy.model_json_schema(by_alias=True, ref_template=REF)
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    entries = [_check_schema(name, cls, defs) for name in registered_checks() if (cls := check_class(name))]
    custom = _model_schema(CustomCheck, defs)
    custom["properties"]["check"] = {"type": "string", "pattern": CUSTOM_CHECK_PATTERN,
                                     "description": "a check function, as package.module:function"}
    defs["CustomCheck"] = custom
    defs["ConfidenceCheck"] = {"anyOf": [*entries, {"$ref": REF.format(model="CustomCheck")}],
                               "description": "one confidence check: all must pass, or the cascade escalates"}
    settings = defs["PolicySettings"]
    settings["properties"]["confidence"] = {
        "type": "array", "items": {"$ref": REF.format(model="ConfidenceCheck")}, "default": [],
        "description": "checks that must all pass for an answer to be accepted"}
    override = copy.deepcopy(settings)
    override.pop("required", None)
    override["title"] = "PolicyOverride"
    override["description"] = "fields of the policy block that this rule replaces"
    defs["PolicyOverride"] = override
    defs["Rule"]["properties"]["set"] = {"$ref": REF.format(model="PolicyOverride")}
    local_providers = [name for name in registered_providers() if not is_network(name)]
    defs["ModelSpec"]["properties"]["provider"]["enum"] = registered_providers()  # installed ones too
    defs["ModelSpec"]["allOf"] = [_price_required(local_providers)]
    return {"$schema": DIALECT, **schema, "title": "policy-router policy file (version 1)"}


def _price_required(local_providers: list[str]) -> dict[str, Any]:
    """A network model (any provider not declared local, installed ones too) that is not
    ``local: true`` declares its price (router.policy.model_checks)."""
    return {"if": {"properties": {"provider": {"not": {"enum": local_providers}},
                                  "local": {"not": {"const": True}}},
                   "required": ["provider"]},
            "then": {"required": ["price"]}}


def _check_schema(name: str, cls: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    entry = _model_schema(cls, defs)
    entry["properties"]["check"] = {"const": name}
    defs[cls.__name__] = entry
    return {"$ref": REF.format(model=cls.__name__)}


def _model_schema(cls: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = cls.model_json_schema(by_alias=True, ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    return schema
