"""The cost–accuracy picture of one or more simulations: every single model, the oracle and each
simulated policy, cost on a log axis.

Example:
    >>> fig = plot_reports([report_a, report_b], path="cost-accuracy.png")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib  # the ``plot`` extra: importing this module fails without it

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from router.lab.simulate import SimulationReport


def plot_reports(reports: SimulationReport | Sequence[SimulationReport], *,
                 path: str | os.PathLike[str] | None = None, title: str | None = None,
                 ax: Any = None, frontier: Sequence[tuple[float, float, str]] = ()) -> Figure:
    """Draw cost (x, log scale) against accuracy (y); save to ``path`` when given.
    Needs matplotlib (the ``plot`` extra).

    ``frontier``: (accuracy, cost, label) of searched designs on the same dataset (see
    :func:`router.lab.frontier.score_frontier`): drawn as points with their Pareto front as a line.

    Single models and the oracle come from the first report (all reports should share a
    dataset); each report adds one policy point. Uses the Agg backend unless a figure exists.
    """
    if ax is None and matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [reports] if not isinstance(reports, Sequence) else list(reports)
    if not items:
        raise ValueError("nothing to plot: no simulation reports")
    first = items[0]
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 5.5))
    else:
        fig = ax.figure
    floor = min([s.cost_usd for s in first.baselines.values() if s.cost_usd > 0]
                + [r.cost_usd for r in items if r.cost_usd > 0] + [1e-6])

    def x(cost: float) -> float:
        return max(cost, floor / 2)  # a free answer still needs a place on a log axis

    for model, score in first.baselines.items():
        ax.scatter(x(score.cost_usd), score.accuracy, color="0.55", s=28, zorder=2)
        ax.annotate(model.split("/")[-1], (x(score.cost_usd), score.accuracy), fontsize=7, color="0.35",
                    xytext=(4, -3), textcoords="offset points")
    if frontier:
        ax.scatter([x(c) for _, c, _ in frontier], [a for a, _, _ in frontier], s=10, color="tab:green",
                   alpha=0.35, zorder=2)
        front: list[tuple[float, float]] = []
        for acc, cost, _ in sorted(frontier, key=lambda t: (t[1], -t[0])):
            if not front or acc > front[-1][1]:
                front.append((x(cost), acc))
        ax.plot([c for c, _ in front], [a for _, a in front], "-o", color="tab:green", markersize=3,
                label=f"searched designs ({len(frontier)}; Pareto front)", zorder=3)
    ax.scatter(x(first.oracle.cost_usd), first.oracle.accuracy, marker="*", s=160, color="goldenrod",
               label="oracle (cheapest correct model)", zorder=3)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "DsP^vXo"
    for i, report in enumerate(items):
        # Shrinking sizes and varied markers keep policies that land on the same point visible.
        ax.scatter(x(report.cost_usd), report.accuracy, marker=markers[i % len(markers)],
                   s=max(110 - 18 * i, 30), color=colors[i % len(colors)], alpha=0.9,
                   label=f"policy {report.policy}", zorder=4 + i)
    ax.set_xscale("log")
    ax.set_xlabel(f"total cost over {first.n} prompts (USD, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"cost vs accuracy on {os.path.basename(first.dataset)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


__all__ = ["plot_reports"]
