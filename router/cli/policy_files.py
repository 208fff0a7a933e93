"""``router init`` and ``router schema``: start a policy file, and let editors check it.

    router init [PATH] [--from NAME] [--name NAME] [--force] [--list]
    router schema [--out FILE]

``init`` writes a packaged policy (``default`` unless ``--from``) to ``PATH`` (``policy.yaml``),
validated first, and never overwrites a file without ``--force``. ``schema`` prints the policy
file's JSON Schema, generated from the pydantic models.

Example:
    $ router init mine.yaml --from offline --name mine
    $ router ask "What is the capital of France?" --policy mine.yaml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from router.errors import PolicyError, PolicyIssue

DEFAULT_OUT = "policy.yaml"
_NAME_LINE = re.compile(r"^name:.*$", re.MULTILINE)


def cmd_init(args: argparse.Namespace) -> int:
    from router.policy.sources import packaged_policies, packaged_policy, policy_from_string

    if args.list:
        for name in packaged_policies():
            print(name)
        return 0
    entry = packaged_policy(args.source)
    if entry is None:
        raise PolicyError([PolicyIssue(f"no packaged policy {args.source!r}; packaged: "
                                       f"{', '.join(packaged_policies())}", "--from")])
    out = Path(args.path)
    if out.exists() and not args.force:
        print(f"error: {out} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    text = entry.read_text(encoding="utf-8")
    if args.name:
        text = _NAME_LINE.sub(f"name: {json.dumps(args.name)}", text, count=1)
    policy = policy_from_string(text, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} (policy {policy.name!r} from the packaged {args.source!r}); "
          f"try: router explain \"a question\" --policy {out}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from router.policy.schema import policy_json_schema

    text = json.dumps(policy_json_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = sub.add_parser("init", help="write a starter policy file")
    init.add_argument("path", nargs="?", default=DEFAULT_OUT, help=f"where to write it (default: {DEFAULT_OUT})")
    init.add_argument("--from", dest="source", default="default", metavar="NAME",
                      help="the packaged policy to start from (default: default; see --list)")
    init.add_argument("--name", default=None, help="the policy's name: field")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--list", action="store_true", help="list the packaged policies and exit")
    init.set_defaults(func=cmd_init)
    schema = sub.add_parser("schema", help="print the policy file's JSON Schema")
    schema.add_argument("--out", default=None, metavar="FILE", help="write it to FILE instead")
    schema.set_defaults(func=cmd_schema)
