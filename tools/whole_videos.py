"""Whole-video datasets (``tools/ucf101.py``, ``tools/kinetics.py``): the rows a source
lists -> one validated, probed ``Dataset`` of one clip per video.

Trimmed action-recognition sets label a whole file, so a row is (where it was listed, the
video, its class, its group) and a clip spans the video from 0 s to its probed end. The
checks every such source shares live here, so each says the same thing the same way: every
class must be in the label set (one error naming the first missing class, where it is
listed, how many more are missing, and the fix), a video listed twice is an error, every
video is probed up front (in a few threads: a UCF-101 split is thousands of files), and
missing files are one error with their count rather than a failure per file.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vara.errors import InputError, VideoError
from vara.tools.datasets import Dataset
from vara.tools.video import probe
from vara.types import Clip, LabelSet, VideoInfo

__all__ = ["VIDEO_SUFFIXES", "VideoRow", "missing_videos_error", "whole_video_dataset"]

# What ``ucf101:ROOT`` picks up from the class folders (the official archive is .avi).
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
_SHOWN = 5  # missing videos or classes named in one error; the rest are counted
_PROBE_THREADS = 4  # overlap OpenCV reads (it releases the GIL); a guess, not tuned


@dataclass(frozen=True)
class VideoRow:
    """One listed video. ``where`` ("testlist01.txt line 3") starts every error about it;
    ``video`` is the path as listed (the clip id's key: unique, readable, machine-free)."""

    where: str
    video: str
    file: Path
    label: str
    group: str = ""


def whole_video_dataset(
    rows: Sequence[VideoRow],
    labelset: LabelSet,
    *,
    name: str,
    path: str,
    sha256: str,
    labels_fix: str,
) -> Dataset:
    """One whole-video clip per row, after checking classes and repeats and probing every
    video. ``labels_fix`` says how to get a label set holding the source's classes."""
    if not rows:
        raise InputError(f"{path}: lists no videos; a dataset needs at least one")
    _check_classes(rows, labelset, labels_fix)
    _check_repeats(rows)
    infos = _probe_all(rows)
    clips = tuple(_clip(row, info) for row, info in zip(rows, infos, strict=True))
    return Dataset(name=name, path=path, sha256=sha256, clips=clips)


def missing_videos_error(missing: Sequence[VideoRow], total: int, fix: str) -> InputError:
    """One error for every listed video that is not there: how many, the first few, the fix
    (a dataset never silently shrinks to the videos that happen to exist)."""
    shown = "; ".join(f"{r.where}: {r.video!r}" for r in missing[:_SHOWN])
    more = f"; and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    return InputError(f"{len(missing)} of {total} listed videos not found ({shown}{more}); {fix}")


def _check_classes(rows: Sequence[VideoRow], labelset: LabelSet, fix: str) -> None:
    known = set(labelset.names)
    first: dict[str, VideoRow] = {}
    for row in rows:
        if row.label not in known:
            first.setdefault(row.label, row)
    if not first:
        return
    label, row = next(iter(first.items()))
    close = difflib.get_close_matches(label, labelset.names, 1, 0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    others = sorted(set(first) - {label})
    more = f"; {len(others)} more classes are missing too: {others[:_SHOWN]}" if others else ""
    more += ", ..." if len(others) > _SHOWN else ""
    raise InputError(
        f"{row.where}: class {label!r} is not in label set {labelset.name!r}{hint}{more}; {fix}"
    )


def _check_repeats(rows: Sequence[VideoRow]) -> None:
    seen: dict[Path, VideoRow] = {}
    for row in rows:
        if row.file in seen:
            raise InputError(
                f"{row.where}: video {row.video!r} is listed again (first at "
                f"{seen[row.file].where}); list each video once"
            )
        seen[row.file] = row


def _probe_one(row: VideoRow) -> VideoInfo:
    try:
        return probe(row.file)
    except VideoError as exc:
        raise VideoError(f"{row.where}: {exc}") from None


def _probe_all(rows: Sequence[VideoRow]) -> list[VideoInfo]:
    """Every video's info, in row order; the first unreadable one (in row order) raises."""
    workers = max(1, min(_PROBE_THREADS, os.cpu_count() or 1, len(rows)))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(_probe_one, rows))


def _clip(row: VideoRow, info: VideoInfo) -> Clip:
    if info.duration_s <= 0:
        raise VideoError(f"{row.where}: video {row.video!r} has no duration (empty or corrupt)")
    end = info.duration_s
    return Clip(
        f"{row.video}:0.00-{end:.2f}", str(row.file), 0.0, end, (row.label,), group=row.group
    )
