"""The windowing rule: which labels a window of annotated video gets.

Interval annotations (``video,label,start_s,end_s``) are cut into windows (``make_windows``);
each label's intervals are merged first, so time annotated twice counts once.

- Multi-label sets (the newborn-resuscitation protocol): a label is positive when its
  annotated time covers MORE than ``min_overlap`` of the window (2-s windows: more than 1 s).
- Single-label sets: the window takes the label covering the most of it, provided the
  annotations together cover more than ``min_overlap`` of it (otherwise it has none, and the
  loader says which stretch is not annotated). A tie goes to the label whose annotated time
  in the window starts later: with whole-second annotations ``tai chi 0-150, yoga 150-300``
  the window 149-151 is half each, and takes ``yoga``, the activity that begins in it (an
  annotator marks onsets). Ties are counted (``Dataset.n_tied``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["SingleLabel", "merge_spans", "single_window_label", "window_labels"]

_TIME_EPS_S = 1e-6  # keeps float error in window bounds from deciding a comparison

Spans = Mapping[str, Sequence[tuple[float, float]]]


def merge_spans(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _covered(start_s: float, end_s: float, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, end_s) - max(a, start_s)) for a, b in merge_spans(spans))


def window_labels(
    start_s: float, end_s: float, intervals: Spans, min_overlap: float = 0.5
) -> tuple[str, ...]:
    """Labels (in ``intervals`` order) covering MORE than ``min_overlap`` of [start_s, end_s)."""
    need = min_overlap * (end_s - start_s) + _TIME_EPS_S
    return tuple(
        label for label, spans in intervals.items() if _covered(start_s, end_s, spans) > need
    )


@dataclass(frozen=True)
class SingleLabel:
    """A single-label window's label (None: not enough of it is annotated), the labels tied
    for the most coverage (more than one: the rule broke a tie) and the annotated time."""

    label: str | None
    tied: tuple[str, ...]
    annotated_s: float


def single_window_label(
    start_s: float, end_s: float, intervals: Spans, min_overlap: float = 0.5
) -> SingleLabel:
    """The label of a window in a single-label set (see the module docstring)."""
    every = [span for spans in intervals.values() for span in spans]
    annotated = _covered(start_s, end_s, every)
    cover = {label: _covered(start_s, end_s, spans) for label, spans in intervals.items()}
    best = max(cover.values(), default=0.0)
    if annotated <= min_overlap * (end_s - start_s) + _TIME_EPS_S or best <= 0:
        return SingleLabel(None, (), annotated)
    tied = tuple(label for label, c in cover.items() if c >= best - _TIME_EPS_S)
    label = max(tied, key=lambda lab: _onset(start_s, end_s, intervals[lab]))
    return SingleLabel(label, tied, annotated)


def _onset(start_s: float, end_s: float, spans: Sequence[tuple[float, float]]) -> float:
    """Where a label's annotated time inside the window starts."""
    return min(max(a, start_s) for a, b in merge_spans(spans) if min(b, end_s) > max(a, start_s))
