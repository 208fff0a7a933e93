"""The ``router`` command.

    router ask "question" [--policy FILE] [--set key=value ...] [--json] [--allow-code]
    router explain "question" [--policy FILE] [--set key=value ...] [--json] [--allow-code]
    router validate FILE [FILE ...] [--allow-code]
    router init [PATH] [--from NAME] [--force]      (router/cli/policy_files.py)
    router schema [--out FILE]

``--policy`` and ``validate`` take a file path or the name of a packaged policy (``default``,
``offline``...): an existing file wins.
``--set`` values are read as in a policy file (YAML 1.2 core: only ``true``/``false`` are
booleans) and validated strictly: ``--set privacy=0`` is an error, not "privacy off".
``--allow-code`` lets the policy's ``check: "module:function"`` entries import and run that
code; without it such a policy is refused and nothing is imported.

Exit codes: 0 success; 1 an invalid policy or override; 2 no answer (``RoutingError``).
Further commands (simulate, calibrate, spend, pull) register themselves in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from router.errors import PolicyError, PolicyIssue, RoutingError
from router.policy.yaml_source import parse_value

Command = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``["privacy=true", "cost_ceiling=0.001"]`` → typed values (YAML 1.2 core scalars)."""
    out: dict[str, Any] = {}
    issues = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            issues.append(PolicyIssue(f"--set takes key=value, got {pair!r}", "--set", key=pair))
            continue
        if key.strip() in out:
            issues.append(PolicyIssue(f"--set {key.strip()} given twice", "--set", key=key.strip()))
        out[key.strip()] = parse_value(raw)
    if issues:
        raise PolicyError(issues)
    return out


def _add_policy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question")
    parser.add_argument("--policy", default=None, help="policy file or packaged name (default: $ROUTER_POLICY, "
                                                       "policies/default.yaml if present, else the packaged default)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the policy block for this call")
    parser.add_argument("--json", action="store_true", help="print JSON")
    _add_allow_code(parser)


def _add_allow_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-code", action="store_true",
                        help="let the policy's 'module:function' checks import and run that code "
                             "(your own, unsandboxed code); off by default")


def _router_and_config(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from router.langchain.policy_router import PolicyRouter
    from router.policy.overrides import effective_settings, policy_overrides

    overrides = policy_overrides(parse_sets(args.sets), strict=True, origin="--set")
    router = PolicyRouter.from_yaml(args.policy, allow_code=args.allow_code)
    effective_settings(router.policy, overrides=overrides, origin="--set")  # reported as --set's
    return router, {"configurable": overrides}


def cmd_ask(args: argparse.Namespace) -> int:
    router, config = _router_and_config(args)
    try:
        message = router.invoke(args.question, config=config)
    except RoutingError as err:
        if args.json:
            print(json.dumps({"answer": None, "error": str(err), "routing": err.decision.to_dict()}, indent=2))
        else:
            print(f"error: {err}\n\n{err.decision.summary()}", file=sys.stderr)
        return 2
    routing = message.response_metadata["routing"]
    if args.json:
        print(json.dumps({"answer": message.content, "routing": routing}, indent=2))
    else:
        from router.routing.decision import decision_from_dict

        print(str(message.content).strip())
        print()
        print(decision_from_dict(routing).summary())
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    router, config = _router_and_config(args)
    decision = router.explain(args.question, config=config)
    print(decision.to_json(indent=2) if args.json else decision.summary())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from router.policy.sources import resolve_policy

    failed = False
    for path in args.files:
        try:
            policy = resolve_policy(path, allow_code=args.allow_code)
        except PolicyError as err:
            failed = True
            for issue in err.issues:
                print(issue, file=sys.stderr)
        else:
            print(f"{path}: ok (policy {policy.name!r}, {len(policy.models)} models)")
    return 1 if failed else 0


def _core_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ask = sub.add_parser("ask", help="answer a question under a policy")
    _add_policy_args(ask)
    ask.set_defaults(func=cmd_ask)
    explain = sub.add_parser("explain", help="show the decision without calling any model")
    _add_policy_args(explain)
    explain.set_defaults(func=cmd_explain)
    validate = sub.add_parser("validate", help="validate policy files")
    validate.add_argument("files", nargs="+", help="policy files or packaged names")
    _add_allow_code(validate)
    validate.set_defaults(func=cmd_validate)


COMMANDS: list[Command] = [_core_commands]


def _load_extra_commands() -> None:
    import importlib

    for module in ("router.cli.policy_files", "router.cli.lab", "router.cli.spend", "router.cli.pull"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):
                continue
            raise
        if mod.register not in COMMANDS:
            COMMANDS.append(mod.register)


def build_parser() -> argparse.ArgumentParser:
    _load_extra_commands()
    parser = argparse.ArgumentParser(prog="router", description="LLM cost-policy router")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PolicyError as err:
        print(f"error: invalid policy\n{err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
