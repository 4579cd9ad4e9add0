"""Video access for vara: probe, window, plan and decode frames. The only module decoding video
(OpenCV); ``tools.pixels`` owns what is done to a decoded frame.

Frames leave here as RGB uint8 (T, H, W, 3), rotated per the container's rotation metadata
(sizes reported after rotation), each converted from the decoder's BGR once and then put
through the pixel pipeline (``tools.pixels.process``: the resize to ``max_side``, then any
perturbation) here, in ``_Reader.read``, its one caller. Indices are decode-order frame
numbers.

Timestamps: in constant-frame-rate (CFR) video frame i is at exactly ``i / fps`` on every
decode path (OpenCV's POS_MSEC is not used there: in AVI it is shifted by the decoder
delay). Variable-frame-rate (VFR) video and GIF are detected at probe time (times of the
first frames, or of the last one, off the 1/fps grid); the probe then counts their frames
by decoding them once (grab only), keeping every frame's presentation time in
``VideoInfo.frame_times_s``, so windows and plans are in real time (``tools.windows``). OpenCV's
frame seeks land by time, on the wrong frame in VFR, so a VFR reader seeks by time to a point
before the wanted frame, names the frame it landed on by its time in that table, and grabs
forward from there (``tools.video_times``): a far frame costs a keyframe's worth of
decoding, not the whole file before it. GIFs are decoded in order only. A VFR file regular at
both ends can pass as CFR: every seek re-checks the time it landed on and falls back to
sequential decoding when that is off the grid.

Many windows (``tools.frame_batches``, which plans clips and decodes them through the reader
here): one pass in index order, grab() (decode without colour conversion) through
gaps of up to SEEK_GAP frames, a CAP_PROP_POS_FRAMES seek over longer ones. OpenCV's seek
jumps to a keyframe at or before target-16 and decodes forward, so it costs >= 17 grabs
even for intra-only codecs. Measured here (2 cores) a random seek costs as much as 17 grabs
(MJPEG), 24 (mp4v, GOP 12), 43 (H.264, GOP 50) and 80-98 (H.264, GOP 250, 720p); even a
4-frame forward seek takes 30-300 ms at GOP 250. SEEK_GAP = 64 lies in that break-even
range (within ~1.5x of the better choice for common GOPs); dense sampling never seeks.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vara.errors import VideoError
from vara.tools import video_times
from vara.tools.pixel_steps import Where, out_size
from vara.tools.pixels import process as process_pixels
from vara.types import PixelSpec, VideoInfo

__all__ = ["SEEK_GAP", "probe", "read_frames"]

SEEK_GAP = 64  # frames; see the module docstring for how it was chosen
_HEAD_FRAMES = 32  # frames decoded at probe time to check the frame-rate grid
_GRID_TOL = 0.5  # a frame time more than half a frame off i/fps means "not CFR"

log = logging.getLogger(__name__)


def _fix(name: str) -> str:
    stem = Path(name).stem or "video"
    return f"re-encode it, e.g. ffmpeg -i {name} -c:v libx264 {stem}_fixed.mp4"


@dataclass(frozen=True)
class _Source:
    """What decoding needs beyond VideoInfo (kept private: VideoInfo has no VFR field)."""

    info: VideoInfo
    exact_seek: bool  # CFR: OpenCV's frame seeks land on the decode-order frame
    t0_s: float  # presentation time of frame 0; timestamps are relative to it
    declared: int  # the container's own frame count (0 if it has none)
    time_seek: bool = False  # VFR with a frame-time table: seek by time, name frames by it


def _open(path: str | Path) -> cv2.VideoCapture:
    """Open with the FFmpeg backend, turning every way of failing into a one-line VideoError."""
    name, p = str(path), Path(path)
    if not p.exists():
        raise VideoError(f"video {name!r} not found; check the path")
    if not p.is_file():
        raise VideoError(f"video {name!r} is not a file; pass a video file path")
    if p.stat().st_size == 0:
        raise VideoError(f"video {name!r} is empty (0 bytes); copy or export it again")
    # FFmpeg complains per packet on stderr for damaged files; users get our one-line error
    # instead. Respect an explicit setting (OpenCV reads it once, at its first capture).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(name, cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        with open(p, "rb") as f:
            head = f.read(12)
        if head[4:8] == b"ftyp":
            raise VideoError(
                f"video {name!r} is an MP4/MOV without a readable index (moov atom): the file "
                "is probably truncated (interrupted copy or recording); copy it again or "
                "repair it (e.g. with untrunc)"
            )
        raise VideoError(
            f"video {name!r} cannot be opened: it is not a video, or its format/codec is one "
            f"OpenCV's FFmpeg cannot read; check the file, or {_fix(name)}"
        )
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _fourcc(value: float) -> str:
    raw = int(value).to_bytes(4, "little", signed=False)
    return raw.decode("ascii", errors="replace").strip("\x00 ").lower()


def _on_grid(times: Sequence[float], fps: float) -> bool:
    """True when frame k is shown at times[0] + k / fps (to within half a frame)."""
    return all(abs(t - times[0] - k / fps) <= _GRID_TOL / fps for k, t in enumerate(times))


def _seek_ok(cap: cv2.VideoCapture, idx: int) -> bool:
    """Seek to ``idx`` and grab it; False when OpenCV landed elsewhere (it clamps past the end)."""
    cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
    return cap.grab() and round(cap.get(cv2.CAP_PROP_POS_FRAMES)) == idx + 1


def _count_cfr(cap: cv2.VideoCapture, claimed: int) -> tuple[int, float | None]:
    """Real frame count of a seekable file and the last frame's time (None if not at hand).

    The container's claim is checked at the tail: mp4/avi indexes are exact unless the file
    is truncated; mkv/webm counts are estimated from duration * fps and can be off either way.
    """
    if _seek_ok(cap, claimed - 1):
        last_s, extra = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, 0
        while cap.grab():  # claim too low: count what follows
            last_s, extra = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, extra + 1
        return claimed + extra, last_s
    lo, hi = 0, claimed - 1  # frame lo decodes, frame hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _seek_ok(cap, mid) else (lo, mid)
    return lo + 1, None


def _inspect(path: str | Path) -> _Source:
    """Probe once per file version: the runner probes, then decodes; VFR probing decodes all."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return _inspect_uncached(path)  # _open names the problem
    return _inspect_cached(str(path), st.st_size, st.st_mtime_ns)


