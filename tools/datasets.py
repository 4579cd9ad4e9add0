"""Labelled datasets for ``vara eval``: a manifest file (CSV or JSONL) -> validated Clips.

Two manifest formats, told apart by their columns (JSONL: the keys of all lines together):

**clips** - one row is one Clip::

    video,start_s,end_s,labels              # or: path,label (one label per row)
    a.mp4,0,2,Ventilation;Stimulation       # CSV: labels separated by ';'
    a.mp4,2,4,                              # empty = no activity (multi-label sets only)
    b.mp4,,,Suction                         # no times = the whole video (length from probe)

    {"video": "a.mp4", "start_s": 0, "end_s": 2, "labels": ["Ventilation"]}   # JSONL: a list

**intervals** - rows ``video,label,start_s,end_s`` annotate what happens when; each listed
video is cut into windows (``make_windows``: ``window_s`` long, ``overlap`` shared) and
labelled by the windowing rule (``tools/window_rule.py``): in a multi-label set a label is
positive when its annotated time inside the window is MORE than ``min_overlap`` of the
window's length (the newborn-resuscitation protocol: 2 s, 50 %, half); in a single-label set
the window takes the label covering most of it (a tie: the later one). Intervals of one
label are merged first, so time annotated twice counts once, and two touching intervals of
one label add up. A video with no activity at all is listed with one
row whose label, start_s and end_s are empty, so it still gets (all-negative) windows::

    video,label,start_s,end_s
    a.mp4,Ventilation,0.0,5.5
    a.mp4,Stimulation,3.0,9.0
    c.mp4,,,                                # c.mp4: windows, no activity

Detection (``format="auto"``): a singular ``label`` column together with ``start_s`` and
``end_s`` means intervals (one label per row, with times, is how annotation tools export);
anything else is clips - ``labels``, or ``label`` without times (the shared sample
manifest ``path,label,...``). For trimmed clips with one label and times each, name the
column ``labels`` or pass ``format="clips"``. Other columns (licence, source...) are
ignored, except one that looks like a misspelt missing column (``strat_s``), an error.

Videos are relative to the manifest's folder (or ``root``) unless absolute; every video is
probed once up front. Every problem raises ``InputError`` naming the file, the line and the
fix (the file's rows and columns are read and checked by ``tools.manifest_file``); no row is
ever dropped. Times past a video's end are cut to it (a warning when they
overshoot by more than one frame; annotation exports often round up); a start at or after
the end is an error. Single-label sets need exactly one label per clip or window.

Example::

    ds = load_dataset("runs/manifest.csv", load_labelset("newborn-resuscitation"))
    ds.clips[0]  # Clip(clip_id='a.mp4:0.00-2.00', video='/abs/a.mp4', ..., labels=(...))
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vara.errors import InputError, VideoError
from vara.tools.manifest_file import check_columns, read_records, row_error
from vara.tools.video import probe
from vara.tools.window_rule import single_window_label, window_labels
from vara.tools.windows import make_windows
from vara.types import Clip, LabelSet, VideoInfo

__all__ = ["Dataset", "detect_format", "load_dataset"]

Format = Literal["auto", "clips", "intervals"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """A labelled set of clips; ``sha256`` is of the manifest file's bytes; ``n_tied``
    counts single-label windows whose label the tie rule chose (tools/window_rule.py)."""

    name: str
    path: str
    sha256: str
    clips: tuple[Clip, ...]
    n_tied: int = 0


@dataclass(frozen=True)
class _Row:
    line: int
    video: str  # as written in the manifest
    file: Path  # resolved
    labels: tuple[str, ...]
    start_s: float | None
    end_s: float | None


def detect_format(columns: Sequence[str]) -> Literal["clips", "intervals"]:
    """``intervals`` when the columns hold ``label``, ``start_s`` and ``end_s``; else ``clips``."""
    cols = set(columns)
    if {"label", "start_s", "end_s"} <= cols and "labels" not in cols:
        return "intervals"
    return "clips"


def load_dataset(
    path: str | Path,
    labelset: LabelSet,
    *,
    window_s: float = 2.0,
    overlap: float = 0.5,
    min_overlap: float = 0.5,
    root: str | Path | None = None,
    format: Format = "auto",
) -> Dataset:
    """Read and validate a clip or interval manifest (module docstring); probes every video."""
    src = Path(path)
    if src.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"manifest {str(src)!r}: unknown suffix; use a .csv or .jsonl file")
    if not src.is_file():
        raise InputError(f"manifest {str(src)!r} not found; check the path")
    if format not in ("auto", "clips", "intervals"):
        raise InputError(f"format must be 'auto', 'clips' or 'intervals', got {format!r}")
    if not (isinstance(min_overlap, (int, float)) and 0 <= min_overlap < 1):
        raise InputError(
            f"min_overlap must be in [0, 1) (0.5 = more than half), got {min_overlap!r}"
        )
    raw = src.read_bytes()
    columns, records = read_records(src, raw)
    fmt = detect_format(columns) if format == "auto" else format
    base = Path(root).resolve() if root is not None else src.resolve().parent
    if not base.is_dir():
        raise InputError(f"root {str(base)!r} is not a directory")
    reader = _Reader(src, labelset, base, check_columns(src, columns, fmt), fmt)
    rows = [reader.parse(line, rec) for line, rec in records]
    infos = _probe_all(src, rows)
    if fmt == "clips":
        clips = _clips_from_rows(reader, rows, infos)
    else:
        spec = (window_s, overlap, min_overlap)
        clips = _clips_from_intervals(reader, rows, infos, spec)
    _check_unique(src, clips)
    n_tied = sum(tied for _, _, tied in clips)
    if n_tied:
        log.info("%s: %d window(s) were tied between labels; each took the later one", src, n_tied)
    return Dataset(
        name=src.stem,
        path=str(src.resolve()),
        sha256=hashlib.sha256(raw).hexdigest(),
        clips=tuple(c for c, _, _ in clips),
        n_tied=n_tied,
    )


@dataclass(frozen=True)
class _Reader:
    """Parses and validates one manifest row at a time (everything that needs no video)."""

    src: Path
    labelset: LabelSet
    base: Path
    cols: tuple[str, str]  # (video column, label column)
    fmt: str

    def err(self, line: int, msg: str) -> InputError:
        return row_error(self.src, line, msg)

    def parse(self, line: int, rec: dict[str, Any]) -> _Row:
        video = rec.get(self.cols[0])
        if not isinstance(video, str) or not video.strip():
            raise self.err(line, f"empty {self.cols[0]!r}; give a video path")
        file = Path(video.strip())
        file = (file if file.is_absolute() else self.base / file).resolve()
        if not file.is_file():
            hint = (
                "fix the path or remove the row"
                if Path(video.strip()).is_absolute()
                else f"relative paths start at {str(self.base)!r}"
            )
            raise self.err(line, f"video {video!r} not found at {str(file)!r}; {hint}")
        labels = self._labels(line, rec.get(self.cols[1]))
        start, end = self._time(line, rec, "start_s"), self._time(line, rec, "end_s")
        if (start is None) != (end is None):
            raise self.err(line, "give both start_s and end_s, or neither")
        if start is not None and end is not None and start >= end:
            raise self.err(line, f"start_s {start} >= end_s {end}; swap or fix them")
        if self.fmt == "intervals" and bool(labels) != (start is not None):
            raise self.err(
                line,
                "an interval needs a label, start_s and end_s; a video "
                "with no activity is one row with label, start_s and end_s all empty",
            )
        if self.fmt == "clips" and not self.labelset.multi_label and len(labels) != 1:
            raise self.err(
                line,
                f"label set {self.labelset.name!r} is single-label; give "
                f"exactly one label, got {list(labels)}",
            )
        return _Row(line, Path(video.strip()).as_posix(), file, labels, start, end)

    def _labels(self, line: int, value: Any) -> tuple[str, ...]:
        if value is None or value == "":
            names: list[Any] = []
        elif self.cols[1] == "label":
            if not isinstance(value, str) or ";" in value:
                msg = f"'label' holds one label name, got {value!r}; for several use 'labels'"
                raise self.err(line, msg)
            names = [value]
        elif isinstance(value, list) and self.src.suffix.lower() == ".jsonl":
            names = value
        elif isinstance(value, str) and self.src.suffix.lower() == ".csv":
            names = [n for n in value.split(";") if n.strip()]
        else:
            raise self.err(line, f"'labels' must be a JSON list of names, got {value!r}")
        order = self.labelset.names
        for name in names:
            if not isinstance(name, str) or name.strip() not in order:
                raise self.err(line, self._unknown(name))
        names = [n.strip() for n in names]
        if len(set(names)) < len(names):
            raise self.err(line, f"labels {names} repeat a label; list each once")
        return tuple(sorted(names, key=order.index))

    def _unknown(self, name: Any) -> str:
        ls = self.labelset
        alias = {n.lower(): n for n in ls.names}
        alias.update({s.lower(): lab.name for lab in ls.labels for s in lab.synonyms})
        text = str(name).strip()
        guess = alias.get(text.lower()) or next(
            iter(difflib.get_close_matches(text, ls.names, 1, 0.6)), None
        )
        hint = f"did you mean {guess!r}? " if guess else ""
        return f"label {name!r} is not in label set {ls.name!r}; {hint}labels: {list(ls.names)}"

    def _time(self, line: int, rec: dict[str, Any], key: str) -> float | None:
        value = rec.get(key)
        if value is None or value == "":
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            t = float(value)
        except (TypeError, ValueError):
            raise self.err(line, f"{key} {value!r} is not a number of seconds") from None
        if not math.isfinite(t) or t < 0:
            raise self.err(line, f"{key} {value!r} must be finite seconds >= 0")
        return t

    def fit(self, row: _Row, info: VideoInfo, start: float, end: float) -> float:
        """``end`` cut to the video's end; raises if ``start`` is not inside the video."""
        dur = info.duration_s
        if start >= dur:
            raise self.err(
                row.line,
                f"start_s {start} is at or after the end of {row.video!r} "
                f"({dur:.3f} s); check the times are seconds and the video is right",
            )
        if end > dur + 1 / info.fps:
            msg = f"end_s {end} is past the end of {row.video!r} ({dur:.3f} s); cut to the end"
            log.warning("%s line %d: %s", self.src, row.line, msg)
        return min(end, dur)


