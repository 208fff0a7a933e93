"""Both notebooks run top to bottom, offline, in a kernel on this venv's interpreter.

Each notebook is executed with nbclient. Two cells are added to the in-memory copy (the file is
not changed): one first, blocking any non-loopback connection in the kernel the way
tests/conftest.py does in this process, and one last, reporting the kernel's interpreter. A case
names, by cell tag, the text a cell's output must show (``text``), the HTML it must render
(``html``, e.g. a Decision's table) and the cells that must draw a figure; ``parameters``
replace assignments in the cell tagged ``parameters``. ``cwd`` is where the kernel starts
(relative to the repository; None: an empty temporary directory, away from ``policies/``).

To add a notebook, append a :class:`Case` to ``CASES``.

Example:
    Case("notebooks/03-new.ipynb", cwd=".", text={"answer": ("Paris",)})
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
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
    cwd: str | None
    text: dict[str, tuple[str, ...]]
    html: dict[str, tuple[str, ...]] = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)


CASES = [
    # From an empty directory: the packaged default policy, not ../policies, answers.
    Case("notebooks/01-quickstart.ipynb", cwd=None,
         text={"answer": ("Paris",), "stream": ("by gemma-270m",),  # exhausted: SmolLM2 does not agree
               "own-policy": ("candidates: gemma", "<string>:6:3: policy.cost_celing: unknown key")},
         html={"decision": ("<table", "gemma-270m", "exhausted")}),
    Case("notebooks/02-policy-lab.ipynb", cwd="notebooks",
         text={"summary": ("mistral-7b only", "gpt-4 only", "format check", "agreement"),
               "decision": ("gpt-4", "agreement"),
               "other-tasks": ("winogrande.jsonl", "mbpp.jsonl", "n=30"),
               "shipped": ("cascade-routerbench", "n=30"),
               "calibration": ("held-out", "policy written to")},
         html={"decision": ("<table", "gpt-4", "agreement")},
         figures=("plot",), parameters={"LIMIT": "30"}),
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


def _outputs(cell: nbformat.NotebookNode, mime: str = "text/plain") -> str:
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and mime == "text/plain":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(str(out["data"].get(mime, "")))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[Path(c.path).stem for c in CASES])
def test_notebook_runs_offline_and_shows_its_results(case: Case, kernel_dirs: list[str],
                                                     tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / case.path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{case.path} is committed with outputs; clear them"
    if case.parameters:
        params = _tagged(nb, "parameters")
        for name, value in case.parameters.items():
            params.source, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", params.source, flags=re.M)
            assert n == 1, f"no assignment to {name} in the parameters cell"
    checked = {tag: _tagged(nb, tag) for tag in (*case.text, *case.html, *case.figures)}
    nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))

    cwd = ROOT / case.cwd if case.cwd is not None else tmp_path
    km = KernelManager(kernel_name="router-venv",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [c for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert _outputs(nb.cells[-1]).strip() == sys.executable
    for tag, expected in case.text.items():
        shown = _outputs(checked[tag])
        assert all(e in shown for e in expected), (tag, expected, shown)
    for tag, expected in case.html.items():
        shown = _outputs(checked[tag], "text/html")
        assert all(e in shown for e in expected), (tag, expected, shown[:500])
    for tag in case.figures:
        assert any("image/png" in out.get("data", {}) for out in checked[tag].get("outputs", [])), tag
