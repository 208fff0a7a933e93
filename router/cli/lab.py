"""The policy-lab commands of ``router``, registered by :func:`register` (``router/cli.py``
imports this module when it exists).

    router simulate --policy P --dataset D [--json] [--plot FILE.png] [--limit N] [--set key=value]
                    [--gold-extract choice|number|code|text]
    router calibrate --policy P --dataset D [--dataset D2] --target T --out FILE [--holdout 0.5] [--routing]
                     [--task-designs N] [--gates] [--no-split] [--compare POLICY] [--json]
    router train --policy P --dataset D [--dataset D2] [--out FILE.npz] [--json]

One ``add_<command>(sub)`` function per command; :data:`LAB_COMMANDS` lists them. The commands
parse arguments and print; the work is in :mod:`router.lab`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable

from router.checks.extractors import EXTRACTORS
from router.lab.datasets import DatasetError, load_dataset

SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def recorded_inputs(parser: argparse.ArgumentParser, policy_help: str, verb: str) -> None:
    """``--policy`` and the repeatable ``--dataset`` of the commands that learn from recordings."""
    parser.add_argument("--policy", required=True, help=policy_help)
    parser.add_argument("--dataset", required=True, action="append",
                        help=f"RouterBench CSV or JSONL file (repeat to {verb} on several together)")


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
        from router.lab.frontier import score_frontier
        from router.policy.policy_file import load_policy

        frontier = score_frontier(load_policy(args.policy), load_dataset(args.dataset), args.frontier)
        plot_reports(report, path=args.plot, frontier=frontier)
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
    parser.add_argument("--frontier", default=None, metavar="FILE.json",
                        help="searched designs to draw with --plot (default: <policy stem>.frontier.json "
                             "beside the policy, written by calibrate --routing, when it exists)")
    parser.set_defaults(func=cmd_simulate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``router calibrate``: exit 0 when the target is met on the tuned prompts and the replay
    agrees with the table, 1 otherwise (the policy is written either way, its header says so)."""
    from router.lab.calibrate import CalibrationError, calibrate

    command = "router calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    try:
        report = calibrate(args.policy, args.dataset, args.target, out=args.out, holdout=args.holdout,
                           seed=args.seed, extract=args.extract, final=args.final,
                           max_voters=args.max_voters, verify=not args.no_verify, command=command,
                           routing=args.routing, compare=args.compare, task_designs=args.task_designs,
                           tail_features=args.tail_features, gates=args.gates, split_tasks=not args.no_split)
    except (CalibrationError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    replays = [m.agrees for m in (report.tuned, report.held_out) if m is not None]
    return 0 if report.met and all(a is not False for a in replays) else 1


TAIL_HELP = ("also try features from the prompts' last 300 and 1,000 characters, where a few-shot prompt's "
             "question is (chosen only if they win the k-fold log loss)")


def add_calibrate(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "calibrate", help="tune a policy's cascade and agreement checks on recorded outcomes",
        description="Search cascade order and agreement checks over the policy's recorded models to meet "
                    "a target, verify the choice with the real router, and write the tuned policy. Target: "
                    "comma-separated METRIC OP VALUE[*MODEL], e.g. 'accuracy>=0.97*gpt-4-1106-preview' "
                    "(minimise cost) or 'cost<=0.4*gpt-4-1106-preview' (maximise accuracy).")
    recorded_inputs(parser, "policy file whose catalog holds the recorded models", "tune")
    parser.add_argument("--target", required=True, help="e.g. accuracy>=0.97*gpt-4-1106-preview,cost<=0.4*gpt-4-1106-preview")
    parser.add_argument("--out", required=True, help="where to write the tuned policy (its name: the file stem)")
    parser.add_argument("--holdout", type=float, default=0.5,
                        help="share of prompts kept out of the search and measured separately (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tune/held-out split")
    parser.add_argument("--extract", default="choice", help="extractor the agreement checks compare with")
    parser.add_argument("--final", default=None, help="last rung (default: the most accurate model)")
    parser.add_argument("--max-voters", type=int, default=3, help="most models one agreement check consults")
    parser.add_argument("--no-verify", action="store_true", help="skip the replay through the real router")
    parser.add_argument("--routing", action="store_true",
                        help="also train a per-prompt estimator on the tuned share (written beside --out) and "
                             "search the policy's routing: thresholds together with the cascade")
    parser.add_argument("--task-designs", type=int, default=4, metavar="N",
                        help="with --routing and several known tasks: search a cascade per task (routing.tasks "
                             "with its own cascade, checks and thresholds) from up to N of that task's best plain "
                             "designs per accuracy level; how many (1..N) and the accuracy margin are chosen by "
                             "5-fold cross-validation on the tuned share (default 4; 0: none)")
    parser.add_argument("--compare", default=None, metavar="POLICY",
                        help="another policy to replay on the same held-out prompts; its figures go in the header")
    parser.add_argument("--tail-features", action="store_true", help=TAIL_HELP)
    parser.add_argument("--gates", action="store_true",
                        help="with per-task designs: also try an answer_in gate on each design's first rung (accept "
                             "its answer only when it is one of some values, e.g. a two-way choice's 'B')")
    parser.add_argument("--no-split", action="store_true",
                        help="with per-task designs: one design per task (by default a task may send a share of its "
                             "prompts, chosen by a hash of the prompt, through a second design: routing.tasks share)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_calibrate)


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from router.errors import PolicyError
    from router.lab.calibrate import CalibrationError, combine
    from router.lab.train import FEATURE_GRID, TAIL_GRID, train_estimator
    from router.policy.policy_file import load_policy

    try:
        policy = load_policy(args.policy)
        data = combine(args.dataset)
    except (DatasetError, PolicyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.out:
        out = Path(args.out)
    elif policy.routing is not None:
        out = policy.routing.estimator_path(policy.source)
    else:
        out = Path(args.policy).with_name(Path(args.policy).stem + ".estimator.npz")
    try:
        fitted = train_estimator(data.records, folds=args.folds,
                                 grid=FEATURE_GRID + TAIL_GRID if args.tail_features else FEATURE_GRID,
                                 source=", ".join(Path(d).name for d in args.dataset))
    except CalibrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    digest = fitted.estimator.save(out)
    if args.json:
        print(json.dumps({"out": str(out), "digest": digest, "models": list(fitted.estimator.models),
                          **fitted.estimator.meta}, indent=2))
    else:
        print(fitted.report())
        print(f"estimator for {len(fitted.estimator.models)} models written to {out} ({digest})")
        if policy.routing is None:
            print(f"reference it from the policy:\n  routing:\n    estimator: {out.name}")
    return 0


def add_train(sub: SubParsers) -> None:
    parser = sub.add_parser("train", help="fit per-model quality and cost estimators on recorded outcomes",
                            description="Fit, for every model of the recorded datasets, P(correct) and the "
                                        "expected cost from the prompt (hashed n-grams, scikit-learn), pick "
                                        "features by k-fold log loss, and save the artifact a policy's "
                                        "routing: block references (needs the 'lab' extra).")
    recorded_inputs(parser, "the policy the estimator is for", "train")
    parser.add_argument("--out", default=None, metavar="FILE.npz",
                        help="where to write (default: the policy's routing.estimator, else "
                             "<policy stem>.estimator.npz beside the policy)")
    parser.add_argument("--folds", type=int, default=5, help="k of the k-fold feature selection (default 5)")
    parser.add_argument("--tail-features", action="store_true", help=TAIL_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_train)


LAB_COMMANDS: list[Callable[[SubParsers], None]] = [add_simulate, add_calibrate, add_train]


def register(sub: SubParsers) -> None:
    """Add every lab command to the ``router`` parser."""
    for add in LAB_COMMANDS:
        add(sub)
