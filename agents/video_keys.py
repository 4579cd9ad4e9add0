"""Stable video keys for clip ids (``KEY:START-END``) across the sessions of one out dir.

A run's predictions are keyed by clip id, so a video must get the same key every time it is
labelled into an out dir, and another video never its key. ``videos.json`` in the out dir
records each key's video by a content fingerprint (size + hash of the first and last MiB, so
a 2 GB file is not read whole) and the path it was last read from:

- a video already recorded keeps its key, from any path (a moved disk, a relative path, a
  directory added to the inputs): it resumes;
- a new video gets its file name, or, when an earlier video or another input holds that name
  (``day2/GOPR0001.MP4`` next to ``day1/GOPR0001.MP4``), the shortest path suffix free;
- one content given under two paths is labelled once.

An out dir from before videos.json is read from its predictions (key -> path), so its
videos keep their keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError
from vara.records import iter_jsonl, write_json_atomic

__all__ = ["VideoKeys", "assign_keys", "fingerprint"]

log = logging.getLogger(__name__)

REGISTRY = "videos.json"
_EDGE = 1 << 20  # bytes hashed at each end of a file


def fingerprint(path: str | Path) -> str | None:
    """``SIZE-HASH`` of a file's size and first and last MiB; None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            h = hashlib.sha256(fh.read(_EDGE))
            if size > _EDGE:
                fh.seek(max(_EDGE, size - _EDGE))
                h.update(fh.read(_EDGE))
    except OSError:
        return None  # the probe reports it as a failure
    return f"{size}-{h.hexdigest()[:16]}"


@dataclass(frozen=True)
class VideoKeys:
    """The keys of one run: ``keys`` path -> key for the videos to label, ``repeats`` inputs
    whose content another input already has, and ``registry`` what videos.json will hold."""

    keys: dict[str, str]
    repeats: dict[str, str]
    registry: dict[str, Any]

    def save(self, out: Path) -> None:
        write_json_atomic(out / REGISTRY, {"videos": self.registry})


def assign_keys(paths: Sequence[str], out: Path) -> VideoKeys:
    """Keys for ``paths`` in out dir ``out`` (see the module docstring)."""
    registry = _read_registry(out)
    by_print = {v["fingerprint"]: k for k, v in registry.items() if v.get("fingerprint")}
    prints = {p: fingerprint(p) for p in paths}
    keys: dict[str, str] = {}
    repeats: dict[str, str] = {}
    seen: dict[str, str] = {}  # fingerprint -> the first input with it
    for p in paths:  # recorded videos first, so a new one cannot take their key
        fp = prints[p]
        if fp in seen:
            repeats[p] = seen[fp]
        elif fp in by_print:
            keys[p], seen[fp] = by_print[fp], p
    taken = set(registry) | set(keys.values())
    names = [Path(p).name for p in paths]
    for p in paths:
        fp = prints[p]
        if p in keys or p in repeats:
            continue
        if fp is not None and fp in seen:
            repeats[p] = seen[fp]
            continue
        legacy = registry.get(Path(p).name)
        if legacy is not None and legacy.get("fingerprint") is None and fp is not None:
            # An old out dir whose video is no longer where it was: trust the name, as then.
            keys[p] = Path(p).name
        else:
            shared = names.count(Path(p).name) > 1
            keys[p] = _free_key(p, taken, shared)
        taken.add(keys[p])
        if fp is not None:
            seen[fp] = p
    for p, first in repeats.items():
        log.warning("video %s has the same content as %s: labelled once", p, first)
    for p, key in keys.items():
        if prints[p] is not None:
            registry[key] = {"fingerprint": prints[p], "path": p}
    return VideoKeys(keys, repeats, registry)


def _free_key(path: str, taken: set[str], shared: bool) -> str:
    """The file name, else the shortest path suffix (``day2/a.mp4``) no other video holds.
    ``shared``: another input has this file name, so both get a path suffix."""
    parts = Path(os.path.abspath(path)).parts
    for n in range(2 if shared else 1, len(parts)):
        key = "/".join(parts[-n:])
        if key not in taken:
            return key
    key, i = "/".join(parts[1:]), 2
    while f"{key}~{i}" in taken:
        i += 1
    return f"{key}~{i}"


def _read_registry(out: Path) -> dict[str, Any]:
    path = out / REGISTRY
    if path.is_file():
        try:
            videos = json.loads(path.read_text())["videos"]
            if not all(isinstance(v, dict) for v in videos.values()):
                raise TypeError("an entry is not an object")
            return dict(videos)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{path} is damaged ({type(exc).__name__}: {exc}); delete it and re-run: the "
                "keys are then read again from predictions.jsonl"
            ) from None
    # An out dir from before videos.json: its predictions name each key's video.
    registry: dict[str, Any] = {}
    for r in iter_jsonl(out / "predictions.jsonl"):
        key = str(r.get("clip_id", "")).rpartition(":")[0]
        if key and key not in registry:
            video = r.get("video")
            registry[key] = {"fingerprint": fingerprint(video) if video else None, "path": video}
    return registry
