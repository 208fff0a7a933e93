"""The ``router`` command.

    router ask "question" [--policy FILE] [--set key=value ...] [--json | --stream] [--allow-code]
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

Exit codes: 0 success (``ask``: an accepted answer); 1 an invalid policy, override or usage; 2 no answer
(``ask``: status ``failed``, a ``RoutingError``); 3 ``ask``: status ``exhausted`` (no answer passed
the checks: the best complete one is printed under ``on_exhausted: best``, none under ``raise``).
``ask`` says on stderr, one line per rung, why each was not accepted or not tried.
Further commands (simulate, calibrate, spend, pull) register themselves in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

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


def _add_policy_args(parser: argparse.ArgumentParser, *, stream: bool = False) -> None:
    parser.add_argument("question")
    parser.add_argument("--policy", default=None, help="policy file or packaged name (default: $ROUTER_POLICY, "
                                                       "policies/default.yaml if present, else the packaged default)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the policy block for this call")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    if stream:
        output.add_argument("--stream", action="store_true",
                            help="print the answer as it comes (the record's summary follows on stderr)")
    _add_allow_code(parser)


def _add_allow_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-code", action="store_true",
                        help="let the policy's 'module:function' checks import and run that code "
                             "(your own, unsandboxed code); off by default")
    parser.add_argument("--allow-env", dest="allow_env", action="append", default=[], metavar="NAME",
                        help="let the policy read environment variable NAME where a file alone may not "
                             "(a non-conventional api_key_env, a base_url host that gets a key, ${NAME} "
                             "in model:, base_url:, ledger:...); repeatable")


def _router_and_config(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from router.langchain.policy_router import PolicyRouter
    from router.policy.overrides import effective_settings, policy_overrides

    overrides = policy_overrides(parse_sets(args.sets), strict=True, origin="--set")
    router = PolicyRouter.from_yaml(args.policy, allow_code=args.allow_code, allow_env=args.allow_env)
    effective_settings(router.policy, overrides=overrides, origin="--set")  # reported as --set's
    return router, {"configurable": overrides}


def cmd_ask(args: argparse.Namespace) -> int:
    from router.cli.outcome import exit_code, report_outcome
    from router.routing.decision import decision_from_dict

    router, config = _router_and_config(args)
    if args.stream:
        from router.cli.outcome import ask_streaming

        return ask_streaming(router, args.question, config)
    try:
        message = router.invoke(args.question, config=config)
    except RoutingError as err:
        if args.json:
            print(json.dumps({"answer": None, "error": str(err), "routing": err.decision.to_dict()}, indent=2))
        report_outcome(err.decision, answered=False)
        return exit_code(err.decision)
    routing = message.response_metadata["routing"]
    decision = decision_from_dict(routing)
    if args.json:
        print(json.dumps({"answer": message.content, "routing": routing}, indent=2))
    else:
        print(str(message.content).strip())
        print()
        print(decision.summary())
    report_outcome(decision, answered=True)
    return exit_code(decision)


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
            policy = resolve_policy(path, allow_code=args.allow_code, allow_env=args.allow_env)
        except PolicyError as err:
            failed = True
            for issue in err.issues:
                print(issue, file=sys.stderr)
        else:
            print(f"{path}: ok (policy {policy.name!r}, {len(policy.models)} models)")
    return 1 if failed else 0


def _core_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ask = sub.add_parser("ask", help="answer a question under a policy",
                         epilog="exit codes: 0 accepted; 1 invalid policy or override; 2 failed (no answer); "
                                "3 exhausted (no answer passed the checks)")
    _add_policy_args(ask, stream=True)
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


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; here 2 means "no answer", so a usage error is 1
    (the code of an invalid policy or override)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    _load_extra_commands()
    parser = _Parser(prog="router", description="LLM cost-policy router")
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
