"""A path a policy names is never opened blocking (issue 24, point 7): ``routing.estimator``
naming a FIFO, a device, a socket or a directory gives the plain cascade with ``estimator:
"unavailable: ..."`` at once, like a malformed artifact; a FIFO used to hang every request
and ``explain()``. The same for a SQLite ledger path and a recorded model's ``dataset:``."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from router import PolicyRouter
from router.files import NotRegularFileError, check_regular, read_regular

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policies" / "routed-routerbench.yaml"
ARTIFACT = ROOT / "policies" / "routed-routerbench.estimator.npz"
ARC = ROOT / "data" / "routerbench-sample" / "arc_challenge.jsonl"
QUESTION = "Which animal is a mammal? A) shark B) whale"


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """``work()`` in a daemon thread; fails (instead of hanging the suite) when it blocks."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # left bound until the test process ends


SPECIAL = {"fifo": _fifo, "directory": _directory, "device": _device, "socket": _socket}


def routed_policy(folder: Path, make: Callable[[Path], None]) -> Path:
    folder.mkdir(parents=True)
    text = SHIPPED.read_text().replace("${ROUTERBENCH_DATASET:-data/routerbench-sample/arc_challenge.jsonl}", str(ARC))
    policy = folder / SHIPPED.name
    policy.write_text(text)
    make(folder / ARTIFACT.name)
    return policy


@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_a_special_estimator_path_gives_the_plain_cascade_at_once(kind: str, tmp_path: Path):
    # tmp_path is long; a socket path must stay under ~100 bytes
    folder = Path(f"/tmp/est-{os.getpid()}-{kind}") if kind == "socket" else tmp_path / kind
    shutil.rmtree(folder, ignore_errors=True)
    try:
        router = PolicyRouter.from_yaml(routed_policy(folder, SPECIAL[kind]))
        record = within(10, lambda: router.explain(QUESTION).to_dict())
        assert record["estimator"].startswith("unavailable:")
        assert "not a regular file" in record["estimator"]
        assert record["candidates"]
        again = within(10, lambda: router.explain(QUESTION).to_dict())  # and every later request
        assert again["estimator"] == record["estimator"]
    finally:
        if kind == "socket":
            shutil.rmtree(folder, ignore_errors=True)


def test_a_regular_estimator_still_loads(tmp_path: Path):
    router = PolicyRouter.from_yaml(routed_policy(tmp_path / "ok", lambda p: shutil.copyfile(ARTIFACT, p)))
    assert router.explain(QUESTION).to_dict()["estimator"].startswith("sha256:")


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_read_regular_refuses_special_files_without_blocking(kind: str, tmp_path: Path):
    path = tmp_path / "x"
    SPECIAL[kind](path)
    with pytest.raises(NotRegularFileError):
        within(5, lambda: read_regular(path))
    with pytest.raises(NotRegularFileError):
        check_regular(path)


def test_read_regular_refuses_a_file_above_its_bound(tmp_path: Path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1000)
    assert read_regular(path, max_bytes=1000) == b"x" * 1000
    with pytest.raises(NotRegularFileError):
        read_regular(path, max_bytes=999)


def test_a_sqlite_ledger_naming_a_fifo_is_a_ledger_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from router.spend.ledger import LedgerError
    from router.spend.sqlite_ledger import SQLiteLedger

    path = tmp_path / "ledger.db"
    os.mkfifo(path)
    with pytest.raises(LedgerError):  # SQLite itself refuses it ("disk I/O error"), at once
        within(10, lambda: SQLiteLedger(path).usage)


def test_a_recorded_dataset_naming_a_fifo_fails_at_once(tmp_path: Path):
    from router.lab.datasets import DatasetError, load_dataset

    path = tmp_path / "data.jsonl"
    os.mkfifo(path)
    with pytest.raises(DatasetError, match="not a regular file"):
        within(10, lambda: load_dataset(str(path)))


@pytest.mark.parametrize("cost", ["-99.99", "NaN", "Infinity", "1e400"])
def test_a_recorded_cost_that_is_not_an_amount_is_a_dataset_error(tmp_path: Path, cost: str):
    """A recorded model's cost is charged and budgeted: a dataset may not credit it."""
    from router.lab.datasets import DatasetError, load_dataset

    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"prompt": "q", "models": {"m": {"response": "a", "cost_usd": ' + cost + "}}}\n")
    with pytest.raises(DatasetError, match="cost_usd"):
        load_dataset(str(jsonl))
    csv_file = tmp_path / "data.csv"
    csv_file.write_text(f"prompt,m,m|model_response,m|total_cost\nq,1,a,{cost}\n")
    with pytest.raises(DatasetError, match="cost"):
        load_dataset(str(csv_file))


def test_a_reported_cost_that_is_not_an_amount_is_charged_the_worst_case():
    """Defence in depth behind the dataset check: the caller believes no cost figure that is
    not a finite amount >= 0 (an adapter reporting one is an overrun at the worst case)."""
    from router.routing.usage import credible_cost

    assert [credible_cost(v) for v in (0.5, 0, -1.0, float("nan"), float("inf"), True, "1")] == \
        [0.5, 0.0, None, None, None, None, None]
