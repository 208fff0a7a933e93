"""The plain design search of ``router calibrate``: cascade order and agreement checks.

Every cascade with one guarded rung before the final model is scored; then a second guarded
rung is inserted into the ``beam`` best. :func:`rank` orders scored designs for a target
(shortfall first, then cost or accuracy, then size).

Example:
    >>> found = search(table, parse_target("accuracy>=0.97*gpt-4"), final="gpt-4", cheap=cheap, tiers=tiers)
    >>> print(found.best.design)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from router.lab.cascade_table import Design, OutcomeTable, Rung, RungCache, Scored, evaluate_many
from router.lab.targets import Target


def candidate_designs(cheap: Sequence[str], final: str, *, max_voters: int = 3,
                      second_voters: int = 2) -> tuple[list[Design], list[tuple[Rung, ...]]]:
    """First-stage designs (one guarded rung before ``final``) and the guarded rungs a second
    stage may insert. Voters are asked cheapest first (``cheap`` is sorted by cost)."""

    def rungs(model: str, size: int) -> list[Rung]:
        others = [c for c in cheap if c != model]
        out = []
        for k in range(1, size + 1):
            for voters in itertools.combinations(others, k):
                out += [Rung(model, voters, need if need < k else None) for need in range(1, k + 1)]
        return out

    first = [Design((Rung(final),))]
    first += [Design((r, Rung(final))) for model in cheap for r in rungs(model, max_voters)]
    seconds = [(r,) for model in cheap for r in rungs(model, second_voters)]
    return first, seconds


@dataclass
class SearchResult:
    best: Scored
    met: bool
    evaluated: int


def staged(table: OutcomeTable, target: Target, *, final: str, cheap: Sequence[str], tiers: dict[str, int],
           max_voters: int = 3, beam: int = 12, raise_on_exhausted: bool = False,
           cache: RungCache | None = None) -> list[Scored]:
    """Every one-guarded-rung cascade scored, then a second guarded rung inserted into the
    ``beam`` best of those (ranked for ``target``); all scored designs, first stage first."""
    first, seconds = candidate_designs(cheap, final, max_voters=max_voters)
    cache = {} if cache is None else cache
    scored = evaluate_many(table, first, raise_on_exhausted=raise_on_exhausted, cache=cache)
    longer: list[Design] = []
    for base in sorted(scored, key=ranking(target, table))[:beam]:
        if len(base.design.rungs) != 2:
            continue
        head = base.design.rungs[0]
        extras = [r for (r,) in seconds if r.model != head.model and tiers[r.model] >= tiers[head.model]]
        longer += [Design((head, extra, base.design.rungs[-1])) for extra in extras]
    return scored + evaluate_many(table, longer, raise_on_exhausted=raise_on_exhausted, cache=cache)


def search(table: OutcomeTable, target: Target, *, final: str, cheap: Sequence[str], tiers: dict[str, int],
           max_voters: int = 3, beam: int = 12, raise_on_exhausted: bool = False) -> SearchResult:
    """Best design for ``target`` among :func:`staged`'s."""
    scored = staged(table, target, final=final, cheap=cheap, tiers=tiers, max_voters=max_voters, beam=beam,
                    raise_on_exhausted=raise_on_exhausted)
    best = min(scored, key=ranking(target, table))
    met = all(c.holds(best.accuracy, best.cost, table) for c in target.constraints)
    return SearchResult(best, met, len(scored))


def rank(s: Scored, target: Target, table: OutcomeTable) -> tuple[float, ...]:
    """Sort key of ``s`` for ``target`` on ``table``: constraint shortfall first, then the objective."""
    return ranking(target, table)(s)


def ranking(target: Target, table: OutcomeTable) -> Callable[[Scored], tuple[float, ...]]:
    """:func:`rank` as a key function with the target's bounds computed once (sorting a
    search's designs calls it hundreds of thousands of times).

    Example:
        >>> best = min(scored, key=ranking(target, table))
    """
    bounds = [(c, c.bound(table)) for c in target.constraints]
    min_cost = target.objective == "min_cost"

    def key(s: Scored) -> tuple[float, ...]:
        shortfall = sum(c.shortfall_below(s.accuracy, s.cost, b) for c, b in bounds)
        size = sum(1 + len(r.voters) for r in s.design.rungs)
        if min_cost:
            return (shortfall, s.cost, -s.accuracy, size)
        return (shortfall, -s.accuracy, s.cost, size)

    return key


__all__ = ["SearchResult", "candidate_designs", "rank", "ranking", "search", "staged"]
