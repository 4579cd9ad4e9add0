"""Windows and frame plans: which seconds of a video form a window, which frames sample it.

Pure arithmetic on ``VideoInfo`` (no decoding, no OpenCV): a window is ``[start_s, end_s)``
in presentation time, frame i belongs to it when ``start_s <= t_i < end_s``. In constant-frame-
rate video ``t_i = i / fps``; in variable-frame-rate video (phones) and GIF ``t_i`` is the
frame's real time, ``info.frame_times_s[i]``, which the probe collected. ``tools.video``
decodes what ``plan_frames`` picks.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path

from vara.errors import InputError, VideoError
from vara.types import Clip, SamplerSpec, VideoInfo

__all__ = ["frame_at", "frame_time", "make_windows", "plan_frames"]

_TOL_S = 1e-6  # seconds: float error in window edges (k * step) vs frame times


def make_windows(
    info: VideoInfo, window_s: float, overlap: float, *, video_key: str | None = None
) -> list[Clip]:
    """Windows of ``window_s`` seconds from 0, stepping ``window_s * (1 - overlap)``.

    A video shorter than one window gives one window over all of it; frames the regular
    windows miss (a frame at i / fps >= the last window's end) get one last window ending at
    the video's end, which overlaps its neighbour more. A sliver shorter than one frame
    (e.g. 300 frames at 29.97 fps = 10.01 s) gets no window of its own.
    Clip ids are ``f"{key}:{start_s:.2f}-{end_s:.2f}"``, key = file name.
    """
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise InputError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if not (isinstance(overlap, (int, float)) and 0 <= overlap < 1):
        raise InputError(f"overlap must be in [0, 1) (0.5 = half-overlapping), got {overlap!r}")
    key = video_key if video_key is not None else Path(info.path).name
    duration = info.duration_s
    if duration <= 0:
        raise VideoError(f"video {info.path!r} has duration {duration} s; nothing to window")
    step = window_s * (1 - overlap)
    eps = 1e-9 * max(1.0, duration)
    if window_s >= duration - eps:
        spans = [(0.0, duration)]
    else:
        # Starts as k * step (not a running sum) so float error does not accumulate.
        n_regular = int(math.floor((duration - window_s + eps) / step)) + 1
        spans = [(k * step, k * step + window_s) for k in range(n_regular)]
        # The last frame starts at duration - 1/fps (CFR); it is missed when that is >= the end.
        times = info.frame_times_s
        last_start = duration - 1 / info.fps if times is None else times[-1]
        if spans[-1][1] <= last_start + eps:
            spans.append((duration - window_s, duration))
    return [
        Clip(clip_id=f"{key}:{a:.2f}-{b:.2f}", video=info.path, start_s=a, end_s=b)
        for a, b in spans
    ]


def _n_frames(clip: Clip, spec: SamplerSpec) -> int:
    if spec.n_frames is not None:
        return spec.n_frames
    return min(spec.max_frames, max(spec.min_frames, round(clip.duration_s * spec.fps)))


def frame_time(info: VideoInfo, idx: int) -> float:
    """Presentation time (s) of frame ``idx``: ``idx / fps``, or the probed time (VFR, GIF)."""
    return idx / info.fps if info.frame_times_s is None else info.frame_times_s[idx]


def frame_at(info: VideoInfo, t_s: float) -> int:
    """Index of the frame on screen at ``t_s``, or just before it (a lower bound for the first
    frame any clip starting at ``t_s`` samples)."""
    if info.frame_times_s is None:
        return math.floor(t_s * info.fps)
    return max(0, bisect_right(info.frame_times_s, t_s - _TOL_S) - 1)


def plan_frames(info: VideoInfo, clip: Clip, spec: SamplerSpec) -> tuple[int, ...]:
    """Frame indices to sample from ``clip``: sorted, inside the clip and the video.

    The clip's frames are those with ``start_s <= i / fps < end_s`` (clipped to the video);
    n of them are taken at the centres of n equal segments (n = ``spec.n_frames``, or
    ``spec.fps * duration`` bounded by min/max_frames). The result always has n entries, so
    batches have a fixed length: indices repeat only when the clip holds fewer than n
    frames. A clip shorter than one frame interval gets the frame on screen at start_s.
    Where frame times are irregular (``info.frame_times_s``) see ``_plan_by_time``.
    """
    fps, total = info.fps, info.frame_count
    if clip.start_s >= info.duration_s:
        raise VideoError(
            f"clip {clip.clip_id!r} starts at {clip.start_s:.2f} s, after the end of video "
            f"{info.path!r} ({info.duration_s:.2f} s); make windows from probe(video)"
        )
    if info.frame_times_s is not None:
        return _plan_by_time(info.frame_times_s, clip, _n_frames(clip, spec), info.duration_s)
    tol = 1e-6  # frames: absorbs float error in start_s * fps on exact frame boundaries
    first = min(math.ceil(clip.start_s * fps - tol), total - 1)
    last = min(math.ceil(clip.end_s * fps - tol) - 1, total - 1)
    if last < first:
        first = last = min(math.floor(clip.start_s * fps + tol), total - 1)
    m, n = last - first + 1, _n_frames(clip, spec)
    # floor((j + 1/2) * m / n) in integers: exact, and distinct whenever m >= n.
    return tuple(first + (2 * j + 1) * m // (2 * n) for j in range(n))


def _plan_by_time(times: Sequence[float], clip: Clip, n: int, duration_s: float) -> tuple[int, ...]:
    """n frames of ``clip`` from irregularly timed frames, spread in time, not in index.

    The clip's frames are those with ``start_s <= times[i] < end_s``. With at least n of
    them, the j-th pick is the frame nearest the centre of the j-th of n equal time segments
    among those not yet picked that leave one frame for each pick after it: so the picks are
    distinct, in order and inside the clip, and a stretch filmed at a high rate gets no more
    picks than its share of the time. With fewer than n frames they repeat, spread as in CFR
    video; a clip holding no frame (a gap in the recording) gets the frame on screen at its
    start, the one frame sampled outside its clip.
    """
    first = bisect_left(times, clip.start_s - _TOL_S)
    last = bisect_left(times, clip.end_s - _TOL_S) - 1
    if last < first:
        first = last = max(0, bisect_right(times, clip.start_s + _TOL_S) - 1)
    m = last - first + 1
    if m <= n:
        return tuple(first + (2 * j + 1) * m // (2 * n) for j in range(n))
    start, step = clip.start_s, (min(clip.end_s, duration_s) - clip.start_s) / n
    picks: list[int] = []
    lo = first
    for j in range(n):
        target, hi = start + (j + 0.5) * step, last - (n - 1 - j)
        k = bisect_left(times, target, lo, hi + 1)  # first of lo..hi at or after target
        near = [c for c in (k - 1, k) if lo <= c <= hi]
        pick = min(near, key=lambda c: abs(times[c] - target))
        picks.append(pick)
        lo = pick + 1
    return tuple(picks)
