"""Robustness in ``vara compare``: for runs of a sweep (``run_info.sweep``, agents/sweep.py),
each strategy's macro-F1 at each perturbation level, its drop from ``none``, and a plot of
the curves with the bootstrap 95% intervals of results.json."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from vara.eval.plots import curves_png
from vara.eval.report_html import Table

__all__ = ["level_order", "robustness_png", "robustness_table", "sweep_series"]

Series = dict[str, list[tuple[str, dict[str, Any]]]]  # base strategy -> [(level, metrics)]


def level_order(level: str) -> tuple[bool, tuple[str | float, ...]]:
    """Sort key of a level: ``none`` first, then by text with numbers read as numbers
    (``noise:5`` before ``noise:10``). results.json does not record the order the levels
    were given in, and run directories are listed by name, which puts ``none`` last."""
    parts = re.split(r"(\d+(?:\.\d+)?)", level)
    return level != "none", tuple(float(p) if i % 2 else p for i, p in enumerate(parts))


def sweep_series(runs: Sequence[Any]) -> tuple[list[str], Series]:
    """The levels (``level_order``) and, per base strategy, its runs' metrics."""
    levels: set[str] = set()
    series: Series = {}
    for run in runs:
        sweep = run.run_info.get("sweep")
        if not sweep:
            continue
        levels.add(sweep["level"])
        series.setdefault(sweep["strategy"], []).append((sweep["level"], run.metrics))
    return sorted(levels, key=level_order), series


def _f1(metrics: dict[str, Any] | None) -> float:
    value = (metrics or {}).get("macro_f1")
    return float(value) if isinstance(value, (int, float)) else math.nan


def robustness_table(runs: Sequence[Any]) -> Table | None:
    """Strategies x levels: macro-F1 and, after the first level, the change from ``none``."""
    levels, series = sweep_series(runs)
    if not series:
        return None
    rows = []
    for strategy, points in series.items():
        by_level = dict(points)
        base = _f1(by_level.get("none"))
        cells = []
        for level in levels:
            f1 = _f1(by_level.get(level))
            if math.isnan(f1):
                cells.append("–")
            elif level == "none" or math.isnan(base):
                cells.append(f"{f1:.3f}")
            else:
                cells.append(f"{f1:.3f} ({f1 - base:+.3f})")
        rows.append((strategy, *cells))
    columns = ("strategy", *(f"{level} macro-F1" for level in levels))
    return Table(columns, tuple(rows), frozenset(), frozenset(range(1, len(columns))))


def robustness_png(runs: Sequence[Any]) -> bytes | None:
    """The sweep's curves (eval/plots.py draws them); None when there is no sweep to draw."""
    levels, series = sweep_series(runs)
    return curves_png(levels, series) if series and len(levels) > 1 else None
