"""The policy lab: recorded datasets, simulation of policies on them, and calibration.

Example:
    >>> from router.lab import load_dataset, simulate
    >>> report = simulate("policies/cascade-routerbench.yaml",
    ...                   load_dataset("data/routerbench-sample/arc_challenge.jsonl"))
    >>> report.accuracy, report.cost_usd
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "router.lab.datasets", "DatasetError": "router.lab.datasets",
    "Outcome": "router.lab.datasets", "Record": "router.lab.datasets",
    "load_dataset": "router.lab.datasets", "register_dataset": "router.lab.datasets",
    "SimulationReport": "router.lab.simulate", "Score": "router.lab.simulate",
    "simulate": "router.lab.simulate", "bind_dataset": "router.lab.simulate",
    "plot_reports": "router.lab.plot",
}


def __getattr__(name: str) -> Any:
    # Lazy, so the recorded provider can import router.lab.datasets without pulling in the
    # router runnable (and matplotlib stays unimported until a plot is drawn).
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'router.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS)
