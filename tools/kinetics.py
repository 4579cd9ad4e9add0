"""Kinetics as a dataset (``vara eval kinetics:CSV``): the official annotation CSV plus the
videos a Kinetics downloader wrote -> one whole-video clip per row.

The CSV is the one published with Kinetics-400/600/700 (extra columns such as ``is_cc`` are
ignored; ``split`` is optional)::

    label,youtube_id,time_start,time_end,split
    abseiling,--33Lscn6sk,4,14,train

Each row's video is looked up under the video root (default: the CSV's folder) as the
downloaders name it: ``{youtube_id}_{time_start:06d}_{time_end:06d}.EXT`` or
``{youtube_id}.EXT`` (any extension, .mp4 preferred), in ``ROOT/<label>/`` (also with
spaces as underscores) or ROOT itself. The file is taken as already trimmed to the row's
segment: the clip is the whole file (a file much longer than its segment gets a warning).
Missing videos are one error with their count and the first few; no row is dropped. The
YouTube id is the clip's group, so two segments of one YouTube video never straddle a
fine-tuning split.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from vara.errors import InputError
from vara.tools.datasets import Dataset
from vara.tools.manifest_file import read_records  # the manifest reader: same errors
from vara.tools.whole_videos import VideoRow, missing_videos_error, whole_video_dataset
from vara.types import LabelSet

__all__ = ["SUBSETS", "kinetics_classes", "load_kinetics"]

SUBSETS = ("train", "val", "test", "all")
_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
_SPLIT_NAMES = {"val": ("val", "valid", "validate", "validation")}  # as the CSVs spell it
_UNTRIMMED_S = 2.0  # a file this much longer than its segment is probably the whole upload

log = logging.getLogger(__name__)


def load_kinetics(
    csv_path: str | Path,
    labelset: LabelSet,
    *,
    video_root: str | Path | None = None,
    subset: str | None = None,
) -> Dataset:
    """A ``Dataset`` of the CSV's rows (``subset`` filters the ``split`` column); every video
    is found and probed up front. ``sha256`` is of the CSV's bytes."""
    src, raw, records = _read(csv_path)
    root = Path(video_root).expanduser().resolve() if video_root else src.resolve().parent
    if not root.is_dir():
        raise InputError(f"--video-root {str(root)!r} is not a directory; give the video folder")
    records = _pick_subset(src, records, subset)
    finder = _Finder(root)
    rows, missing, segments = [], [], {}
    for line, rec in records:
        label, yid, start, end = _parse(src, line, rec)
        file = finder.find(label, yid, start, end)
        where = f"{src} line {line}"
        video = file.relative_to(root).as_posix() if file else f"{yid}_{start:06d}_{end:06d}"
        row = VideoRow(where, video, file or root / video, label, group=yid)
        (rows if file else missing).append(row)
        segments[row.file] = end - start
    if missing:
        fix = (
            f"looked in {root} and {root}/<label>/ for {{youtube_id}}_{{time_start:06d}}_"
            "{time_end:06d}.* and {youtube_id}.*; download them, point --video-root at their "
            "folder, or remove their rows"
        )
        raise missing_videos_error(missing, len(records), fix)
    fix = (
        f"make a matching label set: vara labels --from kinetics:{src} --out kinetics.yaml, "
        "then pass --labels kinetics.yaml (or add the class to your label set)"
    )
    name = src.stem if subset in (None, "all") else f"{src.stem}-{subset}"
    sha = hashlib.sha256(raw).hexdigest()
    ds = whole_video_dataset(
        rows, labelset, name=name, path=str(src.resolve()), sha256=sha, labels_fix=fix
    )
    _warn_untrimmed(src, ds, segments)
    return ds


def kinetics_classes(csv_path: str | Path) -> tuple[str, ...]:
    """The CSV's labels, sorted: what ``vara labels --from kinetics:CSV`` writes."""
    src, _, records = _read(csv_path)
    return tuple(sorted({_parse(src, line, rec)[0] for line, rec in records}))


