"""On-disk caption cache (SQLite): never pay twice for the same caption.

A caption is reused when everything that could change it is the same: the video's content
(sha256 of the file bytes, so a renamed or moved file still hits), the frame indices and the
pixel steps they went through (``PixelSpec.canonical``: the resize, then any perturbation),
the VLM's ``cache_identity`` (backend, model name, and a local
checkpoint's weight files), the caption prompt (template hash AND the rendered text, which
covers every variable, the label set's description included), and the generation settings.
Editing a reasoning prompt or swapping the LLM changes none of these, so a re-run makes zero
caption requests.

The file hash is computed once per (path, size, mtime) and stored too. One connection is
shared by threads behind a lock; WAL mode lets a second process read while one writes.

    cache = CaptionCache(default_cache_path())
    key = cache.key(video="a.mp4", frame_idx=(3, 9), pixels=plan.pixels.canonical,
                    model=vlm.cache_identity,
                    prompt_sha256="…", rendered="…", generation={"max_tokens": 128})
    hit = cache.get(key)            # CachedCaption | None
    cache.put(key, CachedCaption(text="…", model="m", latency_s=0.4))
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError

__all__ = ["CachedCaption", "CaptionCache", "default_cache_path", "file_sha256"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (path, size, mtime_ns)
);
CREATE TABLE IF NOT EXISTS captions (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT NOT NULL, latency_s REAL NOT NULL,
    created REAL NOT NULL, parts TEXT NOT NULL
);
"""


def default_cache_path() -> Path:
    """``$VARA_CACHE_DIR/captions.sqlite``, else under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    root = os.environ.get("VARA_CACHE_DIR")
    if root:
        return Path(root) / "captions.sqlite"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vara" / "captions.sqlite"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class CachedCaption:
    text: str
    model: str
    latency_s: float  # what the original request took (a hit itself costs ~nothing)


class CaptionCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(
                f"caption cache '{self.path}' cannot be opened ({exc}); pass another --cache "
                f"path or --no-cache"
            ) from None
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._making: dict[str, threading.Event] = {}  # keys a thread is asking the model for
        self._hashing = threading.Lock()

    def video_sha256(self, path: str | Path) -> str:
        st = Path(path).stat()
        ident = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if ident in self._hashes:
            return self._hashes[ident]
        # One file at a time: windows of a new video in flight together wait for its one
        # hash instead of each reading the whole file.
        with self._hashing:
            if ident in self._hashes:
                return self._hashes[ident]
            with self._lock:
                row = self._db.execute(
                    "SELECT sha256 FROM files WHERE path=? AND size=? AND mtime_ns=?", ident
                ).fetchone()
            sha = row[0] if row else file_sha256(path)
            if not row:
                with self._lock, self._db:
                    self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)", (*ident, sha))
            self._hashes[ident] = sha
        return sha

    def key(
        self,
        *,
        video: str | Path,
        frame_idx: tuple[int, ...],
        pixels: str,
        model: str,
        prompt_sha256: str,
        rendered: str,
        generation: dict[str, Any],
    ) -> str:
        parts = {
            "video_sha256": self.video_sha256(video),
            "frame_idx": list(frame_idx),
            "pixels": pixels,
            "model": model,
            "prompt_sha256": prompt_sha256,
            "rendered_sha256": hashlib.sha256(rendered.encode()).hexdigest(),
            "generation": generation,
        }
        return json.dumps(parts, sort_keys=True)

    def get(self, key: str) -> CachedCaption | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            row = self._db.execute(
                "SELECT text, model, latency_s FROM captions WHERE key=?", (digest,)
            ).fetchone()
        return CachedCaption(*row) if row else None

    def put(self, key: str, caption: CachedCaption) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        row = (digest, caption.text, caption.model, caption.latency_s, time.time(), key)
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO captions VALUES (?,?,?,?,?,?)", row)

    def get_or_make(
        self, key: str, make: Callable[[], CachedCaption]
    ) -> tuple[CachedCaption, bool]:
        """The cached answer for ``key``, or ``make()``'s, stored; and whether it was cached.

        Asked for a key another thread is making (overlapping windows in flight together
        share frames), it waits for that answer instead of asking the model again; if that
        thread fails, it makes the answer itself.
        """
        while True:
            hit = self.get(key)
            if hit is not None:
                return hit, True
            with self._lock:
                busy = self._making.get(key)
                if busy is None:
                    self._making[key] = done = threading.Event()
            if busy is None:
                break
            busy.wait()
        try:
            hit = self.get(key)  # made and stored between the miss and the claim
            if hit is not None:
                return hit, True
            made = make()
            self.put(key, made)
            return made, False
        finally:
            with self._lock:
                del self._making[key]
            done.set()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM captions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
