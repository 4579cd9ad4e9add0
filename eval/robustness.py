"""Robustness in ``vara compare``: for runs of a sweep (``run_info.sweep``, agents/sweep.py),
each strategy's macro-F1 at each perturbation level, its drop from ``none``, and a plot of
the curves with the bootstrap 95% intervals of results.json."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vara.eval.report_html import Table

__all__ = ["robustness_png", "robustness_table", "sweep_series"]

Series = dict[str, list[tuple[str, dict[str, Any]]]]  # base strategy -> [(level, metrics)]


def sweep_series(runs: Sequence[Any]) -> tuple[list[str], Series]:
    """The levels (in order of first appearance) and, per base strategy, its runs' metrics."""
    levels: dict[str, None] = {}
    series: Series = {}
    for run in runs:
        sweep = run.run_info.get("sweep")
        if not sweep:
            continue
        levels.setdefault(sweep["level"], None)
        series.setdefault(sweep["strategy"], []).append((sweep["level"], run.metrics))
    return list(levels), series


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
    """Macro-F1 against the perturbation level, one line per strategy, with 95% CIs."""
    levels, series = sweep_series(runs)
    if not series or len(levels) < 2:
        return None
    fig = Figure(figsize=(max(5.0, 1.3 * len(levels)), 3.6))
    ax = fig.add_subplot()
    for strategy, points in series.items():
        by_level = dict(points)
        xs = [i for i, level in enumerate(levels) if level in by_level]
        ys = [_f1(by_level[levels[i]]) for i in xs]
        lo, hi = [], []
        for i, y in zip(xs, ys, strict=True):
            ci = by_level[levels[i]].get("macro_f1_ci95") or (y, y)
            lo.append(max(0.0, y - ci[0]))
            hi.append(max(0.0, ci[1] - y))
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=strategy)
    ax.set_xticks(range(len(levels)), levels, rotation=20, ha="right")
    ax.set_ylabel("macro-F1 (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()
