"""The report's event table: per strategy, event F1 at each tIoU and mAP (``metrics.events``
of results.json, vara/events.py); None when no run has event metrics (trimmed clips)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vara.eval.report_html import Table

__all__ = ["events_table"]

_COLUMNS = ("strategy", "true events", "predicted", "F1@0.3", "F1@0.5", "F1@0.7", "mAP")


def events_table(names: Sequence[str], metrics: Sequence[Mapping[str, Any]]) -> Table | None:
    """One row per run with ``metrics["events"]`` (macro values); the best value per score
    column is marked (all are higher-is-better)."""
    rows, values = [], []
    for name, m in zip(names, metrics, strict=True):
        macro = (m.get("events") or {}).get("macro")
        if macro is None:
            continue
        scores = [macro["f1"].get(t) for t in ("0.30", "0.50", "0.70")] + [macro.get("mAP")]
        values.append(scores)
        cells = ["–" if v is None else f"{v:.3f}" for v in scores]
        rows.append((name, str(macro["n_truth"]), str(macro["n_predicted"]), *cells))
    if not rows:
        return None
    best = set()
    for j in range(4):
        column = [v[j] for v in values]
        top = max((v for v in column if v is not None), default=None)
        best |= {(i, 3 + j) for i, v in enumerate(column) if top is not None and v == top}
    return Table(_COLUMNS, tuple(rows), frozenset(best), frozenset(range(1, 7)))
