"""Calendar periods in UTC: which period an instant falls in, and when that period ends.

Example:
    >>> period_key("day", 1_800_000_000.0)
    '2027-01-15'
    >>> period_end("day", 1_800_000_000.0)  # 2027-01-16T00:00:00Z
    1800057600.0
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from router.spend.config import Period

_FORMATS: dict[str, str] = {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d",
                            "month": "%Y-%m"}


def _start(period: Period, ts: float) -> datetime:
    at = datetime.fromtimestamp(ts, timezone.utc)
    if period == "minute":
        return at.replace(second=0, microsecond=0)
    if period == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def period_key(period: Period, ts: float) -> str:
    """The period ``ts`` (epoch seconds) falls in, as a sortable UTC string."""
    return _start(period, ts).strftime(_FORMATS[period])


def period_end(period: Period, ts: float) -> float:
    """Epoch seconds at which the period containing ``ts`` ends."""
    start = _start(period, ts)
    if period == "month":
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    else:
        end = start + {"minute": timedelta(minutes=1), "hour": timedelta(hours=1),
                       "day": timedelta(days=1)}[period]
    return end.timestamp()
