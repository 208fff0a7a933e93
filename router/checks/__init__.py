"""Checks: is an answer good enough to stop the cascade?

``builtin`` holds the check protocol, the registry and the checks that need no other model;
``consulting`` the checks that ask other models (agreement, verifier, self_consistency);
``extractors`` pull a comparable answer (a choice, a number, code) out of free text;
``answer_in`` accepts an answer only when its extracted value is one of a few;
``token_logprob`` scores the tokens the model chose (min / first / mean, grammar-forced ones left out);
``answer_type`` fails an answer of the wrong shape (no number when one was asked, no yes/no...);
``grading`` grades answers against a labeled set's references (for calibration, not a check).
Importing this package registers all of them.

Example:
    >>> from router.checks import build_check, Answer
    >>> build_check({"check": "min_length", "chars": 3}).run(Answer.from_text("Paris"), None).passed
    True
"""

from router.checks import answer_in as _answer_in  # noqa: F401  (registers answer_in)
from router.checks import answer_type as _answer_type  # noqa: F401  (registers answer_type)
from router.checks import consulting as _consulting  # noqa: F401  (registers the consulting checks)
from router.checks import token_logprob as _token_logprob  # noqa: F401  (registers token_logprob)
from router.checks.builtin import (
    Answer,
    CheckContext,
    CheckResult,
    CheckRun,
    CheckSpec,
    ConfidenceCheck,
    build_check,
    check_class,
    register_check,
    registered_checks,
)

__all__ = [
    "Answer", "CheckContext", "CheckResult", "CheckRun", "CheckSpec", "ConfidenceCheck",
    "build_check", "check_class", "register_check", "registered_checks",
]
