"""What a run labels: video files from the command line, probed and cut into windows.

A video that cannot be probed becomes a ``Failure`` and the others go on; only when no input
exists at all is that a usage error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from vara.agents.rundir import VideoPlan
from vara.agents.video_keys import VideoKeys
from vara.config import WindowSpec
from vara.errors import VideoError
from vara.tools import video
from vara.tools.windows import make_windows
from vara.types import Clip, Failure

__all__ = ["VIDEO_SUFFIXES", "expand_inputs", "plan_videos", "window_videos"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files as given; directories -> their video files (recursive, sorted). A video named
    twice (also via a directory) is labelled once. A missing file among others is left for
    the run to list as a failure; when no input exists at all, that is a usage error."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise VideoError(
                    f"directory '{p}' holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                )
            out.extend(str(f) for f in found)
        else:
            out.append(str(p))
    if out and not any(Path(p).exists() for p in out):
        raise VideoError(f"no such video: {', '.join(map(repr, out))}; check the path(s)")
    unique: dict[str, str] = {}
    for p in out:
        key = os.path.realpath(p)
        if key in unique:
            log.warning(
                "video %s is named more than once (also as %s): labelled once", unique[key], p
            )
        else:
            unique[key] = p
    return list(unique.values())


def window_videos(
    videos: Sequence[str], keys: VideoKeys, windows: WindowSpec, *, progress: bool
) -> tuple[list[tuple[str, list[Clip]]], list[Failure]]:
    """Each video's windows (clip ids ``KEY:START-END`` by its key), and the probe failures;
    a video whose content another input has is skipped (``keys.repeats``)."""
    groups: list[tuple[str, list[Clip]]] = []
    failures: list[Failure] = []
    bar = tqdm(videos, desc="probing", unit="video", leave=False, disable=not progress)
    for path in bar:
        if path in keys.repeats:
            continue
        try:
            info = video.probe(path)
        except VideoError as exc:
            failures.append(Failure(path, "probe", str(exc)))
            continue
        clips = make_windows(info, windows.window_s, windows.overlap, video_key=keys.keys[path])
        groups.append((path, clips))
    return groups, failures


def plan_videos(
    groups: Sequence[tuple[str, Sequence[Clip]]], failures: list[Failure]
) -> list[VideoPlan]:
    """Probe each video (cached) and sort its clips by start, as one decoding pass needs;
    a video that cannot be probed is appended to ``failures``."""
    plans = []
    for path, clips in groups:
        try:
            info = video.probe(path)
        except VideoError as exc:
            failures.append(Failure(path, "probe", str(exc)))
            continue
        ordered = tuple(sorted(clips, key=lambda c: (c.start_s, c.end_s)))
        plans.append(VideoPlan(path, info, ordered))
    return plans
