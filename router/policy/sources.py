"""Where a policy comes from: a packaged name, a file path, a mapping or YAML text.

The shipped policies (the repository's top-level ``policies/``) are installed as the package
data ``router.policy.shipped``, so ``"default"`` resolves from any directory after
``pip install``. Every source is validated the same way; an error names its origin (the file
path, ``<dict>`` or ``<string>``) and, for text, line and column; for a mapping, the key path.

Resolution of a name or path (:func:`resolve_policy`):

1. an existing file wins (``policies/default.yaml``, ``./mine.yaml``);
2. else a bare name (``default``, ``offline.yaml``) that is packaged loads the packaged file;
3. else a :class:`~router.errors.PolicyError` listing the packaged names.

``None`` means the default policy: ``$ROUTER_POLICY`` when set, else ``policies/default.yaml``
when it exists in the working directory, else the packaged ``default``.

Example:
    >>> resolve_policy("offline").name
    'offline'
    >>> policy_from_dict({"version": 1, "name": "x", "models": {}, "policy": {"cascade": ["m"]}})
    Traceback (most recent call last):
    router.errors.PolicyError: <dict>: policy.cascade.0: 'm' is not in models:
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from router.errors import PolicyError, PolicyIssue
from router.policy.policy_file import Policy, load_policy, loads_policy

PACKAGE = "router.policy.shipped"
DEFAULT_NAME = "default"
DEFAULT_PATH = "policies/default.yaml"
SUFFIXES = (".yaml", ".yml")

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy


def _shipped() -> Traversable:
    return resources.files(PACKAGE)


def packaged_policies() -> list[str]:
    """Names of the policies shipped with the package, sorted."""
    return sorted(entry.name.rsplit(".", 1)[0] for entry in _shipped().iterdir()
                  if entry.is_file() and entry.name.endswith(SUFFIXES))


def packaged_policy(name: str) -> Traversable | None:
    """The packaged file for ``name`` (``default`` or ``default.yaml``), or None."""
    stem = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
    if not stem or "/" in stem or os.sep in stem:
        return None
    for candidate in (stem + s for s in SUFFIXES):
        entry = _shipped() / candidate
        if entry.is_file():
            return entry
    return None


def default_policy_source() -> str:
    """``$ROUTER_POLICY``, else ``policies/default.yaml`` if it exists here, else ``default``."""
    configured = os.environ.get("ROUTER_POLICY")
    if configured:
        return configured
    return DEFAULT_PATH if Path(DEFAULT_PATH).is_file() else DEFAULT_NAME


def policy_path(source: str | os.PathLike[str] | None = None) -> Path:
    """The file a name or path resolves to (for watching or copying it); raises PolicyError."""
    source = default_policy_source() if source is None else source
    path = Path(source)
    if path.is_file():
        return path
    entry = packaged_policy(os.fspath(source))
    if entry is None:
        raise _not_found(os.fspath(source))
    if not isinstance(entry, Path):  # installed inside an archive (zipimport): no file to give
        raise PolicyError([PolicyIssue("packaged policy is not a file on disk", str(entry))])
    return entry


def resolve_policy(source: PolicySource | None = None, **load_options: Any) -> Policy:
    """Load and validate a policy from a packaged name, a path, a mapping or a :class:`Policy`.

    ``load_options`` pass through to :func:`~router.policy.load_policy` (``environ=``, ...).
    """
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        return policy_from_dict(source, **load_options)
    source = default_policy_source() if source is None else source
    path = Path(source)
    if path.is_file():
        return load_policy(path, **load_options)
    entry = packaged_policy(os.fspath(source))
    if entry is None:
        raise _not_found(os.fspath(source))
    return loads_policy(entry.read_text(encoding="utf-8"), str(entry), **load_options)


def policy_from_dict(data: Mapping[str, Any], **load_options: Any) -> Policy:
    """Validate a policy given as a mapping (the shape of a policy file).

    Errors name ``<dict>`` and the key path (a mapping has no lines to point at).
    """
    if not isinstance(data, Mapping):
        raise PolicyError([PolicyIssue(f"a policy must be a mapping, got {type(data).__name__}", "<dict>")])
    try:
        return load_policy(data, **load_options)
    except PolicyError as err:
        raise PolicyError([dataclasses.replace(i, line=0, column=0) for i in err.issues]) from None


def policy_from_string(text: str, filename: str = "<string>", **load_options: Any) -> Policy:
    """Validate a policy given as YAML text; errors name ``filename`` with line and column."""
    return loads_policy(text, filename, **load_options)


def _not_found(source: str) -> PolicyError:
    names = packaged_policies()
    stem = Path(source).name.rsplit(".", 1)[0]
    hint = difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
    return PolicyError([PolicyIssue(f"cannot read policy file: no such file, and no packaged policy of that "
                                    f"name (packaged: {', '.join(names)})", source,
                                    suggestion=hint[0] if hint else None)])
