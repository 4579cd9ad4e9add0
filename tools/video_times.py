"""Frame times of variable-frame-rate (VFR) video for ``tools.video``: the table the probe
keeps (``VideoInfo.frame_times_s``) and seeking by time with it.

Part of ``tools.video``'s OpenCV dialect, in its own module; only ``tools.video`` calls it.

OpenCV seeks a VFR file by time: asked for time T, it jumps to the keyframe at or before
T - 16 / fps (fps: the container's average rate) and grabs forward as many frames as a CFR
file would hold up to T. So it lands on the wanted frame only by chance: in a stretch filmed
above the average rate it stops early (harmless: the reader grabs on), below it it overshoots,
by more the further back the keyframe lies. ``seek_by_time`` therefore asks early enough that
no keyframe within ``BACK`` frames can carry it past the frame, names the frame it landed on
by its time in the table (every decode reports the same time for a frame: same pts, same
arithmetic), and, should it still overshoot, asks again further back.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["BACK", "SAME_TIME_S", "duration_s", "relative_times", "seek_by_time"]

BACK = 250  # frames: keyframes up to this far before a frame are expected (GOPs <= ~250)
SEEK_TRIES = 6  # time seeks before giving up (the reader then decodes from frame 0)
SAME_TIME_S = 1e-6  # a decoded frame's time equals its table entry; pts differ by >= 11 us

log = logging.getLogger(__name__)


def relative_times(
    name: str, times: Sequence[float], fps: float, gif: bool
) -> tuple[float, ...] | None:
    """Frame times from the first frame's (``VideoInfo.frame_times_s``), or None where they
    do not increase (broken timestamps): windows then count frame index / fps, with a warning."""
    rel = tuple(t - times[0] for t in times)
    if all(b > a for a, b in zip(rel, rel[1:], strict=False)):
        if not gif:
            log.info("video %r has a variable frame rate: windows follow its frame times", name)
        return rel
    drift_s = max(abs(t - k / fps) for k, t in enumerate(rel))
    if not gif and drift_s > 0.25:  # an eighth of a 2-s window
        _warn_nominal(name, fps, drift_s)
    return None


def duration_s(times: Sequence[float], fps: float) -> float:
    """Until the last frame's time plus a typical frame interval (the median one)."""
    gaps = np.diff(times)
    return float(times[-1] + (np.median(gaps) if len(gaps) else 1 / fps))


def seek_by_time(
    cap: cv2.VideoCapture, times: Sequence[float], t0_s: float, fps: float, idx: int
) -> tuple[int | None, int]:
    """Seek ``cap`` to a frame at or before frame ``idx`` and grab it: (its index, or None
    where no seek landed on a known frame at or before ``idx``; seeks made).

    ``times``: the probe's table (relative to ``t0_s``, the first frame's time as OpenCV
    reports it); ``fps``: the container's average rate, which OpenCV counts with."""
    # From a keyframe at frame j, OpenCV stops at or before idx when asked for <= f(j).
    ask = min(times[j] + (idx - j) / fps for j in range(max(0, idx - BACK), idx + 1)) - 1 / fps
    end_s = duration_s(times, fps)
    for tries in range(1, SEEK_TRIES + 1):
        cap.set(cv2.CAP_PROP_POS_MSEC, (t0_s + max(0.0, ask)) * 1000)
        if cap.grab():
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 - t0_s
            k = bisect.bisect_left(times, t - SAME_TIME_S)
            if k >= len(times) or abs(times[k] - t) > SAME_TIME_S:
                return None, tries  # not a frame the probe saw: do not guess
            if k <= idx:
                return k, tries
            over = times[k] - times[idx]
        else:  # ran past the last frame
            over = end_s - times[idx]
        if ask <= 0:
            break
        ask -= 2 * max(over, 1.0)  # twice the overshoot further back
    return None, SEEK_TRIES


def _warn_nominal(name: str, fps: float, drift_s: float) -> None:
    """Windows fall back to frame-index time: say how far that is from real time here."""
    stem = Path(name).stem or "video"
    log.warning(
        "video %r has frame times that do not increase: windows and timelines count time as "
        "frame index / %.3g fps, up to %.1f s away from the real time of a frame here; for "
        "real-time windows re-encode at a constant rate, e.g. ffmpeg -i %s -fps_mode cfr "
        "-r %.0f %s_cfr.mp4",
        name,
        fps,
        drift_s,
        name,
        fps,
        stem,
    )
