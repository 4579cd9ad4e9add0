"""Windows and frame plans: which seconds of a video form a window, which frames sample it.

Pure arithmetic on ``VideoInfo`` (no decoding, no OpenCV): a window is ``[start_s, end_s)``
in nominal frame time (index / fps), frame i belongs to it when ``start_s <= i / fps < end_s``.
``tools.video`` decodes what ``plan_frames`` picks.
"""

from __future__ import annotations

import math
from pathlib import Path

from vara.errors import InputError, VideoError
from vara.types import Clip, SamplerSpec, VideoInfo

__all__ = ["make_windows", "plan_frames"]


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
        # The last frame starts at duration - 1/fps; it is missed when that is >= the end.
        if spans[-1][1] <= duration - 1 / info.fps + eps:
            spans.append((duration - window_s, duration))
    return [
        Clip(clip_id=f"{key}:{a:.2f}-{b:.2f}", video=info.path, start_s=a, end_s=b)
        for a, b in spans
    ]


def _n_frames(clip: Clip, spec: SamplerSpec) -> int:
    if spec.n_frames is not None:
        return spec.n_frames
    return min(spec.max_frames, max(spec.min_frames, round(clip.duration_s * spec.fps)))


def plan_frames(info: VideoInfo, clip: Clip, spec: SamplerSpec) -> tuple[int, ...]:
    """Frame indices to sample from ``clip``: sorted, inside the clip and the video.

    The clip's frames are those with ``start_s <= i / fps < end_s`` (clipped to the video);
    n of them are taken at the centres of n equal segments (n = ``spec.n_frames``, or
    ``spec.fps * duration`` bounded by min/max_frames). The result always has n entries, so
    batches have a fixed length: indices repeat only when the clip holds fewer than n
    frames. A clip shorter than one frame interval gets the frame on screen at start_s.
    """
    fps, total = info.fps, info.frame_count
    if clip.start_s >= info.duration_s:
        raise VideoError(
            f"clip {clip.clip_id!r} starts at {clip.start_s:.2f} s, after the end of video "
            f"{info.path!r} ({info.duration_s:.2f} s); make windows from probe(video)"
        )
    tol = 1e-6  # frames: absorbs float error in start_s * fps on exact frame boundaries
    first = min(math.ceil(clip.start_s * fps - tol), total - 1)
    last = min(math.ceil(clip.end_s * fps - tol) - 1, total - 1)
    if last < first:
        first = last = min(math.floor(clip.start_s * fps + tol), total - 1)
    m, n = last - first + 1, _n_frames(clip, spec)
    # floor((j + 1/2) * m / n) in integers: exact, and distinct whenever m >= n.
    return tuple(first + (2 * j + 1) * m // (2 * n) for j in range(n))
