"""Event-level metrics: predicted events against true events, as detection papers score them.

An event is one segment [start_s, end_s) of one label in one video: the merged timelines of
``vara.timeline`` on both sides. ``event_metrics`` scores per class and macro:

- **precision / recall / F1 at tIoU t** (0.3, 0.5, 0.7): the ActivityNet/THUMOS matching.
  Predictions of a class, highest score first, each take the unmatched true event of the
  same class and video with the highest temporal IoU, if that IoU is >= t; a prediction that
  finds none is a false positive, a true event nobody took a false negative. Every
  prediction counts (no score threshold). ``zero_division=0`` as in ``vara.metrics``.
- **AP at tIoU t** for t in 0.50:0.05:0.95 and **mAP**, their mean: ActivityNet's
  ``compute_average_precision_detection`` (the same matching, then the all-points
  interpolated area under the precision-recall curve). The ranking score of a predicted event
  is its timeline score, the mean over its windows of that label's probability, where the
  strategy yields scores; else 1.0, so every prediction ties and AP is precision x recall
  at that threshold. Ties keep time order (video, start), which makes AP reproducible.

Averages (macro) run over the classes that have a true or a predicted event (as in
``vara.metrics``); a class without true events has no AP, so mAP averages the classes with
true events. ``events_from_windows`` turns an evaluated window set (clips with truth, and
predictions by clip id) into both timelines, merging windows exactly as a run's
timeline.json does; truth events are the merged truth windows, so an interval annotation
is seen at the resolution of its windows, as the predictions are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vara.smoothing import Smoothing
from vara.timeline import WindowLabels, run_timeline
from vara.types import Clip, Prediction, Timeline

__all__ = [
    "AP_TIOUS",
    "F1_TIOUS",
    "ClassEvents",
    "EventMetrics",
    "event_metrics",
    "events_from_windows",
    "tiou",
]

F1_TIOUS = (0.3, 0.5, 0.7)
AP_TIOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ... 0.95
_GAP = "\x00gap"  # a window id no prediction has: ends every event (see _window_ids)


@dataclass(frozen=True)
class _Event:
    video: str
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class ClassEvents:
    """One class's scores (or the macro average, ``label="macro"``); tuples follow
    ``F1_TIOUS`` (precision, recall, f1) and ``AP_TIOUS`` (ap); ``ap`` is () and ``map``
    None for a class without true events."""

    label: str
    n_truth: int
    n_predicted: int
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    ap: tuple[float, ...]
    map: float | None

    def to_dict(self) -> dict[str, object]:
        def at(values: Sequence[float], tious: Sequence[float]) -> dict[str, float]:
            return {f"{t:.2f}": round(v, 6) for t, v in zip(tious, values, strict=True)}

        return {
            "n_truth": self.n_truth,
            "n_predicted": self.n_predicted,
            "precision": at(self.precision, F1_TIOUS),
            "recall": at(self.recall, F1_TIOUS),
            "f1": at(self.f1, F1_TIOUS),
            "ap": at(self.ap, AP_TIOUS) if self.ap else {},
            "mAP": None if self.map is None else round(self.map, 6),
        }


@dataclass(frozen=True)
class EventMetrics:
    per_class: tuple[ClassEvents, ...]
    macro: ClassEvents

    def to_dict(self) -> dict[str, object]:
        """The ``metrics.events`` block of results.json (docs/results-format.md)."""
        return {
            "f1_tious": list(F1_TIOUS),
            "ap_tious": list(AP_TIOUS),
            "macro": self.macro.to_dict(),
            "per_class": {c.label: c.to_dict() for c in self.per_class},
            "higher_is_better": {"f1": True, "precision": True, "recall": True, "mAP": True},
        }


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Temporal IoU of two [start, end) segments: overlap / union; 0 when they are apart."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _ious(preds: Sequence[_Event], truths: Sequence[_Event]) -> np.ndarray:
    """tIoU of every prediction (rows) with every true event (columns); -1 across videos."""
    if not preds or not truths:
        return np.full((len(preds), len(truths)), -1.0)
    p = np.array([(e.start_s, e.end_s) for e in preds], dtype=float)[:, None, :]
    g = np.array([(e.start_s, e.end_s) for e in truths], dtype=float)[None, :, :]
    inter = np.clip(np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]), 0, None)
    union = np.maximum(p[..., 1], g[..., 1]) - np.minimum(p[..., 0], g[..., 0])
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    same = np.array([e.video for e in preds])[:, None] == np.array([e.video for e in truths])
    return np.where(same, iou, -1.0)


def _match(ious: np.ndarray, t: float) -> list[bool]:
    """Per prediction (rows of ``ious``, ranked): did it take a true event at tIoU >= t; each
    takes the free one with the highest tIoU (the first of equals)."""
    free = np.ones(ious.shape[1], dtype=bool)
    hits = []
    for row in ious:
        candidates = np.where(free, row, -1.0)
        j = int(np.argmax(candidates)) if len(candidates) else -1
        hit = j >= 0 and candidates[j] >= t
        if hit:
            free[j] = False
        hits.append(bool(hit))
    return hits


def _ap(hits: Sequence[bool], n_truth: int) -> float:
    """ActivityNet's all-points interpolated AP of ranked hits against ``n_truth`` events."""
    if not hits:
        return 0.0
    tp = np.cumsum(hits, dtype=float)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_truth
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _prf(tp: int, n_pred: int, n_truth: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_truth if n_truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _class_scores(label: str, preds: list[_Event], truths: list[_Event]) -> ClassEvents:
    preds = sorted(preds, key=lambda e: (-e.score, e.video, e.start_s))
    ious = _ious(preds, truths)
    prf = [_prf(sum(_match(ious, t)), len(preds), len(truths)) for t in F1_TIOUS]
    ap = tuple(_ap(_match(ious, t), len(truths)) for t in AP_TIOUS) if truths else ()
    return ClassEvents(
        label=label,
        n_truth=len(truths),
        n_predicted=len(preds),
        precision=tuple(x[0] for x in prf),
        recall=tuple(x[1] for x in prf),
        f1=tuple(x[2] for x in prf),
        ap=ap,
        map=sum(ap) / len(ap) if ap else None,
    )


def _by_label(timelines: Sequence[Timeline]) -> dict[str, list[_Event]]:
    out: dict[str, list[_Event]] = {}
    for tl in timelines:
        for e in tl.events:
            score = 1.0 if e.score is None else e.score
            out.setdefault(e.label, []).append(_Event(tl.video, e.start_s, e.end_s, score))
    return out


def _mean(rows: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(float(x) for x in np.mean(rows, axis=0)) if rows else ()


def event_metrics(
    truth: Sequence[Timeline], predicted: Sequence[Timeline], labels: Sequence[str]
) -> EventMetrics:
    """Per class of ``labels`` (in that order) and macro; see the module docstring. An event
    whose label is not in ``labels`` is an error in the caller: it raises ValueError."""
    gt, pr = _by_label(truth), _by_label(predicted)
    unknown = sorted((set(gt) | set(pr)) - set(labels))
    if unknown:
        raise ValueError(f"events with labels {unknown} outside the label set {list(labels)}")
    per_class = tuple(_class_scores(n, pr.get(n, []), gt.get(n, [])) for n in labels)
    seen = [c for c in per_class if c.n_truth or c.n_predicted]
    with_ap = [c for c in seen if c.ap]
    macro = ClassEvents(
        label="macro",
        n_truth=sum(c.n_truth for c in per_class),
        n_predicted=sum(c.n_predicted for c in per_class),
        precision=_mean([c.precision for c in seen]) or (0.0,) * len(F1_TIOUS),
        recall=_mean([c.recall for c in seen]) or (0.0,) * len(F1_TIOUS),
        f1=_mean([c.f1 for c in seen]) or (0.0,) * len(F1_TIOUS),
        ap=_mean([c.ap for c in with_ap]),
        map=sum(c.map for c in with_ap if c.map is not None) / len(with_ap) if with_ap else None,
    )
    return EventMetrics(per_class=per_class, macro=macro)


def _window_ids(clips: Sequence[Clip]) -> list[str]:
    """A video's clip ids in time order, with a gap marker where one window neither overlaps
    nor touches the next (a clip manifest may list windows apart): no event spans a gap."""
    ids: list[str] = []
    for i, clip in enumerate(clips):
        if i and clip.start_s > clips[i - 1].end_s:
            ids.append(_GAP)
        ids.append(clip.clip_id)
    return ids


def events_from_windows(
    clips: Sequence[Clip],
    predictions: Mapping[str, Prediction],
    smoothing: Smoothing | None = None,
) -> tuple[list[Timeline], list[Timeline]] | None:
    """(truth, predicted) timelines of an evaluated set whose clips are windows of longer
    videos, merged as a run's timeline.json is; None when no video has two clips (trimmed
    clips: one event each, nothing to localise). A window without a prediction (it failed)
    ends every predicted event, as in the run's timeline. ``smoothing`` applies to the
    predicted side only (the truth is what the annotation says)."""
    by_video: dict[str, list[Clip]] = {}
    for c in clips:
        by_video.setdefault(c.video, []).append(c)
    if all(len(v) < 2 for v in by_video.values()):
        return None
    truth, predicted = [], []
    for video, mine in by_video.items():
        mine = sorted(mine, key=lambda c: c.start_s)
        ids, duration = _window_ids(mine), max(c.end_s for c in mine)
        windows = {c.clip_id: WindowLabels(c.start_s, c.end_s, c.labels or ()) for c in mine}
        truth.append(run_timeline(video, duration, ids, windows))
        predicted.append(run_timeline(video, duration, ids, predictions, smoothing))
    return truth, predicted
