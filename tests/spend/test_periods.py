"""Calendar periods in UTC: keys and ends for minute, hour, day and month, across year ends and
leap days."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from router.spend.periods import period_end, period_key


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("period", "at", "key", "end"), [
    ("minute", ts(2027, 12, 31, 23, 59, 59), "2027-12-31T23:59", ts(2028, 1, 1)),
    ("hour", ts(2027, 6, 15, 8, 30), "2027-06-15T08", ts(2027, 6, 15, 9)),
    ("day", ts(2028, 2, 28, 23, 59, 59), "2028-02-28", ts(2028, 2, 29)),
    ("day", ts(2028, 2, 29, 0, 0, 0), "2028-02-29", ts(2028, 3, 1)),
    ("month", ts(2028, 2, 10), "2028-02", ts(2028, 3, 1)),
    ("month", ts(2027, 12, 31, 23, 59, 59), "2027-12", ts(2028, 1, 1)),
])
def test_period_key_and_end(period: str, at: float, key: str, end: float):
    assert period_key(period, at) == key  # type: ignore[arg-type]
    assert period_end(period, at) == end  # type: ignore[arg-type]
    assert period_key(period, end) != key and period_key(period, end - 0.001) == key  # type: ignore[arg-type]
