"""Synthetic videos whose frames carry their own frame number, for tests and benchmarks.

Every frame shows its index as a grid of big black/white blocks (24 bits, top 40 % of the
frame), a pure red patch (bottom-left, so an RGB/BGR mix-up is visible) and moving content
plus noise so that encoders produce real P/B frames instead of copies. ``frame_number``
reads the index back from a decoded frame, tolerating lossy codecs and resizing.

Writers: H.264 (PyAV's bundled libx264; long GOP with B-frames), MPEG-4 part 2 with
B-frames (PyAV ``mpeg4``), ``mp4v`` and Motion-JPEG (OpenCV's VideoWriter: files as
OpenCV-based recorders write them), GIF (PyAV), variable-frame-rate H.264 (explicit pts),
a fast long 720p H.264 writer for benchmarks, and ``set_mp4_rotation`` to mark an mp4 as
rotated the way phones do. ``av`` and ``cv2`` are imported inside the functions (they are
test/bench dependencies); importing this module does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "BITS",
    "CODECS",
    "damage_middle",
    "frame_number",
    "make_frame",
    "set_mp4_rotation",
    "write_long_video",
    "write_test_video",
    "write_vfr_video",
]

BITS = 24  # 2**24 frames = 186 h at 25 fps
_COLS, _ROWS = 8, 3  # bit grid; the grid fills the top _BIT_FRAC of the frame
_BIT_FRAC = 0.4
_RED_FRAC = 0.125  # width of the red patch, bottom-left

# codec -> (writer, container suffixes it can go into)
CODECS = {
    "h264": ("pyav", (".mp4", ".mkv", ".avi", ".mov")),
    "mpeg4": ("pyav", (".mp4", ".mkv", ".avi")),
    "mp4v": ("opencv", (".mp4", ".avi", ".mov")),
    "mjpg": ("opencv", (".avi",)),
    "gif": ("pyav", (".gif",)),
}
_DEFAULT_CODEC = {".mp4": "h264", ".mkv": "h264", ".mov": "h264", ".avi": "mjpg", ".gif": "gif"}


def _block_edges(n: int, length: int) -> list[tuple[int, int]]:
    """Integer [lo, hi) edges of n equal cells over ``length`` pixels."""
    cuts = [round(k * length / n) for k in range(n + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _gradient(index: int, size: tuple[int, int]) -> np.ndarray:
    """A diagonal colour gradient drifting 3 px per frame: real motion for the encoder."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx + yy + 3 * index) % 256).astype(np.uint8)
    return np.stack([base, base // 2 + 64, 255 - base], axis=-1)


def _draw_marks(frame: np.ndarray, index: int) -> np.ndarray:
    """Draw the bit grid for ``index`` and the red patch onto ``frame`` in place."""
    h, w = frame.shape[:2]
    top = round(h * _BIT_FRAC)
    rows, cols = _block_edges(_ROWS, top), _block_edges(_COLS, w)
    for bit in range(BITS):
        (y0, y1), (x0, x1) = rows[bit // _COLS], cols[bit % _COLS]
        frame[y0:y1, x0:x1] = 255 if (index >> bit) & 1 else 0
    frame[h - (h - top) // 2 :, : max(1, round(w * _RED_FRAC))] = (255, 0, 0)
    return frame


def make_frame(
    index: int, size: tuple[int, int], *, seed: int = 0, noise: bool = True
) -> np.ndarray:
    """RGB uint8 (H, W, 3) frame that encodes ``index``; ``size`` is (width, height)."""
    if not 0 <= index < 2**BITS:
        raise ValueError(f"frame index {index} does not fit in {BITS} bits")
    frame = _gradient(index, size)
    if noise:
        # Per-frame grain defeats skip blocks, so P/B frames carry real residuals.
        rng = np.random.default_rng((seed, index))
        grain = rng.integers(-24, 25, size=(*frame.shape[:2], 1), dtype=np.int16)
        frame = np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return _draw_marks(frame, index)


def frame_number(frame: np.ndarray, *, margin: int = 48) -> int:
    """Read back the index ``make_frame`` drew, from an RGB frame of any size/aspect-kept resize.

    Each bit is the mean of its block's central half; a block whose mean lies within
    ``margin`` of mid-grey is ambiguous and raises ValueError rather than guessing.
    """
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {frame.shape}")
    h, w = frame.shape[:2]
    top = h * _BIT_FRAC
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, _COLS)
        y0, y1 = (r + 0.25) * top / _ROWS, (r + 0.75) * top / _ROWS
        x0, x1 = (c + 0.25) * w / _COLS, (c + 0.75) * w / _COLS
        cell = frame[int(y0) : max(int(y0) + 1, int(y1)), int(x0) : max(int(x0) + 1, int(x1))]
        mean = float(cell.mean())
        if abs(mean - 127.5) < margin:
            raise ValueError(f"bit {bit} is ambiguous (block mean {mean:.0f}); not a synth frame?")
        value |= int(mean > 127.5) << bit
    return value


def _rate(fps: float) -> Fraction:
    """Exact rational frame rate: 29.97 -> 30000/1001, 25.0 -> 25."""
    for den in (1, 1001):
        num = fps * den
        if abs(num - round(num)) < 1e-3 * den:
            return Fraction(round(num), den)
    return Fraction(fps).limit_denominator(100_000)


def write_test_video(
    path: str | Path,
    *,
    n_frames: int,
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    codec: str | None = None,
    gop: int = 250,
    bframes: int = 3,
    seed: int = 0,
    noise: bool = True,
    faststart: bool = False,
) -> Path:
    """Write ``n_frames`` synthetic frames to ``path``; the container follows the suffix.

    ``codec`` defaults by suffix (.mp4/.mkv/.mov -> h264, .avi -> mjpg, .gif -> gif).
    ``gop`` and ``bframes`` apply to the PyAV encoders (h264 uses a fixed keyframe interval
    and no scene-cut keyframes, so the GOP really is that long). ``faststart`` puts the mp4
    index (moov) before the frames, as streaming-ready files have it: a truncated copy then
    still opens and loses only its last frames. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    codec = codec or _DEFAULT_CODEC.get(suffix)
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r} for {path.name}; choose from {sorted(CODECS)}")
    writer, suffixes = CODECS[codec]
    if suffix not in suffixes:
        raise ValueError(f"codec {codec!r} cannot go into {suffix!r}; use one of {suffixes}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    frames = (make_frame(i, size, seed=seed, noise=noise) for i in range(n_frames))
    if writer == "opencv":
        fourcc = "mp4v" if codec == "mp4v" else "MJPG"
        _write_opencv(path, frames, fps=fps, size=size, fourcc=fourcc)
    else:
        _write_pyav(
            path,
            frames,
            codec=codec,
            rate=_rate(fps),
            size=size,
            gop=gop,
            bframes=bframes,
            faststart=faststart,
        )
    return path


def _open_stream(
    container,
    codec: str,
    rate: Fraction,
    size: tuple[int, int],
    gop: int,
    bframes: int,
    preset: str = "veryfast",
):
    if codec == "gif":
        stream = container.add_stream("gif", rate=rate)
        stream.pix_fmt = "rgb8"
    elif codec == "h264":
        stream = container.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "preset": preset,
            "crf": "23",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}",
        }
    else:  # mpeg4
        stream = container.add_stream("mpeg4", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        stream.options = {"qscale": "4"}
    stream.width, stream.height = size
    return stream


def _long_yuv_frames(n: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Planar yuv420p frames (H*3/2, W) for ``write_long_video``; limited-range BT.601."""
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"yuv420p needs even width and height, got {size}")
    yy, xx = np.mgrid[0:h, 0 : w + 256]
    wide_y = (16 + ((xx + yy) % 256) * 219 // 255).astype(np.uint8)
    top = round(h * _BIT_FRAC)
    red_y0, red_x1 = h - (h - top) // 2, max(1, round(w * _RED_FRAC))
    # U plane (h/2 x w/2) then V plane, stacked; red (255, 0, 0) is Y=81 U=90 V=240.
    uv = np.full((h, w // 2), 128, np.uint8)
    uv[red_y0 // 2 : h // 2, : red_x1 // 2] = 90
    uv[h // 2 + red_y0 // 2 :, : red_x1 // 2] = 240
    chroma = uv.reshape(h // 2, w)  # the packed layout PyAV expects below the luma rows
    rows, cols = _block_edges(_ROWS, top), _block_edges(_COLS, w)
    for i in range(n):
        shift = (3 * i) % 256
        buf = np.empty((h * 3 // 2, w), np.uint8)
        luma = buf[:h]
        luma[:] = wide_y[:, shift : shift + w]
        for bit in range(BITS):
            (y0, y1), (x0, x1) = rows[bit // _COLS], cols[bit % _COLS]
            luma[y0:y1, x0:x1] = 235 if (i >> bit) & 1 else 16
        luma[red_y0:, :red_x1] = 81
        buf[h:] = chroma
        yield buf


def _write_pyav(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    codec: str,
    rate: Fraction,
    size: tuple[int, int],
    gop: int,
    bframes: int,
    preset: str = "veryfast",
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    faststart: bool = False,
) -> None:
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = _open_stream(container, codec, rate, size, gop, bframes, preset)
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, rgb in enumerate(frames):
            fmt = "rgb24" if rgb.ndim == 3 else "yuv420p"  # 2-D arrays are planar yuv420p
            frame = av.VideoFrame.from_ndarray(rgb, format=fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_opencv(
    path: Path, frames: Iterable[np.ndarray], *, fps: float, size: tuple[int, int], fourcc: str
) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} into {path.name}")
    try:
        for rgb in frames:
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))  # VideoWriter takes BGR
    finally:
        writer.release()


def write_vfr_video(
    path: str | Path,
    *,
    timestamps_s: Sequence[float],
    size: tuple[int, int] = (160, 120),
    gop: int = 250,
    bframes: int = 3,
    seed: int = 0,
) -> Path:
    """Variable-frame-rate H.264 (.mp4/.mkv): frame i is shown at ``timestamps_s[i]``.

    Timestamps are stored as pts on a 1/90000 clock; they must be strictly increasing.
    """
    path = Path(path)
    ts = list(timestamps_s)
    if not ts or ts[0] < 0 or any(b <= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError("timestamps_s must be non-empty, >= 0 and strictly increasing")
    tb = Fraction(1, 90_000)
    pts = [round(t / tb) for t in ts]
    mean_rate = _rate(len(ts) / ts[-1]) if ts[-1] > 0 else Fraction(25)
    frames = (make_frame(i, size, seed=seed) for i in range(len(ts)))
    _write_pyav(
        path,
        frames,
        codec="h264",
        rate=mean_rate,
        size=size,
        gop=gop,
        bframes=bframes,
        pts=pts,
        time_base=tb,
    )
    return path


def write_long_video(
    path: str | Path,
    *,
    duration_s: float,
    fps: float = 25.0,
    size: tuple[int, int] = (1280, 720),
    gop: int = 250,
    bframes: int = 3,
) -> Path:
    """A long H.264 video made fast: noiseless content, x264 ``ultrafast`` with B-frames.

    ``ultrafast`` turns B-frames off, so ``bframes`` is passed back explicitly; the GOP is
    as long as ``gop``. Frames are built directly in YUV 4:2:0 (RGB->YUV conversion was half
    of the encode time): a grey drifting gradient, the bit grid and the red patch, so
    ``frame_number`` works on them. 720p: ~2.5-3 ms a frame here (1 h of video in ~4 min).
    """
    path = Path(path)
    n = round(duration_s * fps)
    if not 1 <= n < 2**BITS:
        raise ValueError(f"{duration_s} s at {fps} fps is {n} frames; need 1..{2**BITS - 1}")
    frames = _long_yuv_frames(n, size)
    _write_pyav(
        path,
        frames,
        codec="h264",
        rate=_rate(fps),
        size=size,
        gop=gop,
        bframes=bframes,
        preset="ultrafast",
    )
    return path


def set_mp4_rotation(path: str | Path, degrees: int) -> Path:
    """Write a display rotation (90/180/270, clockwise) into an mp4's track header matrix.

    Phones store orientation this way; FFmpeg 8's muxer ignores the old ``rotate`` tag,
    so the matrix is patched in place. The file must hold exactly one track (``tkhd``).
    """
    path = Path(path)
    one = 0x10000  # 16.16 fixed point
    cells = {90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}
    if degrees not in cells:
        raise ValueError(f"degrees must be 90, 180 or 270, got {degrees}")
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    if at < 0 or data.find(b"tkhd", at + 4) >= 0:
        raise ValueError(f"{path.name}: need exactly one track header (tkhd)")
    # box type, version+flags, times/track id/duration (20 or 32 bytes), reserved,
    # layer, alternate group, volume, reserved: then the 3x3 matrix
    matrix_at = at + 8 + (32 if data[at + 4] == 1 else 20) + 16
    a, b, c, d = cells[degrees]
    matrix = np.array([a, b, 0, c, d, 0, 0, 0, 0x40000000], dtype=">i4")
    data[matrix_at : matrix_at + 36] = matrix.tobytes()
    path.write_bytes(bytes(data))
    return path


def damage_middle(path: str | Path, n_bytes: int = 3000, *, seed: int = 0) -> Path:
    """Overwrite ``n_bytes`` in the middle of a file with random bytes, as a bad sector or a
    broken copy does: the container still opens, and decoding stops at that stretch."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    noise = np.random.default_rng(seed).integers(0, 256, n_bytes, np.uint8)
    data[at : at + n_bytes] = noise.tobytes()[: len(data) - at]
    path.write_bytes(bytes(data))
    return path