def _read(csv_path: str | Path) -> tuple[Path, bytes, list[tuple[int, dict[str, Any]]]]:
    src = Path(csv_path).expanduser()
    if src.suffix.lower() != ".csv" or not src.is_file():
        raise InputError(
            f"kinetics:{csv_path}: not a .csv file; give the Kinetics annotation CSV "
            "(label,youtube_id,time_start,time_end,split)"
        )
    raw = src.read_bytes()
    columns, records = read_records(src, raw)
    absent = [c for c in _COLUMNS if c not in columns]
    if absent:
        hint = (
            " (Kinetics test CSVs hold no labels: evaluate on validate.csv)"
            if ("label" in absent)
            else ""
        )
        raise InputError(
            f"{src}: no {absent} column(s) (found {columns}); a Kinetics CSV has "
            f"{list(_COLUMNS)} and optionally 'split'{hint}"
        )
    return src, raw, records


def _pick_subset(
    src: Path, records: list[tuple[int, dict[str, Any]]], subset: str | None
) -> list[tuple[int, dict[str, Any]]]:
    if subset in (None, "all"):
        return records
    if subset not in SUBSETS:
        raise InputError(f"kinetics: --subset must be one of {list(SUBSETS)}, got {subset!r}")
    if "split" not in records[0][1]:
        raise InputError(
            f"{src}: has no 'split' column to pick --subset {subset} from; drop --subset "
            "(the file is one split already)"
        )
    names = _SPLIT_NAMES.get(subset, (subset,))
    kept = [(line, rec) for line, rec in records if rec["split"].lower() in names]
    if not kept:
        found = sorted({rec["split"] for _, rec in records})
        raise InputError(f"{src}: no row has split {subset!r} (found {found}); pick one of those")
    return kept


def _parse(src: Path, line: int, rec: dict[str, Any]) -> tuple[str, str, int, int]:
    label, yid = rec["label"], rec["youtube_id"]
    if not label or not yid:
        raise InputError(f"{src} line {line}: empty label or youtube_id; fill both in")
    start, end = _second(src, line, rec, "time_start"), _second(src, line, rec, "time_end")
    if start >= end:
        raise InputError(f"{src} line {line}: time_start {start} >= time_end {end}; fix them")
    return label, yid, start, end


def _second(src: Path, line: int, rec: dict[str, Any], key: str) -> int:
    """Whole seconds, as the CSVs (and so the downloaded files' names) write them."""
    try:
        value = float(rec[key])
    except ValueError:
        value = -1.0
    if value < 0 or not value.is_integer():
        raise InputError(
            f"{src} line {line}: {key} {rec[key]!r} is not a whole number of seconds >= 0"
        )
    return int(value)


class _Finder:
    """Finds a row's file under the root; each folder is listed once (Kinetics folders hold
    hundreds of thousands of files, so a listing beats a stat per candidate name)."""

    def __init__(self, root: Path):
        self.root = root
        self._listed: dict[Path, dict[str, list[Path]]] = {}

    def find(self, label: str, yid: str, start: int, end: int) -> Path | None:
        folders = dict.fromkeys([self.root / label, self.root / label.replace(" ", "_")])
        for stem in (f"{yid}_{start:06d}_{end:06d}", yid):
            for folder in [*folders, self.root]:
                files = self._stems(folder).get(stem)
                if files:
                    return min(files, key=lambda f: (f.suffix.lower() != ".mp4", f.name))
        return None

    def _stems(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._listed:
            stems: dict[str, list[Path]] = {}
            if folder.is_dir():
                for entry in os.scandir(folder):
                    if entry.is_file():
                        stems.setdefault(Path(entry.name).stem, []).append(Path(entry.path))
            self._listed[folder] = stems
        return self._listed[folder]


def _warn_untrimmed(src: Path, ds: Dataset, segments: dict[Path, int]) -> None:
    long = [
        (c, segments[Path(c.video)])
        for c in ds.clips
        if c.end_s > segments[Path(c.video)] + _UNTRIMMED_S
    ]
    if long:
        clip, seg = long[0]
        log.warning(
            "%s: %d video(s) last longer than their segment (e.g. %s: %.1f s for a %d s "
            "segment): untrimmed? vara labels each whole file; trim them to the segment",
            src,
            len(long),
            clip.video,
            clip.end_s,
            seg,
        )
