"""Report plots as PNG bytes: per-class F1 across runs, one confusion plot per run, and the
robustness curves of a sweep.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so no
pyplot state, GUI backend or display is involved and plots can be made from any thread.
Inputs are the ``metrics`` dicts of ``results.json`` (docs/results-format.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["confusion_png", "curves_png", "per_class_f1_png"]

_DPI = 100
_GRID_MAX_CLASSES = 24  # more classes than this: FP/FN bars instead of 2x2 small multiples
_ANNOTATE_MAX = 20  # single-label matrices bigger than this are not annotated with counts


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _class_order(metrics: Sequence[dict[str, Any]]) -> list[str]:
    """Labels in the first run's order, then any label only later runs know."""
    seen: dict[str, None] = {}
    for m in metrics:
        for name in list(m.get("labels") or []) + list(m.get("per_class") or {}):
            seen.setdefault(name, None)
    return list(seen)


def per_class_f1_png(names: Sequence[str], metrics: Sequence[dict[str, Any]]) -> bytes | None:
    """Grouped bars: one group per class, one bar per run. None when no run has per-class F1."""
    labels = [
        c for c in _class_order(metrics) if any(c in (m.get("per_class") or {}) for m in metrics)
    ]
    if not labels:
        return None
    n_runs = len(names)
    width = 0.8 / n_runs
    x = np.arange(len(labels))
    fig = Figure(figsize=(min(20.0, max(6.0, 0.35 * len(labels) * (n_runs + 1))), 3.8))
    ax = fig.add_subplot()
    for k, (name, m) in enumerate(zip(names, metrics, strict=True)):
        per_class = m.get("per_class") or {}
        f1 = [_num((per_class.get(c) or {}).get("f1")) for c in labels]  # NaN: no bar
        ax.bar(x - 0.4 + width * (k + 0.5), f1, width, label=name)
    ax.set_xticks(
        x,
        labels,
        rotation=30 if len(labels) > 6 else 0,
        ha="right" if len(labels) > 6 else "center",
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        fontsize="small",
        ncols=min(n_runs, 4),
        loc="upper left",
        bbox_to_anchor=(0, 1.18),
        frameon=False,
    )
    return _png(fig)


def confusion_png(name: str, confusion: dict[str, Any] | None) -> bytes | None:
    """The run's confusion plot, or None when its metrics have no (known) confusion."""
    if not confusion:
        return None
    if confusion.get("type") == "multilabel" and confusion.get("per_class"):
        per_class = {k: np.asarray(v, dtype=float) for k, v in confusion["per_class"].items()}
        if len(per_class) <= _GRID_MAX_CLASSES:
            return _multilabel_grid(name, per_class)
        return _multilabel_bars(name, per_class)
    if confusion.get("type") == "matrix" and confusion.get("matrix"):
        return _matrix(
            name, list(confusion.get("labels") or []), np.asarray(confusion["matrix"], float)
        )
    return None


def _multilabel_grid(name: str, per_class: dict[str, np.ndarray]) -> bytes:
    """One small [[tn, fp], [fn, tp]] matrix per class, counts written in the cells."""
    n = len(per_class)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.1 * cols, 2.0 * rows + 0.4))
    fig.suptitle(f"{name}: per-class confusion (rows true, cols predicted)", fontsize="medium")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (label, cm) in zip(axes.flat, per_class.items(), strict=False):
        ax.imshow(cm / max(cm.sum(), 1.0), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(cm):
            dark = v / max(cm.sum(), 1.0) > 0.5
            ax.text(j, i, f"{int(v)}", ha="center", va="center", color="white" if dark else "black")
        ax.set_title(label, fontsize="small")
        ax.set_xticks([0, 1], ["no", "yes"], fontsize="x-small")
        ax.set_yticks([0, 1], ["no", "yes"], fontsize="x-small")
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    return _png(fig)


def _multilabel_bars(name: str, per_class: dict[str, np.ndarray]) -> bytes:
    """Many classes: horizontal false-alarm / miss bars per class (tn would dwarf the rest)."""
    labels = list(per_class)
    fp = [per_class[c][0, 1] for c in labels]
    fn = [per_class[c][1, 0] for c in labels]
    y = np.arange(len(labels))
    fig = Figure(figsize=(7.0, max(3.0, 0.22 * len(labels))))
    ax = fig.add_subplot()
    ax.barh(y - 0.2, fp, 0.4, label="false alarms (FP)", color="#d95f02")
    ax.barh(y + 0.2, fn, 0.4, label="misses (FN)", color="#7570b3")
    ax.set_yticks(y, labels, fontsize="x-small")
    ax.invert_yaxis()
    ax.set_title(f"{name}: errors per class", fontsize="medium")
    ax.legend(fontsize="small")
    return _png(fig)


def _matrix(name: str, labels: list[str], matrix: np.ndarray) -> bytes:
    """Single-label heatmap, rows = true, cols = predicted (incl. "(failed)"), row-normalised."""
    n_rows, n_cols = matrix.shape
    cols = labels[:n_cols] if len(labels) >= n_cols else [str(i) for i in range(n_cols)]
    rows = cols[:n_rows]
    if n_rows == n_cols and rows and rows[-1] == "(failed)" and not matrix[-1].any():
        matrix, rows = matrix[:-1], rows[:-1]  # nothing is truly "(failed)": drop the empty row
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    side = 0.45 * max(len(cols), 4)
    fig = Figure(figsize=(side + 2.0, 0.45 * max(len(rows), 4) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if max(matrix.shape) <= _ANNOTATE_MAX:
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(
                    j,
                    i,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize="small")
    ax.set_yticks(range(len(rows)), rows, fontsize="small")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{name}: confusion (row-normalised colour, counts)", fontsize="medium")
    return _png(fig)


def curves_png(levels: Sequence[str], series: dict[str, list[tuple[str, dict[str, Any]]]]) -> bytes:
    """Macro-F1 against the perturbation level, one line per strategy, with the bootstrap
    95% intervals of its metrics (``series``: strategy -> [(level, metrics)])."""
    fig = Figure(figsize=(max(5.0, 1.3 * len(levels)), 3.6))
    ax = fig.add_subplot()
    for strategy, points in series.items():
        by_level = dict(points)
        xs = [i for i, level in enumerate(levels) if level in by_level]
        ys = [_num(by_level[levels[i]].get("macro_f1")) for i in xs]
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
    return _png(fig)
