"""Spend reports: settled ledger entries grouped by model, policy, budget, day or a metadata key.

The same object backs ``router spend`` (text, ``--json``, ``--csv``) and Jupyter (``_repr_html_``).

Example:
    >>> report = spend_report("sqlite:////tmp/ledger.db", since="2026-11-01", by="user")
    >>> report.total_usd, [(r.key, r.calls) for r in report.rows]
    (0.0123, [('ann', 12), ('bob', 3)])
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from router.spend.ledger import Ledger, SpendEntry
from router.spend.ledger_url import open_ledger

BUILTIN_GROUPS = ("model", "policy", "budget", "day", "purpose")
NONE_KEY = "(none)"


@dataclass(frozen=True)
class ReportRow:
    key: str
    calls: int
    cost_usd: float
    worst_case_usd: float


@dataclass
class SpendReport:
    """Totals of settled spending, one row per group, largest cost first.

    With ``by="budget"`` a call charged to several budgets appears in each of their rows, so
    the rows may add up to more than ``total_usd``.
    """

    by: str
    ledger: str
    since: str | None
    rows: list[ReportRow] = field(default_factory=list)
    calls: int = 0
    total_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "ledger": self.ledger, "since": self.since, "calls": self.calls,
                "total_usd": round(self.total_usd, 9), "rows": [asdict(r) for r in self.rows]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.by, "calls", "cost_usd", "worst_case_usd"])
        for r in self.rows:
            writer.writerow([r.key, r.calls, f"{r.cost_usd:.9f}", f"{r.worst_case_usd:.9f}"])
        return out.getvalue()

    def __str__(self) -> str:
        width = max([len(self.by), *(len(r.key) for r in self.rows)])
        since = f" since {self.since}" if self.since else ""
        lines = [f"spend by {self.by}{since} ({self.ledger})",
                 f"{self.by:<{width}}  {'calls':>7}  {'cost USD':>12}"]
        lines += [f"{r.key:<{width}}  {r.calls:>7}  {r.cost_usd:>12.6f}" for r in self.rows]
        lines.append(f"{'total':<{width}}  {self.calls:>7}  {self.total_usd:>12.6f}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(r.key)}</td><td style='text-align:right'>{r.calls}</td>"
                       f"<td style='text-align:right'>${r.cost_usd:.6f}</td></tr>" for r in self.rows)
        since = f" since {html.escape(self.since)}" if self.since else ""
        return (f"<div><b>spend by {html.escape(self.by)}</b>{since} <small>({html.escape(self.ledger)})"
                f"</small><table><tr><th>{html.escape(self.by)}</th><th>calls</th><th>cost</th></tr>{rows}"
                f"<tr><td><b>total</b></td><td style='text-align:right'><b>{self.calls}</b></td>"
                f"<td style='text-align:right'><b>${self.total_usd:.6f}</b></td></tr></table></div>")


def parse_since(value: str | datetime | float | None, *, now: datetime | None = None) -> float | None:
    """``2026-11-27``, ``2026-11-27T08:00`` (UTC unless an offset is given), ``7d``, ``12h``,
    ``30m``, ``today``, a datetime or epoch seconds → epoch seconds."""
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    if text == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    relative = re.fullmatch(r"(\d+)([dhm])", text)
    if relative:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[relative.group(2)]
        return (now - timedelta(**{unit: int(relative.group(1))})).timestamp()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since takes a date (2026-11-27), a UTC datetime (2026-11-27T08:00), "
                         f"7d, 12h, 30m or today; got {value!r}") from None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


def _keys(entry: SpendEntry, by: str) -> Iterable[str]:
    if by == "budget":
        return entry.budgets or (NONE_KEY,)
    if by == "day":
        return (datetime.fromtimestamp(entry.ts, timezone.utc).strftime("%Y-%m-%d"),)
    if by in ("model", "policy", "purpose"):
        return (getattr(entry, by),)
    return (entry.metadata.get(by, NONE_KEY),)


def build_report(entries: Iterable[SpendEntry], *, by: str = "model", ledger: str = "",
                 since: str | None = None) -> SpendReport:
    """Group ``entries`` by ``by``: model, policy, budget, day, purpose or a ``per:`` metadata key."""
    groups: dict[str, list[float]] = {}
    report = SpendReport(by=by, ledger=ledger, since=since)
    for entry in entries:
        report.calls += 1
        report.total_usd += entry.cost_usd
        for key in _keys(entry, by):
            calls, cost, worst = groups.get(key, [0, 0.0, 0.0])
            groups[key] = [calls + 1, cost + entry.cost_usd, worst + entry.worst_case_usd]
    report.rows = sorted((ReportRow(k, int(v[0]), v[1], v[2]) for k, v in groups.items()),
                         key=lambda r: (-r.cost_usd, r.key))
    return report


def spend_report(ledger: Ledger | str | None = None, *, since: str | datetime | float | None = None,
                 by: str = "model") -> SpendReport:
    """Read the ledger (a :class:`Ledger`, a URL, or the default SQLite one) and group it."""
    store = ledger if ledger is not None and not isinstance(ledger, str) else open_ledger(ledger)
    start = parse_since(since)
    shown = None if since is None else (since if isinstance(since, str) else
                                        datetime.fromtimestamp(start or 0, timezone.utc).isoformat())
    return build_report(store.entries(start), by=by, ledger=store.url, since=shown)
