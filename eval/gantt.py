"""A video's timeline as a Gantt chart PNG: one lane per label, and under each, where the
truth is known, a lane of its true events.

The geometry is fixed in pixels (``GanttGeometry``): 1200 px wide, a lane 28 px high, so
charts of one run line up and a test can find an event's bar. Drawn as eval/plots.py draws:
a ``matplotlib.figure.Figure`` on the Agg canvas, no pyplot state, no display.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vara.types import Timeline, TimelineEvent

__all__ = ["GanttGeometry", "gantt_lanes", "gantt_png", "lane_colour"]

_DPI = 100
_WIDTH, _LANE = 1200, 28  # px
_LEFT, _RIGHT, _TOP, _BOTTOM = 200, 20, 36, 44  # px: lane names, margin, title, time axis
# tab10: distinct hues for up to ten labels, then they repeat (a lane's name says which).
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def lane_colour(index: int) -> str:
    """The colour of the ``index``-th label's bars (``#rrggbb``)."""
    return _COLOURS[index % len(_COLOURS)]


@dataclass(frozen=True)
class GanttGeometry:
    """Where things are in a chart of ``n_lanes`` lanes over ``duration_s``, in pixels from
    the top-left corner."""

    duration_s: float
    n_lanes: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG."""
        return _WIDTH, _TOP + _LANE * max(1, self.n_lanes) + _BOTTOM

    @property
    def span_s(self) -> float:
        return self.duration_s if self.duration_s > 0 else 1.0

    def x(self, t_s: float) -> float:
        return _LEFT + (_WIDTH - _LEFT - _RIGHT) * t_s / self.span_s

    def y(self, lane: int) -> float:
        """The middle of lane ``lane`` (0 at the top)."""
        return _TOP + _LANE * (lane + 0.5)

    def axes_rect(self) -> tuple[float, float, float, float]:
        """[left, bottom, width, height] of the plot area as fractions of the figure."""
        w, h = self.size
        lanes_h = _LANE * max(1, self.n_lanes)
        return _LEFT / w, _BOTTOM / h, (w - _LEFT - _RIGHT) / w, lanes_h / h


def gantt_lanes(
    timeline: Timeline, labels: Sequence[str], truth: Sequence[TimelineEvent] | None
) -> list[tuple[str, str, list[TimelineEvent]]]:
    """(name, colour, events) per lane, top to bottom: each label (``labels`` in order, then
    any other label that occurs) and, when ``truth`` is given, its truth lane below it."""
    seen = [*labels]
    for e in [*timeline.events, *(truth or ())]:
        if e.label not in seen:
            seen.append(e.label)
    lanes = []
    for i, label in enumerate(seen):
        colour = lane_colour(i)
        lanes.append((label, colour, [e for e in timeline.events if e.label == label]))
        if truth is not None:
            lanes.append((f"{label} (truth)", colour, [e for e in truth if e.label == label]))
    return lanes


def gantt_png(
    timeline: Timeline,
    labels: Sequence[str] = (),
    truth: Sequence[TimelineEvent] | None = None,
    title: str = "",
    notes: Mapping[str, str] | None = None,
) -> bytes:
    """The chart of one video's timeline (module docstring): predicted bars solid, truth
    bars hatched in the label's colour; ``notes`` (e.g. the smoothing) join the title."""
    lanes = gantt_lanes(timeline, labels, truth)
    geo = GanttGeometry(timeline.duration_s, len(lanes))
    w, h = geo.size
    fig = Figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes(geo.axes_rect())
    ax.set_xlim(0, geo.span_s)
    ax.set_ylim(max(1, len(lanes)), 0)  # lane 0 at the top
    for k, (_, colour, events) in enumerate(lanes):
        spans = [(e.start_s, e.end_s - e.start_s) for e in events]
        truth_lane = truth is not None and k % 2 == 1
        solid = {"facecolor": colour, "edgecolor": "white", "linewidth": 1}  # events apart
        hatched = {"facecolor": "white", "edgecolor": colour, "hatch": "///"}
        style = hatched if truth_lane else solid
        ax.broken_barh(spans, (k + 0.15, 0.7), **style)
        if k:
            ax.axhline(k, color="#dddddd", linewidth=0.5)
    ax.set_yticks([k + 0.5 for k in range(len(lanes))], [name for name, _, _ in lanes])
    ax.tick_params(axis="y", length=0, labelsize=8)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    head = title or timeline.video
    extra = ", ".join(f"{k}: {v}" for k, v in (notes or {}).items())
    fig.suptitle(f"{head}  ({extra})" if extra else head, fontsize=9, y=1 - 8 / h, va="top")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)  # no bbox_inches: the size is the geometry's
    return buf.getvalue()
