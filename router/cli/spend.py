"""``router spend``: what the ledger says was spent, grouped.

    router spend [--ledger URL | --policy FILE] [--since DATE] [--by model|policy|budget|day|purpose|KEY]
                 [--json | --csv]

The ledger is ``--ledger``, else the ``ledger:`` of ``--policy``, else the default SQLite
ledger in the user state dir. ``--by`` any other word groups by that ``per:`` metadata key
(``--by user``). Exit codes: 0 report printed, 1 bad arguments or an unreadable ledger.
"""

from __future__ import annotations

import argparse
import sys

from router.spend.ledger import LedgerError
from router.spend.report import BUILTIN_GROUPS, spend_report

#: Why a ledger may hold nothing although paid calls were made (said on stderr).
NOTHING_RECORDED = ("note: nothing recorded here. Every paid call is recorded in its policy's ledger: "
                    "(this default one when the policy names none); local models cost nothing and are "
                    "not recorded.")


def cmd_spend(args: argparse.Namespace) -> int:
    url = args.ledger
    if url is None and args.policy is not None:
        from router.policy.policy_file import load_policy

        url = load_policy(args.policy, allow_env=args.allow_env).ledger  # a PolicyError is reported by router.cli.main.main
    try:
        report = spend_report(url, since=args.since, by=args.by)
    except (ValueError, LedgerError) as err:  # a bad --since, or a ledger that cannot be read
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(report.to_json(indent=2))
    elif args.csv:
        sys.stdout.write(report.to_csv())
    else:
        print(report)
    if not report.calls:
        print(NOTHING_RECORDED, file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("spend", help="report settled spending from the budget ledger")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ledger", default=None, metavar="URL",
                        help="sqlite:///path, redis://host:port/db (default: the user state dir's SQLite)")
    source.add_argument("--policy", default=None, metavar="FILE", help="use this policy's ledger:")
    parser.add_argument("--allow-env", dest="allow_env", action="append", default=[], metavar="NAME",
                        help="let the policy's ledger: take ${NAME} (a password, say); repeatable")
    parser.add_argument("--since", default=None, metavar="DATE",
                        help="2026-11-27, 2026-11-27T08:00 (UTC), 7d, 12h, 30m or today")
    parser.add_argument("--by", default="model", metavar="GROUP",
                        help=f"{'|'.join(BUILTIN_GROUPS)} or a metadata key (default: model)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    parser.set_defaults(func=cmd_spend)
