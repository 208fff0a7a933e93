"""The policy lab: recorded datasets, simulation of policies on them, and calibration.

Example:
    >>> from router.lab import load_dataset, simulate
    >>> report = simulate("policies/cascade-routerbench.yaml",
    ...                   load_dataset("data/routerbench-sample/arc_challenge.jsonl"))
    >>> report.accuracy, report.cost_usd
"""

from __future__ import annotations

from typing import Any

# Imported eagerly: ``simulate`` is both a module and a function here, and the function must win.
from router.lab.datasets import Dataset, DatasetError, Outcome, Record, load_dataset, register_dataset
from router.lab.simulate import Score, SimulationReport, bind_dataset, simulate


def __getattr__(name: str) -> Any:
    # matplotlib is imported only when a plot is drawn.
    if name == "plot_reports":
        from router.lab.plot import plot_reports

        return plot_reports
    raise AttributeError(f"module 'router.lab' has no attribute {name!r}")


__all__ = ["Dataset", "DatasetError", "Outcome", "Record", "Score", "SimulationReport", "bind_dataset",
           "load_dataset", "plot_reports", "register_dataset", "simulate"]
