"""Credentials for network providers: read from the environment, held as ``SecretStr``.

The key's *value* never leaves this module except inside a ``SecretStr`` handed to the client;
reasons and records name only the environment variable.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec


def api_key_var(spec: ModelSpec, default: str) -> str:
    return spec.api_key_env or default


def api_key(spec: ModelSpec, default: str) -> SecretStr | None:
    value = os.environ.get(api_key_var(spec, default))
    return SecretStr(value) if value else None


def missing_key_reason(spec: ModelSpec, default: str) -> str | None:
    if api_key(spec, default) is None:
        return f"no credentials: {api_key_var(spec, default)} not set"
    return None
