"""Append-only JSONL files that survive crashes: predictions, failures.

Each record is written with ONE ``os.write`` on an ``O_APPEND`` descriptor and fsync'd, so
concurrent writers never interleave and a kill can at worst leave a torn last line.
``read_jsonl`` drops (and ``repair_jsonl`` truncates) such a torn tail instead of failing,
so a resumed run continues from the last complete record.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vara.errors import InputError

__all__ = [
    "JsonlWriter",
    "iter_jsonl",
    "read_jsonl",
    "read_records",
    "repair_jsonl",
    "write_json_atomic",
    "write_jsonl_atomic",
]


class JsonlWriter:
    """Thread-safe, crash-safe appender of one JSON object per line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Complete records of a JSONL file; a torn last line (no newline) is ignored."""
    return list(iter_jsonl(path))


def read_records(path: str | Path, cls: type, fix: str) -> list[Any]:
    """The records of a JSONL file as ``cls`` (``cls.from_dict``); one that does not read is
    an InputError naming the file, the record's number and ``fix``."""
    out = []
    for n, row in enumerate(read_jsonl(path), start=1):
        try:
            out.append(cls.from_dict(row))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"{path}: record {n} is not a {cls.__name__} ({exc}); {fix}") from None
    return out


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """``read_jsonl`` one record at a time, so a large file is never held whole."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return  # torn tail: the writer died mid-line
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{p}: line {n} is not JSON ({exc.msg}); fix or delete that line (a "
                    "deleted prediction's window is labelled again on the next run)"
                ) from None


def repair_jsonl(path: str | Path) -> None:
    """Truncate a torn last line so the next append starts on a fresh line."""
    p = Path(path)
    if not p.exists():
        return
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(p, "r+b") as fh:
            fh.truncate(keep)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with these records, one JSON object per line, all or nothing."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    os.replace(tmp, p)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file and rename it over ``path``: readers never see half a file."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, p)
