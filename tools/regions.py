"""Region files for feature masking (``mask-regions:FILE``) and isolation masking
(``isolate:FILE``): boxes in a video over a span of time.

CSV (header ``video,start_s,end_s,x0,y0,x1,y1[,label]``) or JSON (a list of objects with
those keys). ``video`` is the video's file name (``a.mp4``) or a path ending in it;
coordinates are fractions of the frame's width (x) and height (y), ``0 <= x0 < x1 <= 1``;
a box applies to frames with ``start_s <= t < end_s``. Every row is checked when the
strategy loads, and a bad one is an error naming the file, the row and the fix.

    regions = load_regions("boxes.csv")
    regions.boxes_at("a.mp4", 2.4)   # ((x0, y0, x1, y1), ...) active at 2.4 s
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vara.errors import InputError

__all__ = ["Regions", "load_regions", "region_mask"]

_COLUMNS = ("video", "start_s", "end_s", "x0", "y0", "x1", "y1")
_FIX = "see docs/robustness.md for the region-file format"


@dataclass(frozen=True)
class _Box:
    video: str
    start_s: float
    end_s: float
    xyxy: tuple[float, float, float, float]
    label: str = ""


@dataclass(frozen=True)
class Regions:
    """The boxes of one region file, with its content hash (part of the pixel spec)."""

    path: str
    sha256: str
    boxes: tuple[_Box, ...]

    def boxes_at(self, video: str, time_s: float) -> tuple[tuple[float, ...], ...]:
        name = Path(video).name
        return tuple(
            b.xyxy
            for b in self.boxes
            if (b.video == name or video.endswith("/" + b.video) or video == b.video)
            and b.start_s <= time_s < b.end_s
        )


def region_mask(height: int, width: int, boxes: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """Boolean (H, W) mask of the union of ``boxes`` (fractions of the frame)."""
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        r0, r1 = round(y0 * height), max(round(y1 * height), round(y0 * height) + 1)
        c0, c1 = round(x0 * width), max(round(x1 * width), round(x0 * width) + 1)
        mask[r0:r1, c0:c1] = True
    return mask


@functools.lru_cache(maxsize=16)
def _load(path: str, size: int, mtime_ns: int) -> Regions:
    raw = Path(path).read_bytes()
    rows = _rows(path, raw)
    boxes = tuple(_box(path, where, row) for where, row in rows)
    if not boxes:
        raise InputError(f"region file {path!r} lists no regions; {_FIX}")
    return Regions(path, hashlib.sha256(raw).hexdigest()[:12], boxes)


def load_regions(path: str | Path) -> Regions:
    """The regions of ``path``, checked row by row (read again only when the file changes)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise InputError(f"region file '{path}' not found; give a CSV or JSON file of boxes")
    st = p.stat()
    return _load(str(p), st.st_size, st.st_mtime_ns)


def _rows(path: str, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"region file {path!r} is not UTF-8 text; save it as UTF-8") from None
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"region file {path!r}: invalid JSON ({exc}); {_FIX}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InputError(f"region file {path!r}: expected a JSON list of objects; {_FIX}")
        return [(f"item {i}", r) for i, r in enumerate(data, start=1)]
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"region file {path!r}: no column(s) {missing}; {_FIX}")
    return [(f"line {reader.line_num}", dict(r)) for r in reader]


def _box(path: str, where: str, row: dict[str, Any]) -> _Box:
    def fail(why: str) -> InputError:
        return InputError(f"region file {path!r} {where}: {why}; {_FIX}")

    missing = [c for c in _COLUMNS if row.get(c) in (None, "")]
    if missing:
        raise fail(f"no value for {missing}")
    try:
        start, end, *xyxy = (float(row[c]) for c in _COLUMNS[1:])
    except (TypeError, ValueError):
        raise fail("start_s, end_s, x0, y0, x1, y1 must be numbers") from None
    x0, y0, x1, y1 = xyxy
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise fail(f"need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions), got {xyxy}")
    if not 0 <= start < end:
        raise fail(f"need 0 <= start_s < end_s, got {start}, {end}")
    return _Box(str(row["video"]), start, end, (x0, y0, x1, y1), str(row.get("label") or ""))
