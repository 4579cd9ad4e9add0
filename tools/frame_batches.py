"""Many clips of one video: their frame plans without decoding (``frame_plan``) and their
frames from one pass over the video (``iter_frame_batches``).

Part of ``tools.video``'s dialect, in its own module: it plans with ``tools.windows`` and
decodes through ``tools.video``'s probe and reader (``_inspect``, ``_Reader``), so the
decoding rules (seeking, VFR, damaged stretches) stay in one place; no OpenCV here. Clips
come sorted by start time and the decoder only moves forward: frames shared by overlapping
clips are decoded once and dropped after the last clip using them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vara.errors import InputError, VideoError
from vara.tools.video import _inspect, _Reader
from vara.tools.windows import frame_at, plan_frames
from vara.types import Clip, FrameBatch, FramePlan, PixelSpec, SamplerSpec

__all__ = ["frame_plan", "iter_frame_batches"]


def frame_plan(
    path: str | Path, clip: Clip, spec: SamplerSpec, pixels: PixelSpec | None = None
) -> FramePlan | None:
    """The frames ``clip`` samples and their times, without decoding any; None where only
    decoding tells the times (frame times that do not increase): ``iter_frame_batches``
    gives them there.

    The times are exactly what decoding the frames reports: ``i / fps`` for CFR video, the
    probe's table of frame times for VFR video and GIF.
    ``pixels`` (None: the sampler's resize) rides along for whoever decodes the plan.
    """
    src = _inspect(path)
    info = src.info
    if not src.exact_seek and info.frame_times_s is None:
        return None
    idx = plan_frames(info, clip, spec)
    table = info.frame_times_s
    times = tuple(i / info.fps for i in idx) if table is None else tuple(table[i] for i in idx)
    return FramePlan(clip, idx, times, spec, pixels)


def _check_order(prev: Clip | None, clip: Clip) -> None:
    if prev is not None and clip.start_s < prev.start_s:
        raise InputError(
            f"iter_frame_batches needs clips sorted by start_s; {clip.clip_id!r} "
            f"({clip.start_s:.2f} s) comes after {prev.clip_id!r} ({prev.start_s:.2f} s): "
            "sort them, e.g. sorted(clips, key=lambda c: c.start_s)"
        )


def iter_frame_batches(
    path: str | Path,
    clips: Iterable[Clip],
    spec: SamplerSpec,
    *,
    pixels: PixelSpec | None = None,
    on_error: Callable[[Clip, VideoError], None] | None = None,
) -> Iterator[FrameBatch]:
    """One FrameBatch per clip, in the given order, from one pass over the video, its frames
    through the pixel steps ``pixels`` (None: the sampler's resize only).

    Clips must be sorted by start_s (make_windows gives them so); a list is checked (order
    and plans) before decoding starts, any other iterable as it is consumed. Clips are
    planned just ahead of the decoder, frames shared by overlapping clips are decoded once
    and dropped after the last clip using them, so memory holds the frames of the clips
    being assembled, whatever the video's length. Batches before a damaged region are
    yielded before its VideoError is raised; with ``on_error``, a clip whose frames do not
    decode goes to ``on_error(clip, error)`` instead, and the clips after the damage follow.
    """
    src = _inspect(path)
    if isinstance(clips, Sequence):  # fail before a long decode, not in the middle of it
        for prev, clip in zip([None, *clips], clips, strict=False):
            _check_order(prev, clip)
            plan_frames(src.info, clip, spec)
    upcoming = iter(clips)
    pending: deque[tuple[Clip, tuple[int, ...]]] = deque()  # planned, not yet yielded
    refs: Counter[int] = Counter()  # how many pending clips want each frame
    cache: dict[int, tuple[np.ndarray, float]] = {}
    bad: dict[int, VideoError] = {}  # wanted frames that did not decode (with on_error)
    last: Clip | None = None  # the last clip planned
    done = -1  # every wanted frame <= done has been read

    def plan_next() -> bool:
        nonlocal last
        clip = next(upcoming, None)
        if clip is None:
            return False
        _check_order(last, clip)
        plan = plan_frames(src.info, clip, spec)
        pending.append((clip, plan))
        refs.update(set(plan))
        last = clip
        return True

    steps = pixels or PixelSpec.resize_only(spec.max_side)
    reader = _Reader(src, steps)
    try:
        while pending or plan_next():
            clip, plan = pending[0]
            # Before decoding up to this clip's last frame, plan every clip that may want a
            # frame in that range (starts are sorted): the decoder never comes back.
            while frame_at(src.info, last.start_s) - 1 <= plan[-1] and plan_next():
                pass
            pending.popleft()
            for i in sorted(i for i in refs if done < i <= plan[-1]):
                try:
                    cache[i] = reader.read(i)
                except VideoError as exc:
                    if on_error is None:
                        raise
                    bad[i] = exc
            done = max(done, plan[-1])
            error = next((bad[i] for i in plan if i in bad), None)
            if error is None:
                frames = np.stack([cache[i][0] for i in plan])
                times = tuple(cache[i][1] for i in plan)
            for i in set(plan):
                refs[i] -= 1
                if refs[i] == 0:
                    del refs[i]
                    cache.pop(i, None)
                    bad.pop(i, None)
            if error is not None:
                on_error(clip, error)
                continue
            yield FrameBatch(clip, frames, plan, times, spec, steps)
    finally:
        reader.close()
