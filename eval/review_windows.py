"""What the review page holds per window, and the truth it compares windows with.

``window_record`` turns one run's window (its Prediction or Failure, its frame strip, its
true labels) into the page's compact JSON record. ``Truth`` is the ground truth per window:
from ``--truth MANIFEST`` (read by ``tools.datasets.load_dataset`` with each run's own
window length and overlap, so a window's truth is what ``vara eval`` would score it against)
or from the clips.jsonl of ``vara eval`` dirs; a run's window takes the truth of the window
with its bounds, or of the one true clip that holds it (a manifest of trimmed clips); the
truth lane merges a label's true windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vara.eval.review_runs import ReviewRun, locate_video
from vara.types import Clip, LabelSet

__all__ = ["RAW_CHARS", "Truth", "truth_windows", "window_record"]

RAW_CHARS = 2000  # of a raw answer kept on the page (the run dir has all of it)
_Key = tuple[str, float, float]


def _key(video: Path, clip: Clip) -> _Key:
    return (str(video), round(clip.start_s, 2), round(clip.end_s, 2))


@dataclass(frozen=True)
class Truth:
    """True labels by (video, start, end) rounded to the clip id's 0.01 s."""

    windows: dict[_Key, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.windows)

    @classmethod
    def load(cls, manifest: str | Path, labelset: LabelSet, runs: Sequence[ReviewRun]) -> Truth:
        """``manifest`` windowed as each run windows (the default 2 s / 0.5 when unrecorded)."""
        from vara.tools.datasets import load_dataset

        windows: dict[_Key, tuple[str, ...]] = {}
        for spec in dict.fromkeys(r.windowing or (2.0, 0.5) for r in runs):
            ds = load_dataset(manifest, labelset, window_s=spec[0], overlap=spec[1])
            for clip in ds.clips:
                windows.setdefault(_key(Path(clip.video).resolve(), clip), clip.labels or ())
        return cls(windows)

    @classmethod
    def from_runs(cls, runs: Sequence[ReviewRun]) -> Truth:
        windows: dict[_Key, tuple[str, ...]] = {}
        for run in runs:
            for clip in run.windows:
                if clip.clip_id in run.truth:
                    windows[_key(locate_video(clip.video, run), clip)] = run.truth[clip.clip_id]
        return cls(windows)

    def of_window(self, video: Path, clip: Clip) -> tuple[str, ...] | None:
        """The true labels of a run's window: the truth's window with the same bounds, else
        the one true clip of the video that holds it (a clip manifest of trimmed videos: each
        video one labelled clip, the run's windows inside it); None when neither is known."""
        exact = self.windows.get(_key(video, clip))
        if exact is not None:
            return exact
        a, b, where = round(clip.start_s, 2), round(clip.end_s, 2), str(video)
        holding = [v for (p, s, e), v in self.windows.items() if p == where and s <= a and b <= e]
        return holding[0] if len(holding) == 1 else None

    def lane(self, video: Path, labels: Sequence[str]) -> dict[str, list[list[float]]] | None:
        """Per label, its true windows of ``video`` merged where they overlap or touch; None
        when the truth does not cover the video (no lane rather than an empty one)."""
        mine = sorted((k[1], k[2], v) for k, v in self.windows.items() if k[0] == str(video))
        if not mine:
            return None
        lane: dict[str, list[list[float]]] = {label: [] for label in labels}
        for start, end, true in mine:
            for label in true:
                spans = lane.setdefault(label, [])
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
        return lane


def truth_windows(
    truth: Truth | None, run: ReviewRun, video: Path, clips: Sequence[Clip]
) -> dict[str, tuple[str, ...]]:
    """clip_id -> true labels, for the clips the truth knows."""
    if not truth:
        return {}
    got = {c.clip_id: truth.of_window(video, c) for c in clips}
    return {k: v for k, v in got.items() if v is not None}


def _num(x: float) -> float | None:
    """A score for the page's JSON: NaN and infinities (which JSON cannot hold) become null."""
    return round(x, 4) if math.isfinite(x) else None


def window_record(
    run: ReviewRun,
    clip: Clip,
    strip: tuple[str | None, tuple[float, ...], str] | None,
    truth: tuple[str, ...] | None,
) -> dict[str, Any]:
    """The page's record of one window of one run (keys kept short: 3,600 windows a run)."""
    rec: dict[str, Any] = {
        "id": clip.clip_id,
        "s": round(clip.start_s, 3),
        "e": round(clip.end_s, 3),
    }
    if strip is not None:
        rec["strip"], rec["times"], rec["note"] = strip
    if truth is not None:
        rec["truth"] = list(truth)
    pred = run.predictions.get(clip.clip_id)
    if pred is None:
        fail = run.failures.get(clip.clip_id)
        rec["status"] = "failed" if fail else "missing"
        if fail:
            rec["error"] = f"{fail.stage}: {fail.error}"
            rec["raw"] = fail.raw[:RAW_CHARS]
        return rec
    rec["status"] = "ok"
    rec["labels"] = list(pred.labels)
    if pred.scores is not None:
        sc = pred.scores
        rec["scores"] = [
            [lab, _num(p), _num(t)]
            for lab, p, t in zip(sc.labels, sc.probs, sc.thresholds, strict=True)
        ]
    rec["expl"] = pred.explanation
    rec["ev"] = [[e.source, e.ref, e.text, e.verified] for e in pred.evidence]
    rec["caps"] = [[c.text, [round(t, 3) for t in c.timestamps_s]] for c in pred.captions]
    rec["raw"] = pred.raw[:RAW_CHARS]
    rec["attempts"] = pred.attempts
    rec["models"] = ", ".join(f"{k}: {v}" for k, v in pred.models.items())
    return rec