# Room for every video of a large batch (an entry is ~0.5 KB): the runner probes them all
# before the first window and again as it decodes each, and a VFR probe decodes the file.
@functools.lru_cache(maxsize=1 << 16)
def _inspect_cached(path: str, size: int, mtime_ns: int) -> _Source:
    return _inspect_uncached(path)


def _inspect_uncached(path: str | Path) -> _Source:
    name = str(path)
    cap = _open(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        if not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"video {name!r} declares no usable frame rate ({fps}); {_fix(name)}")
        ok, first = cap.read()
        if not ok or first is None or first.size == 0:
            raise VideoError(
                f"video {name!r} has 0 decodable frames (corrupt or unsupported codec "
                f"{codec!r}); {_fix(name)}"
            )
        times = [cap.get(cv2.CAP_PROP_POS_MSEC) / 1000]
        while len(times) < _HEAD_FRAMES and cap.grab():
            times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        # AVI stores no per-frame times (CFR by construction) and OpenCV's POS_MSEC there is
        # shifted by the decoder delay; GIF frame delays vary freely, so never seek in a GIF.
        avi = Path(name).suffix.lower() == ".avi"
        gif = codec == "gif" or Path(name).suffix.lower() == ".gif"
        exact = not gif and (avi or _on_grid(times, fps))
        all_times, count = times, len(times)  # right when the whole video was decoded above
        if len(times) == _HEAD_FRAMES:
            if exact and claimed > 0:
                count, last_s = _count_cfr(cap, claimed)
                # A VFR file can start on the grid; its last frame's time is then off it.
                if not avi and last_s is not None:
                    exact = abs(last_s - times[0] - (count - 1) / fps) <= _GRID_TOL / fps
            if not exact or claimed <= 0:
                all_times = _decode_times(path)
                count = len(all_times)
    finally:
        cap.release()
    if claimed > count and not gif:
        log.warning(
            "video %r declares %d frames but only %d decode (truncated?)", name, claimed, count
        )
    table = None if exact else video_times.relative_times(name, all_times, fps, gif)
    h, w = first.shape[:2]
    info = VideoInfo(
        path=name,
        fps=float(fps),
        frame_count=count,
        duration_s=count / fps if table is None else video_times.duration_s(table, fps),
        width=w,
        height=h,
        rotation_deg=rotation,
        codec=codec,
        frame_times_s=table,
    )
    return _Source(
        info=info,
        exact_seek=exact,
        t0_s=times[0],
        declared=max(claimed, 0),
        time_seek=table is not None and not gif,
    )


def _decode_times(path: str | Path) -> list[float]:
    """The time (s, as OpenCV reports it) of every frame that decodes, in decode order."""
    cap = _open(path)
    times = []
    try:
        while cap.grab():
            times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
        return times
    finally:
        cap.release()


def probe(path: str | Path) -> VideoInfo:
    """Frame rate, a verified frame count, size after rotation, rotation and codec of a video.

    Decodes the first frames (proves the file decodes, checks the frame-rate grid) and
    verifies the container's frame count at the tail with a seek; VFR videos, GIFs and
    containers without a count are counted by decoding them once, which also gives VFR
    videos and GIFs their table of frame times (``frame_times_s``).
    """
    return _inspect(path).info