def _probe_all(src: Path, rows: Sequence[_Row]) -> dict[Path, VideoInfo]:
    infos: dict[Path, VideoInfo] = {}
    for row in rows:
        if row.file not in infos:
            try:
                infos[row.file] = probe(row.file)
            except VideoError as exc:
                raise VideoError(f"{src} line {row.line}: {exc}") from None
    return infos


def _by_video(rows: Sequence[_Row]) -> dict[Path, list[_Row]]:
    """Rows grouped by video, in order of first appearance."""
    groups: dict[Path, list[_Row]] = {}
    for row in rows:
        groups.setdefault(row.file, []).append(row)
    return groups


def _clips_from_rows(
    reader: _Reader, rows: Sequence[_Row], infos: Mapping[Path, VideoInfo]
) -> list[tuple[Clip, str, bool]]:
    # The clip-id key of a video is its path as first written (unique, unlike its file name).
    keys = {file: group[0].video for file, group in _by_video(rows).items()}
    out = []
    for row in rows:
        info = infos[row.file]
        start = 0.0 if row.start_s is None else row.start_s
        end = reader.fit(row, info, start, info.duration_s if row.end_s is None else row.end_s)
        clip = Clip(
            f"{keys[row.file]}:{start:.2f}-{end:.2f}", str(row.file), start, end, row.labels
        )
        out.append((clip, f"line {row.line}", False))
    return out


