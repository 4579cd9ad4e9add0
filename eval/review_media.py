"""The review page's media: which videos a browser plays as they are, H.264 proxies of the
others, and each window's frame strip (the frames the model saw).

- **Playable**: an MP4/MOV/WebM container holding H.264, VP8/9 or AV1 is referenced where
  it lies (a relative path from the page). Anything else (AVI, MKV, GIF, MPEG-4 part 2 in an
  MP4...) gets ``media/<n>.mp4``: H.264, yuv420p, at most ``PROXY_MAX_SIDE`` px, every frame
  at its source presentation time, so a time on the page is a time in the original.
- **Frame strips**: one JPEG per window and sampling (sampler + pixel steps): the frames the
  run's sampler takes from the window, decoded in one pass over the video and put through the
  run's recorded pixel steps (``tools.frame_batches.iter_frame_batches``, as the runner reads them),
  then shrunk to ``THUMB_SIDE`` px and laid side by side. Runs that sample alike share them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from vara.errors import InputError, VaraError
from vara.eval.report_html import jpeg_bytes
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.video import probe
from vara.tools.windows import frame_time
from vara.types import Clip, PixelSpec, SamplerSpec, VideoInfo

__all__ = ["PROXY_MAX_SIDE", "THUMB_SIDE", "frame_strips", "make_proxy", "playable"]

PROXY_MAX_SIDE = 480  # px, longer side of a proxy: enough to review, small on disk
THUMB_SIDE = 112  # px, longer side of one frame in a strip
_CONTAINERS = {".mp4", ".m4v", ".mov", ".webm"}
_MS = Fraction(1, 1000)  # the proxy encoder's time base (the muxer picks its own)
_CODECS = {"avc1", "h264", "x264", "vp80", "vp8", "vp90", "vp9", "vp09", "av01", "av1"}


def playable(info: VideoInfo) -> bool:
    """Whether Chromium/Firefox play the file as it is (container and codec)."""
    codec = info.codec.strip().lower()
    return Path(info.path).suffix.lower() in _CONTAINERS and codec in _CODECS


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def make_proxy(
    src: str | Path,
    dst: str | Path,
    *,
    max_side: int = PROXY_MAX_SIDE,
    info: VideoInfo | None = None,
) -> Path:
    """An H.264 MP4 of ``src`` with its frames at their own times (VFR stays VFR): the times
    vara windows by (``info``, its probe: ``i / fps``, or the probed frame times), so the
    player and the lanes agree. A container's own stamps can be out of order (an AVI with
    packed B-frames decodes 0, 1, 3, 2, ...), which forced into order made every third frame
    late."""
    import av

    info = info or probe(src)

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
            vin = inp.streams.video[0]
            scale = min(1.0, max_side / max(vin.width, vin.height))
            w, h = _even(vin.width * scale), _even(vin.height * scale)
            vout = out.add_stream("libx264", rate=vin.average_rate or 25)
            vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
            vout.codec_context.time_base = vout.time_base = _MS  # any source's times fit
            vout.options = {"preset": "veryfast", "crf": "28"}
            last = -1
            for i, frame in enumerate(inp.decode(vin)):
                t = frame_time(info, i) if i < info.frame_count else i / info.fps
                pts = max(last + 1, int(round(t * 1000)))  # strictly increasing
                img = frame.reformat(width=w, height=h, format="yuv420p")
                img.pts, img.time_base, last = pts, _MS, pts
                for packet in vout.encode(img):
                    out.mux(packet)
            for packet in vout.encode():
                out.mux(packet)
    except (av.FFmpegError, OSError) as exc:
        dst.unlink(missing_ok=True)
        raise InputError(f"video {str(src)!r}: no H.264 proxy could be made ({exc})") from None
    return dst


def _strip(frames: np.ndarray, side: int) -> bytes:
    """Frames (T, H, W, 3) shrunk to ``side`` px (longer side) and laid left to right."""
    h, w = frames.shape[1:3]
    scale = min(1.0, side / max(h, w))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (tw * len(frames), th))
    for k, f in enumerate(frames):
        canvas.paste(Image.fromarray(f).resize((tw, th), Image.BILINEAR), (k * tw, 0))
    return jpeg_bytes(np.asarray(canvas), quality=80)


def frame_strips(
    path: str | Path,
    clips: Sequence[Clip],
    sampler: SamplerSpec,
    pixels: PixelSpec | None,
    *,
    side: int = THUMB_SIDE,
) -> Iterator[tuple[Clip, bytes | None, tuple[float, ...], str]]:
    """(clip, strip JPEG, frame times, note) per clip, from one pass; a window whose frames do
    not decode gives (clip, None, (), why). ``clips`` must be sorted by start."""
    failed: list[tuple[Clip, str]] = []
    done: set[str] = set()

    def on_error(clip: Clip, exc: VaraError) -> None:
        failed.append((clip, str(exc)))

    try:
        for batch in iter_frame_batches(path, clips, sampler, pixels=pixels, on_error=on_error):
            done.add(batch.clip.clip_id)
            yield batch.clip, _strip(batch.frames, side), batch.timestamps_s, ""
    except VaraError as exc:  # the video does not open, or breaks: the rest say why
        done |= {c.clip_id for c, _ in failed}
        failed += [(c, str(exc)) for c in clips if c.clip_id not in done]
    for clip, why in failed:
        yield clip, None, (), f"no frames: {why}"
