"""``router spend`` on a ledger with nothing in it says why instead of an unexplained empty table
(issue 25, point 6: a policy without ``budgets:`` records nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli.main import main


def test_an_empty_ledger_says_what_the_ledger_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["spend", "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"]) == 0
    out, err = capsys.readouterr()
    assert "total        0" in out
    assert "records the paid calls of a policy with budgets:" in err and "records nothing" in err
