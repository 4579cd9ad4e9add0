"""A manifest file's rows: a CSV or JSONL file -> (columns, records with their line numbers),
and the check of its columns against a manifest format (``tools.datasets`` describes both).

Shared by every reader of manifests (``tools.datasets``, ``tools.kinetics``,
``finetune.sft_targets``), so a bad file gets the same error wherever it is read: it names
the file, the line and the fix (not UTF-8, repeated header columns, a row with more or fewer
fields than the header, a line that is not a JSON object, a missing or misspelt column).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vara.errors import InputError

__all__ = ["check_columns", "read_records", "row_error"]

_KNOWN = ("video", "path", "label", "labels", "start_s", "end_s")


def row_error(src: Path, line: int, msg: str) -> InputError:
    """An InputError naming the manifest file and the line."""
    return InputError(f"{src} line {line}: {msg}")


def read_records(src: Path, raw: bytes) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The columns and the (line number, record) pairs of manifest ``src`` (``raw``: its bytes;
    a .csv reads as CSV, anything else as JSONL); raises on text that is not UTF-8 or no rows."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        bad = raw[exc.start : exc.start + 4]
        raise InputError(
            f"{src} line {line}: not UTF-8 text (byte {bad[:1]!r} in {bad!r}: {exc.reason}); "
            "save the file as UTF-8"
        ) from None
    columns, records = (
        _read_csv(src, text) if src.suffix.lower() == ".csv" else _read_jsonl(src, text)
    )
    if not records:
        raise InputError(f"{src}: no rows; a manifest needs at least one clip or video")
    return columns, records


def _read_csv(src: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or ()]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise row_error(src, 1, f"header repeats columns {dupes}; name each column once")
    reader.fieldnames = columns
    records = []
    for rec in reader:
        if None in rec:
            raise row_error(src, reader.line_num, "more fields than header columns (quote commas)")
        if any(v is None for v in rec.values()):
            raise row_error(src, reader.line_num, f"fewer fields than the header's {len(columns)}")
        records.append((reader.line_num, {k: v.strip() for k, v in rec.items()}))
    return columns, records


def _read_jsonl(src: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns: dict[str, None] = {}
    records = []
    for line, item in enumerate(text.splitlines(), 1):
        if not item.strip():
            continue
        try:
            rec = json.loads(item)
        except json.JSONDecodeError as exc:
            raise row_error(
                src, line, f"invalid JSON ({exc.msg}); one JSON object per line"
            ) from None
        if not isinstance(rec, dict):
            raise row_error(src, line, f"expected a JSON object, got {type(rec).__name__}")
        columns.update(dict.fromkeys(rec))
        records.append((line, rec))
    return list(columns), records


def check_columns(src: Path, columns: Sequence[str], fmt: str) -> tuple[str, str]:
    """The (video column, label column) to use; raises on missing or ambiguous columns."""
    cols = set(columns)
    unknown = [c for c in columns if c not in _KNOWN]

    def missing(what: str, wanted: Sequence[str]) -> InputError:
        close = [u for u in unknown if difflib.get_close_matches(u, wanted, 1, 0.7)]
        hint = f"; rename {close[0]!r}" if close else ""
        return InputError(f"{src}: no {what} column (found {list(columns)}){hint}")

    for a, b in (("video", "path"), ("label", "labels")):
        if a in cols and b in cols:
            raise InputError(f"{src}: has both {a!r} and {b!r} columns; keep one")
    if not cols & {"video", "path"}:
        raise missing("'video' (or 'path')", ("video", "path"))
    if not cols & {"label", "labels"}:
        raise missing("'labels' (or 'label')", ("label", "labels"))
    for t in ("start_s", "end_s"):
        if t not in cols and (fmt == "intervals" or cols & {"start_s", "end_s"}):
            raise missing(f"{t!r} (seconds)", (t,))
    absent = [k for k in ("start_s", "end_s") if k not in cols]
    for u in unknown:
        near = difflib.get_close_matches(u, absent, 1, 0.7)
        if near:
            raise InputError(f"{src}: column {u!r} looks like {near[0]!r}; rename it")
    if fmt == "intervals" and "label" not in cols:
        raise InputError(f"{src}: interval annotations need a 'label' column (one label a row)")
    video_col = "video" if "video" in cols else "path"
    return video_col, "label" if "label" in cols else "labels"