def _clips_from_intervals(
    reader: _Reader,
    rows: Sequence[_Row],
    infos: Mapping[Path, VideoInfo],
    spec: tuple[float, float, float],
) -> list[tuple[Clip, str, bool]]:
    window_s, overlap, min_overlap = spec
    out = []
    for file, mine in _by_video(rows).items():
        lines = [str(r.line) for r in mine]
        where = f"line{'s' if len(lines) > 1 else ''} {', '.join(lines[:5])}"
        where += ", ..." if len(lines) > 5 else ""
        spans: dict[str, list[tuple[float, float]]] = {n: [] for n in reader.labelset.names}
        for r in mine:
            if r.labels and r.start_s is not None and r.end_s is not None:
                end = reader.fit(r, infos[file], r.start_s, r.end_s)
                spans[r.labels[0]].append((r.start_s, end))
        for win in make_windows(infos[file], window_s, overlap, video_key=mine[0].video):
            if reader.labelset.multi_label:
                labels, tied = window_labels(win.start_s, win.end_s, spans, min_overlap), False
            else:
                one = single_window_label(win.start_s, win.end_s, spans, min_overlap)
                if one.label is None:
                    raise _unannotated(reader, where, win, one.annotated_s, min_overlap)
                labels, tied = (one.label,), len(one.tied) > 1
            out.append((dataclasses.replace(win, labels=labels), where, tied))
    return out


def _unannotated(reader, where: str, win: Clip, annotated_s: float, min_overlap: float):
    return InputError(
        f"{reader.src} {where}: window {win.clip_id} is annotated for only "
        f"{annotated_s:.2f} s of its {win.duration_s:.2f} s (more than {min_overlap:.0%} is "
        f"needed), and label set {reader.labelset.name!r} is single-label: annotate what "
        "happens there (e.g. with a 'background' label), or use a multi-label set"
    )


def _check_unique(src: Path, clips: Sequence[tuple[Clip, str, bool]]) -> None:
    seen: dict[str, str] = {}
    for clip, where, _ in clips:
        if clip.clip_id in seen:
            raise InputError(
                f"{src} {where}: clip {clip.clip_id!r} repeats the one from {seen[clip.clip_id]}; "
                "list each clip once (ids round times to 0.01 s)"
            )
        seen[clip.clip_id] = where
