"""The notebooks run top to bottom, offline, in a kernel on this venv's interpreter.

Each notebook is executed with nbclient from the repository root. Two cells are added to the
in-memory copy (the file is not changed): one first, blocking any non-loopback connection in
the kernel the way tests/conftest.py does in this process, and one last, reporting the kernel's
interpreter. A case names the tag of the cell whose output must show the expected text.

To add a notebook, append a :class:`Case` to ``CASES``.

Example:
    Case("notebooks/02-policy-lab.ipynb", answer_tag="answer", expected="...")
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT_S = 300


@dataclass(frozen=True)
class Case:
    path: str
    answer_tag: str
    expected: str


CASES = [
    Case("notebooks/01-quickstart.ipynb", answer_tag="answer", expected="Paris"),
]

GUARD = '''
import ipaddress as _ip, socket as _socket
_connect = _socket.socket.connect
def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in ("localhost", "ip6-localhost"):
        try:
            loopback = _ip.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise RuntimeError(f"notebook tried to connect to {address!r}; only loopback is allowed")
    return _connect(self, address)
_socket.socket.connect = _loopback_only
'''


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A kernelspec whose argv is this interpreter, so the kernel sees the editable install."""
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    spec = kernels / "router-venv"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "router venv", "language": "python"}))
    return [str(kernels)]


def _outputs_text(cell: nbformat.NotebookNode) -> str:
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(str(out["data"].get("text/plain", "")))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[Path(c.path).stem for c in CASES])
def test_notebook_runs_offline_and_answers(case: Case, kernel_dirs: list[str]) -> None:
    nb = nbformat.read(ROOT / case.path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{case.path} is committed with outputs; clear them"
    tagged = [c for c in nb.cells if case.answer_tag in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged {case.answer_tag!r} in {case.path}"
    nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))

    km = KernelManager(kernel_name="router-venv",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [c for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert _outputs_text(nb.cells[-1]).strip() == sys.executable
    assert case.expected in _outputs_text(tagged[0])
