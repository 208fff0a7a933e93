"""How ``router ask`` ends: its exit code, what it says on stderr, and the streamed answer.

Exit codes: 0 accepted; 2 failed (no complete, non-empty answer); 3 exhausted (no answer passed
the checks: the best complete one is printed under ``on_exhausted: best``). 1 (an invalid policy
or override) is :func:`router.cli.main.main`'s. Unless the answer was accepted, stderr gets a
headline and one line per rung (:func:`router.routing.outcome.rung_lines`): which ran and why
each was not accepted, which were not tried and why. No secret is in any of it.

Example:
    $ router ask "Write a haiku about autumn" --set offline=true; echo $?
    router: failed: no complete, non-empty answer
      gemma-270m: not accepted: complete: empty answer: no text and no tool call
      smollm2-135m: not accepted: complete: finish_reason length: cut off at the token limit
    2
"""

from __future__ import annotations

import sys
from typing import Any

from router.errors import RoutingError
from router.routing.decision import Decision
from router.routing.outcome import rung_lines
from router.routing.tokens import message_text

EXIT_ACCEPTED, EXIT_POLICY, EXIT_FAILED, EXIT_EXHAUSTED = 0, 1, 2, 3
_CODES = {"accepted": EXIT_ACCEPTED, "exhausted": EXIT_EXHAUSTED}


def exit_code(decision: Decision) -> int:
    """0 accepted, 3 exhausted, 2 anything else (failed)."""
    return _CODES.get(decision.status, EXIT_FAILED)


def headline(decision: Decision, *, answered: bool) -> str:
    """One line: the status and what it means for what was printed."""
    if decision.status == "exhausted":
        if answered:
            return (f"exhausted: no answer passed the checks; printed the best complete answer "
                    f"({decision.final_model})")
        return "exhausted: no answer passed the checks (on_exhausted: raise)"
    if not decision.candidates:
        return "failed: no eligible model"
    return "failed: no complete, non-empty answer"


def report_outcome(decision: Decision, *, answered: bool, file: Any = None) -> None:
    """Unless accepted: the headline and one line per rung, on stderr."""
    if decision.status == "accepted":
        return
    out = file if file is not None else sys.stderr
    print(f"router: {headline(decision, answered=answered)}", file=out)
    for line in rung_lines(decision):
        print(f"  {line}", file=out)


def ask_streaming(router: Any, question: str, config: Any) -> int:
    """Stream the answer to stdout as it comes (live only for an attempt whose answer is returned
    whatever its checks say, see README "Streaming"; others arrive once accepted); then the
    record's summary and, unless accepted, the rung lines on stderr."""
    last = None
    started = False
    try:
        for chunk in router.stream(question, config=config):
            text = message_text(chunk)
            if not started:
                text = text.lstrip()
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
                started = True
            if "routing" in (chunk.response_metadata or {}):
                last = chunk
    except RoutingError as err:
        if started:
            print()
        report_outcome(err.decision, answered=False)
        return exit_code(err.decision)
    print()
    decision = Decision.from_message(last)
    print(decision.summary(), file=sys.stderr)
    report_outcome(decision, answered=True)
    return exit_code(decision)
