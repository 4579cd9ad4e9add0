"""Timeline smoothing: hysteresis on window scores, merging short gaps, dropping short events.

A timeline straight from window labels flickers: one window below threshold splits an
event, one stray window makes an event of its own. Annotators smooth, so vara offers the
three usual steps, applied in this order (``vara.timeline.run_timeline``):

1. **hysteresis** ``(enter, exit)``, on the window sequence, per label: a label turns on at a
   window whose score is >= ``enter`` and stays on while the score is >= ``exit``
   (``exit <= enter``). A window without a score for the label (the strategy yields none,
   or not for this label) keeps its own decision (the label is on where the window has it);
   a failed window turns every label off, as it ends every event unsmoothed.
2. **merge gaps**: two events of one label whose gap (next start minus previous end) is
   shorter than ``merge_gap_s`` become one (a gap of exactly ``merge_gap_s`` stays a gap).
3. **minimum duration**: events shorter than ``min_event_s`` are dropped (one of exactly
   ``min_event_s`` stays).

The defaults do nothing, so a timeline is as the windows say unless asked otherwise. The
settings are recorded beside the timelines they made (timeline.json ``smoothing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from vara.types import ClassScores, TimelineEvent

__all__ = ["Smoothing", "drop_short", "hysteresis", "merge_gaps", "parse_hysteresis"]

# Times are sums of float window bounds: a gap or a length "exactly" at a threshold may be
# off by an ulp either way, so comparisons allow a nanosecond.
_EPS = 1e-9


class _Window(Protocol):
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    scores: ClassScores | None


@dataclass(frozen=True)
class Smoothing:
    """How a timeline is smoothed (module docstring); the defaults leave it as it is."""

    min_event_s: float = 0.0  # drop events shorter than this (s)
    merge_gap_s: float = 0.0  # merge events of one label whose gap is shorter than this (s)
    hysteresis: tuple[float, float] | None = None  # (enter, exit) score thresholds

    def __post_init__(self) -> None:
        if self.min_event_s < 0 or self.merge_gap_s < 0:
            raise ValueError(
                f"min_event_s and merge_gap_s must be >= 0 s, got {self.min_event_s} and "
                f"{self.merge_gap_s} (0 turns the step off)"
            )
        if self.hysteresis is not None:
            enter, exit_ = (float(x) for x in self.hysteresis)
            if not 0.0 <= exit_ <= enter <= 1.0:
                raise ValueError(
                    f"hysteresis (enter, exit) = ({enter}, {exit_}): need 0 <= exit <= enter "
                    "<= 1, e.g. 0.6,0.4 (a label turns on at 0.6 and off below 0.4)"
                )
            object.__setattr__(self, "hysteresis", (enter, exit_))

    @property
    def is_identity(self) -> bool:
        return not self.min_event_s and not self.merge_gap_s and self.hysteresis is None

    def to_dict(self) -> dict[str, Any]:
        h = self.hysteresis
        return {
            "min_event_s": self.min_event_s,
            "merge_gap_s": self.merge_gap_s,
            "hysteresis": None if h is None else {"enter": h[0], "exit": h[1]},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Smoothing:
        d = d or {}
        h = d.get("hysteresis")
        if isinstance(h, dict):
            h = (h["enter"], h["exit"])
        return cls(
            min_event_s=float(d.get("min_event_s") or 0.0),
            merge_gap_s=float(d.get("merge_gap_s") or 0.0),
            hysteresis=None if h is None else tuple(h),
        )


def parse_hysteresis(text: str) -> tuple[float, float]:
    """``"ENTER,EXIT"`` (e.g. ``0.6,0.4``) as floats; ValueError naming the form otherwise."""
    parts = text.split(",")
    try:
        enter, exit_ = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"hysteresis {text!r}: expected ENTER,EXIT scores, e.g. 0.6,0.4") from None
    return enter, exit_


def _score(w: _Window, label: str) -> float | None:
    if w.scores is None or label not in w.scores.labels:
        return None
    return w.scores.probs[w.scores.labels.index(label)]


def hysteresis(
    sequence: Sequence[_Window | None], enter: float, exit: float
) -> list[_Window | None]:
    """The window sequence with each window's labels decided by hysteresis on its scores
    (module docstring); failed windows (None) stay None and reset every label."""
    on: set[str] = set()
    out: list[_Window | None] = []
    for w in sequence:
        if w is None:
            on.clear()
            out.append(None)
            continue
        names = list(w.scores.labels) if w.scores is not None else []
        names += [lab for lab in w.labels if lab not in names]
        now = []
        for label in names:
            s = _score(w, label)
            if s is None:
                keep = label in w.labels
            else:
                keep = s >= (exit if label in on else enter)
            if keep:
                now.append(label)
        on = set(now)
        out.append(replace(w, labels=tuple(now)))
    return out


def _merged(a: TimelineEvent, b: TimelineEvent) -> TimelineEvent:
    """One event spanning both; its score the window-weighted mean of the scored ones."""
    scored = [(e.score, e.n_windows) for e in (a, b) if e.score is not None]
    n = sum(k for _, k in scored)
    return TimelineEvent(
        label=a.label,
        start_s=min(a.start_s, b.start_s),
        end_s=max(a.end_s, b.end_s),
        score=sum(s * k for s, k in scored) / n if n else None,
        n_windows=a.n_windows + b.n_windows,
    )


def merge_gaps(events: Sequence[TimelineEvent], gap_s: float) -> tuple[TimelineEvent, ...]:
    """Events of one label less than ``gap_s`` apart merged (``gap_s`` 0: unchanged)."""
    if gap_s <= 0:
        return tuple(events)
    by_label: dict[str, list[TimelineEvent]] = {}
    for e in sorted(events, key=lambda e: (e.start_s, e.end_s)):
        run = by_label.setdefault(e.label, [])
        if run and e.start_s - run[-1].end_s < gap_s - _EPS:
            run[-1] = _merged(run[-1], e)
        else:
            run.append(e)
    merged = [e for run in by_label.values() for e in run]
    return tuple(sorted(merged, key=lambda e: (e.start_s, e.label)))


def drop_short(events: Sequence[TimelineEvent], min_s: float) -> tuple[TimelineEvent, ...]:
    """The events at least ``min_s`` long (``min_s`` 0: unchanged)."""
    return tuple(e for e in events if e.end_s - e.start_s >= min_s - _EPS)
