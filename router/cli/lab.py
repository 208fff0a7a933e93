"""The policy-lab commands of ``router``, registered by :func:`register` (``router/cli.py``
imports this module when it exists).

    router simulate --policy P --dataset D [--json] [--plot FILE.png] [--limit N] [--set key=value]
                    [--gold-extract choice|number|code|text]
    router calibrate --policy P --dataset D [--dataset D2] --target T --out FILE [--holdout 0.5] [--json]

One ``add_<command>(sub)`` function per command; :data:`LAB_COMMANDS` lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from router.checks.extractors import EXTRACTORS
from router.lab.datasets import DatasetError

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def cmd_simulate(args: argparse.Namespace) -> int:
    from router.cli.main import parse_sets
    from router.lab.simulate import simulate
    from router.policy.overrides import policy_overrides

    overrides = policy_overrides(parse_sets(args.sets), strict=True, origin="--set")
    try:
        report = simulate(args.policy, args.dataset, limit=args.limit,
                          progress=False if args.json else None,
                          config={"configurable": overrides} if overrides else None,
                          gold_extract=args.gold_extract)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    if args.plot:
        try:
            from router.lab.plot import plot_reports
        except ImportError:  # matplotlib is an optional extra; the figures above are still printed
            print("error: --plot needs matplotlib: pip install 'policy-router[plot]'", file=sys.stderr)
            return 1
        plot_reports(report, path=args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_simulate(sub: SubParsers) -> None:
    parser = sub.add_parser("simulate", help="replay a dataset of recorded outcomes through a policy",
                            description="Run every prompt of a recorded dataset through the policy "
                                        "(recorded models answer from the dataset) and report accuracy, "
                                        "cost and escalations next to every single model and the oracle.")
    parser.add_argument("--policy", required=True, help="policy file")
    parser.add_argument("--dataset", required=True, help="RouterBench CSV or JSONL file")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the policy block for every request")
    parser.add_argument("--gold-extract", default="text", choices=sorted(EXTRACTORS),
                        help="how an answer of a model without a recording is compared with the record's "
                             "gold answer (default: text)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="draw cost against accuracy")
    parser.set_defaults(func=cmd_simulate)


def add_calibrate(sub: SubParsers) -> None:
    from router.lab.calibrate import add_calibrate as add  # the command lives beside its code

    add(sub)


LAB_COMMANDS: list[Callable[[SubParsers], None]] = [add_simulate, add_calibrate]


def register(sub: SubParsers) -> None:
    """Add every lab command to the ``router`` parser."""
    for add in LAB_COMMANDS:
        add(sub)
