"""Spend control: period budgets enforced before every paid call, a durable ledger, reports.

Example:
    >>> from router.spend import get_cost_callback, spend_report
    >>> with get_cost_callback() as cb:
    ...     router.invoke("What is the capital of France?")
    >>> cb.total_usd
    0.0
    >>> spend_report("sqlite:////tmp/ledger.db", by="model")
"""

from router.spend.callback import CostCallbackHandler, get_cost_callback
from router.spend.config import Budget, LedgerURL, Period
from router.spend.guard import BudgetGuard, BudgetStatus
from router.spend.ledger import (
    Bucket,
    BucketUsage,
    Hold,
    Ledger,
    LedgerError,
    LedgerLostError,
    Shortfall,
    SpendEntry,
)
from router.spend.ledger_url import default_ledger_url, open_ledger
from router.spend.report import SpendReport, spend_report

__all__ = [
    "Bucket", "BucketUsage", "Budget", "BudgetGuard", "BudgetStatus", "CostCallbackHandler", "Hold",
    "Ledger", "LedgerError", "LedgerLostError", "LedgerURL", "Period", "Shortfall", "SpendEntry", "SpendReport",
    "default_ledger_url", "get_cost_callback", "open_ledger", "spend_report",
]
