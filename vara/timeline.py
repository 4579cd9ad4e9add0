"""Window predictions -> a per-video activity timeline.

Consecutive windows (in time order) that carry the same label merge into one event spanning
from the first window's start to the last window's end. Windows are consecutive when they
are neighbours in the video's window sequence, so one negative window splits an event even
though, with 50% overlap, its neighbours touch; so does a window that failed (no prediction).
A ``Smoothing`` (vara/smoothing.py) may then clean the events up; by default none does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vara.smoothing import Smoothing, drop_short, hysteresis, merge_gaps
from vara.types import ClassScores, Prediction, Timeline, TimelineEvent

__all__ = ["WindowLabels", "build_timeline", "run_timeline", "smoothed", "timeline_csv_rows"]


@dataclass(frozen=True)
class WindowLabels:
    """What a timeline needs of a prediction: a run's end reads these, not whole Predictions
    (captions, raw answers: ~10 KB each), so an hour-long batch fits in memory."""

    start_s: float
    end_s: float
    labels: tuple[str, ...]
    scores: ClassScores | None = None

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> WindowLabels:
        """From a predictions.jsonl record."""
        scores = r.get("scores")
        return cls(
            start_s=float(r["start_s"]),
            end_s=float(r["end_s"]),
            labels=tuple(r["labels"]),
            scores=ClassScores.from_dict(scores) if scores is not None else None,
        )


Window = Prediction | WindowLabels


def _score(p: Window, label: str) -> float | None:
    if p.scores is None or label not in p.scores.labels:
        return None
    return p.scores.probs[p.scores.labels.index(label)]


def build_timeline(video: str, duration_s: float, predictions: Iterable[Prediction]) -> Timeline:
    """The timeline of the predictions whose ``video`` is ``video``, each window neighbour to
    the next one predicted (use ``run_timeline`` when the window sequence is known)."""
    preds = sorted((p for p in predictions if p.video == video), key=lambda p: p.start_s)
    return Timeline(video=video, duration_s=duration_s, events=_events(preds))


def run_timeline(
    video: str,
    duration_s: float,
    windows: Sequence[str],
    predictions: Mapping[str, Window],
    smoothing: Smoothing | None = None,
) -> Timeline:
    """The timeline of a run's video: ``windows`` are its clip ids in time order and
    ``predictions`` a run's, by clip id (found wherever the video was read from). A window
    without a prediction (it failed) ends every event, as a negative window does.
    ``smoothing``, when given, is applied as vara/smoothing.py says."""
    sequence = [predictions.get(clip_id) for clip_id in windows]
    return Timeline(video=video, duration_s=duration_s, events=smoothed(sequence, smoothing))


def smoothed(
    sequence: Sequence[Window | None], smoothing: Smoothing | None
) -> tuple[TimelineEvent, ...]:
    """The events of a window sequence (None: a failed window), smoothed as asked."""
    s = smoothing or Smoothing()
    if s.hysteresis is not None:
        sequence = hysteresis(sequence, *s.hysteresis)
    return drop_short(merge_gaps(_events(sequence), s.merge_gap_s), s.min_event_s)


def _events(sequence: Sequence[Window | None]) -> tuple[TimelineEvent, ...]:
    events: list[TimelineEvent] = []
    open_: dict[str, list[Window]] = {}

    def close(label: str) -> None:
        run = open_.pop(label)
        scores = [s for s in (_score(p, label) for p in run) if s is not None]
        events.append(
            TimelineEvent(
                label=label,
                start_s=run[0].start_s,
                end_s=run[-1].end_s,
                score=sum(scores) / len(scores) if scores else None,
                n_windows=len(run),
            )
        )

    for p in sequence:
        labels = p.labels if p is not None else ()
        for label in [lab for lab in open_ if lab not in labels]:
            close(label)
        for label in labels:
            open_.setdefault(label, []).append(p)
    for label in list(open_):
        close(label)
    events.sort(key=lambda e: (e.start_s, e.label))
    return tuple(events)


def timeline_csv_rows(timelines: Iterable[Timeline]) -> list[list[object]]:
    rows: list[list[object]] = [["video", "label", "start_s", "end_s", "score", "n_windows"]]
    for tl in timelines:
        for e in tl.events:
            score = "" if e.score is None else f"{e.score:.4f}"
            rows.append(
                [tl.video, e.label, f"{e.start_s:.3f}", f"{e.end_s:.3f}", score, e.n_windows]
            )
    return rows