class _Reader:
    """Decodes wanted frames in increasing index order, grabbing through small gaps and
    seeking over big ones; converts each wanted frame to RGB and through the pixel steps
    exactly once."""

    def __init__(self, src: _Source, spec: PixelSpec | None):
        self._src, self._pixels = src, spec or PixelSpec.resize_only(None)  # None: as decoded
        self._exact, self._fps = src.exact_seek, src.info.fps
        self._times = src.info.frame_times_s if src.time_seek else None  # VFR: seek by time
        self._avi = Path(src.info.path).suffix.lower() == ".avi"  # no pts: see _inspect
        self._cap = _open(src.info.path)
        self._next = 0  # index of the frame the next grab() returns
        self._lost = False  # a read failed mid-stream: the next one seeks
        self.seeks = 0  # for tests and benchmarks: how often the seek path ran

    def close(self) -> None:
        self._cap.release()

    def _fail(self, idx: int, why: str) -> VideoError:
        name, fps = self._src.info.path, self._src.info.fps
        return VideoError(
            f"video {name!r}: frame {idx} {why} (the file is probably truncated or corrupt "
            f"near {idx / fps:.2f} s); use windows ending before that, or {_fix(name)}"
        )

    def _restart_sequential(self) -> None:
        # A seek landed off the 1/fps grid: this file is VFR after all; count frames instead.
        self._cap.release()
        self._cap, self._next, self._exact = _open(self._src.info.path), 0, False
        self._lost = False

    def _seek_time(self, idx: int) -> bool:
        """VFR: land on a frame at or before ``idx`` by a time seek (``video_times``), and
        leave the grabs up to ``idx`` to ``read``. False where none did (the caller decodes
        from the start)."""
        assert self._times is not None
        landed, tries = video_times.seek_by_time(
            self._cap, self._times, self._src.t0_s, self._fps, idx
        )
        self.seeks += tries
        if landed is None:
            return False
        self._next, self._lost = landed + 1, False
        return True

    def _seek(self, idx: int) -> bool:
        """Seek to idx and grab it; False if the file turned out not to be CFR."""
        self.seeks += 1
        if not _seek_ok(self._cap, idx):
            raise self._fail(idx, "cannot be reached by seeking")
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 - self._src.t0_s
        return self._avi or abs(t - idx / self._fps) <= _GRID_TOL / self._fps

    def read(self, idx: int) -> tuple[np.ndarray, float]:
        """RGB frame ``idx`` after the pixel steps, and its time in seconds.

        Where decoding stops at a damaged stretch, the frame fails and the next read jumps:
        a seekable (CFR) file seeks past the damage. (A VFR file is counted by decoding, so
        its windows end where decoding stops, with a warning from the probe.)"""
        seekable = self._exact or self._times is not None
        jump = self._lost or idx < self._next or (seekable and idx - self._next > SEEK_GAP)
        if jump and self._exact and self._seek(idx):
            self._next, self._lost = idx + 1, False
        elif jump and self._times is not None and self._seek_time(idx):
            pass  # landed at or before idx: the grabs below reach it
        elif jump:
            self._times = None  # a time seek failed here: decode in order from now on
            self._restart_sequential()
        cap = self._cap
        while self._next <= idx:
            if not cap.grab():
                self._lost = True  # where the decoder is now is unknown: the next read jumps
                raise self._fail(idx, f"cannot be decoded (decoding stopped at {self._next})")
            self._next += 1
        ok, bgr = cap.retrieve()
        if not ok or bgr is None or bgr.size == 0:
            raise self._fail(idx, "decodes to no picture")
        t = (
            idx / self._fps
            if self._exact
            else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 - self._src.t0_s
        )
        if self._times is not None and abs(t - self._times[idx]) > video_times.SAME_TIME_S:
            # Not the frame the probe saw at idx (frames lost after a seek?): start over.
            self._times = None
            self._restart_sequential()
            return self.read(idx)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return process_pixels(self._pixels, rgb, Where(self._src.info.path, idx, t)), t


def read_frames(
    path: str | Path, frame_idx: Iterable[int], *, pixels: PixelSpec | None = None
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Frames ``frame_idx`` (any order, repeats allowed) as RGB uint8 (T, H, W, 3) + times (s),
    through the pixel steps ``pixels`` (None: as decoded)."""
    spec = pixels or PixelSpec.resize_only(None)
    src = _inspect(path)
    info = src.info
    wanted = [int(i) for i in frame_idx]
    n, bad = info.frame_count, [i for i in wanted if not 0 <= i < info.frame_count]
    if bad and all(0 <= i < src.declared for i in bad):
        raise VideoError(
            f"video {info.path!r} declares {src.declared} frames but only {n} decode "
            f"(truncated or corrupt): frames {bad[:5]} are missing; use frames < {n}"
        )
    if bad:
        raise VideoError(
            f"video {info.path!r} has frames 0..{n - 1}, not {bad[:5]}; "
            "plan indices with plan_frames(probe(video), ...)"
        )
    got: dict[int, tuple[np.ndarray, float]] = {}
    reader = _Reader(src, spec)
    try:
        for i in sorted(set(wanted)):
            got[i] = reader.read(i)
    finally:
        reader.close()
    if not wanted:
        w, h = out_size(info.width, info.height, spec.max_side)
        return np.empty((0, h, w, 3), np.uint8), ()
    return np.stack([got[i][0] for i in wanted]), tuple(got[i][1] for i in wanted)
