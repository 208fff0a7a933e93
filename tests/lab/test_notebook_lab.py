"""notebooks/02-policy-lab.ipynb runs offline from top to bottom in a real Jupyter kernel (the
venv's python, through nbclient), on the first 30 prompts of each sample file: simulations,
the cost-accuracy plot, the shipped policy, and a calibration."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "02-policy-lab.ipynb"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_policy_lab_notebook_executes_and_shows_its_results():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it without outputs"
    params = next(c for c in nb.cells if c.cell_type == "code" and c.source.lstrip().startswith("# Parameters"))
    params.source = re.sub(r"LIMIT = None", "LIMIT = 30", params.source)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert _text(code[-1]).strip() == sys.executable  # the venv's interpreter ran the kernel
    summary = next(_text(c) for c in code if "escalated" in c.source)
    for name in ("mistral-7b only", "gpt-4 only", "format check", "agreement"):
        assert name in summary
    # the plot cell drew a figure
    assert any("image/png" in out.get("data", {}) for c in code for out in c.get("outputs", []))
    # the decision record of a disagreement shows the escalation to gpt-4
    record = next(c for c in code if "decision_from_dict(message" in c.source)
    assert "gpt-4" in _text(record) and "agreement" in _text(record)
    others = _text(next(c for c in code if "mbpp.jsonl" in c.source))
    assert "winogrande.jsonl" in others and "mbpp.jsonl" in others and "n=30" in others
    shipped = _text(next(c for c in code if c.source.startswith("shipped = simulate")))
    assert "cascade-routerbench" in shipped and "n=30" in shipped
    calibration = _text(next(c for c in code if "calibrate(" in c.source))
    assert "held-out" in calibration and "policy written to" in calibration
