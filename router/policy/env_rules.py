"""What a policy file may take from the environment: the caller decides, not the file.

A policy file is data, possibly from an untrusted place, and the environment holds secrets
(``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``). Two rules keep the file from sending one anywhere:

- **Credentials.** A model's key comes from its provider's conventional variable
  (its adapter's ``key_vars``: :func:`conventional_key_vars`), sent to the provider's own endpoint, the conventional
  base-URL variable's, or a loopback ``base_url``. Any other ``api_key_env`` name, and any other
  host a file's ``base_url`` names, needs the caller to allow the key's variable in code.
- **``${VAR}``** is substituted freely only where its value can neither travel nor be shown:
  numbers and flags (a string there is an error whose message names ``${VAR}``), and local file
  paths (``gguf:``, ``dataset:``) whose value names an existing file. Anywhere else (``model:``,
  ``base_url:``, ``ledger:``, names, rules...) a *set* variable needs the caller's permission;
  an unset one with its written ``${VAR:-default}`` is the file's own text and is fine.

The caller allows names with ``allow_env`` (``load_policy(..., allow_env={"MY_KEY"})``,
``PolicyRouter.from_yaml(path, allow_env=["MY_KEY"])``, ``router ask --allow-env MY_KEY``), like
``allow_code``. Every problem is located; the variable's value is never shown.

Example:
    >>> credential_problems({"gpt": spec_with(api_key_env="GITHUB_TOKEN")}, allow_env=())
    [(('models', 'gpt', 'api_key_env'), "api_key_env: GITHUB_TOKEN is not ...", None)]
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.policy.values import is_loopback_url

if TYPE_CHECKING:
    from router.policy.policy_file import ModelSpec
    from router.policy.yaml_source import LocatedDocument


def conventional_key_vars(provider: str) -> tuple[str, ...]:
    """The variables ``provider``'s own SDK reads its key from (the first is the router's
    default), as its adapter declares them (``key_vars``); none for an unknown provider."""
    from router.providers.registry import get_adapter

    try:
        return tuple(get_adapter(provider).key_vars)
    except (ValueError, ImportError):
        return ()

LOCAL_PATH_FIELDS = frozenset({"gguf", "dataset"})
_BUNDLED = re.compile(r"bundled:[A-Za-z0-9._-]{1,64}")

Problem = tuple[tuple[str | int, ...], str, str | None]


def how_to_allow(name: str) -> str:
    return (f"if you mean it, allow it in code: load_policy(..., allow_env={{{name!r}}}), "
            f"PolicyRouter.from_yaml(path, allow_env=[{name!r}]) or router ... --allow-env {name}")


def key_var(spec: ModelSpec) -> str | None:
    """The variable this entry's key is read from (None: a provider that takes no key)."""
    conventional = conventional_key_vars(spec.provider)
    return spec.api_key_env or (conventional[0] if conventional else None)


def credential_problems(models: Mapping[str, ModelSpec], allow_env: Collection[str]) -> list[Problem]:
    """Entries that would read a key from a variable, or send one to a host, the file chose."""
    problems: list[Problem] = []
    for name, spec in models.items():
        conventional = conventional_key_vars(spec.provider)
        var = key_var(spec)
        if var is None or var in allow_env:
            continue  # a provider that reads no key, and no api_key_env: nothing to send
        if spec.api_key_env and spec.api_key_env not in conventional:
            problems.append((("models", name, "api_key_env"),
                             f"api_key_env: {spec.api_key_env} is not {spec.provider}'s key variable "
                             f"({' or '.join(conventional) or 'it declares none'}); a policy file cannot choose which variable's "
                             f"value is sent to a server; {how_to_allow(spec.api_key_env)}", None))
        elif spec.base_url and not is_loopback_url(spec.base_url):
            problems.append((("models", name, "base_url"),
                             f"base_url names a host that is not {spec.provider}'s: a policy file cannot send "
                             f"{var} to a host of its choosing; {how_to_allow(str(var))}", None))
    return problems


def env_place_problems(doc: LocatedDocument, allow_env: Collection[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """``${VAR}`` substitutions of a set variable in a place where the value could travel or be
    shown, and local paths from a variable that name no file (``(path, message)``)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for path, names in doc.env_refs.items():
        used = [n for n in dict.fromkeys(names) if n in doc.env_values and n not in allow_env]
        if not used:
            continue
        value = _value_at(doc.data, path)
        if isinstance(value, (bool, int, float)):
            continue  # a number or a flag: strict validation judges it
        shown = ", ".join(f"${{{n}}}" for n in used)
        if path and path[-1] in LOCAL_PATH_FIELDS and path[0] == "models":
            if isinstance(value, str) and (_BUNDLED.fullmatch(value) or _is_file(value)):
                continue
            problems.append((path, f"{shown} must name an existing file here (its value is not shown); "
                                   f"{how_to_allow(used[0])}"))
            continue
        problems.append((path, f"{shown} is not substituted here: a policy file may take numbers, flags "
                               "and local file paths from the environment, not a value that may be sent to a "
                               f"server or shown (its value is not shown); {how_to_allow(used[0])}"))
    return problems


def allowed_names(allow_env: str | Collection[str] | None) -> frozenset[str]:
    """``allow_env`` as a set of names (one name may be given as a string)."""
    if not allow_env:
        return frozenset()
    if isinstance(allow_env, str):
        return frozenset({allow_env})
    if not all(isinstance(name, str) for name in allow_env):
        raise TypeError("allow_env takes environment variable names (strings)")
    return frozenset(allow_env)


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # too long, a NUL byte...
        return False


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
