"""One example frame per perturbation level of a sweep, for ``vara compare``: what the model saw.

A table of macro-F1 per level says how much a mask hurt, not what it hid. So the report
shows one frame through each level's pixel steps: the first window, in dataset order, whose
video decodes; in it, the middle one of the frames the run's sampler takes (the run's own
``plan_frames``), decoded once and put through each level's steps with ``tools.pixels``.
The steps are the run's recorded ones (``run_info.config``, built with ``pixel_spec`` as the
runner builds them and checked against ``run_info.pixels``), never re-read from the level's
text. Random placements, patches and noise are seeded by (video content, frame index, seed),
so at the run's frame index the example is the very frame the model got. A video that does
not decode gives a note, shown where the images would be, never an error.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vara.errors import ConfigError, InputError
from vara.eval.report_html import Example, Examples
from vara.eval.robustness import level_order
from vara.tools.pixels import Where, pixel_spec, process
from vara.tools.video import probe, read_frames
from vara.tools.windows import plan_frames
from vara.types import Clip, PixelSpec, SamplerSpec, VideoInfo

__all__ = ["example_frames", "level_runs", "run_pixels", "video_path"]

MAX_VIDEOS_TRIED = 8  # videos probed for a decodable window before giving up (each costs a decode)


def video_path(video: str, runs: Sequence[Any]) -> Path:
    """A relative video path as given, else next to a run's manifest (dataset.path)."""
    path = Path(video)
    if path.is_absolute() or path.exists():
        return path
    for run in runs:
        manifest = (run.run_info.get("dataset") or {}).get("path")
        if manifest and (Path(manifest).parent / path).exists():
            return Path(manifest).parent / path
    return path


def level_runs(runs: Sequence[Any]) -> list[tuple[str, Any]]:
    """(level, run) per perturbation level, in the robustness table's order; each level's run
    is the first sweep run's base strategy's where it has one, so the row shows one model's
    input (strategies may sample and resize differently)."""
    sweeps = [(run, run.run_info["sweep"]) for run in runs if run.run_info.get("sweep")]
    if not sweeps:
        return []
    base = sweeps[0][1]["strategy"]
    chosen: dict[str, Any] = {}
    for run, sweep in sorted(sweeps, key=lambda rs: rs[1]["strategy"] != base):  # stable
        chosen.setdefault(sweep["level"], run)
    return [(level, chosen[level]) for level in sorted(chosen, key=level_order)]


def _sampler(run: Any) -> SamplerSpec:
    """The run's sampler as results.json records it; never a default standing in for it."""
    recorded = (run.run_info.get("config") or {}).get("sampler")
    if not isinstance(recorded, dict):
        raise ConfigError(f"{run.path}: results.json records no run_info.config.sampler")
    try:
        return SamplerSpec.from_dict(recorded)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{run.path}: run_info.config.sampler is not a sampler ({exc})") from None


def run_pixels(run: Any) -> PixelSpec:
    """The pixel steps the run applied: its recorded perturbations built as the runner builds
    them, and refused unless they give the spec the run recorded (``run_info.pixels``), e.g.
    after its region file changed."""
    config = run.run_info.get("config") or {}
    perturb = tuple((config.get("pixels") or {}).get("perturb") or ())
    spec = pixel_spec(_sampler(run).max_side, perturb)
    recorded = run.run_info.get("pixels")
    if recorded and spec.canonical != recorded:
        raise ConfigError(
            f"the steps {list(perturb)} now give {spec.canonical}, not the run's {recorded}"
        )
    return spec


def _middle_frame(info: VideoInfo, clip: Clip, sampler: SamplerSpec) -> int:
    plan = plan_frames(info, clip, sampler)
    return plan[len(plan) // 2]


class _Frames:
    """Decoded frames of one video, each decoded once, as the reader hands them to the steps."""

    def __init__(self, path: Path, info: VideoInfo):
        self.path, self.info = path, info
        self._got: dict[int, tuple[np.ndarray, float]] = {}

    def get(self, idx: int) -> tuple[np.ndarray, float]:
        if idx not in self._got:
            frames, times = read_frames(self.path, [idx])  # as decoded: the steps come next
            self._got[idx] = (frames[0], times[0])
        return self._got[idx]


def _window(runs: Sequence[Any], first: Any) -> tuple[Clip, _Frames] | str:
    """The first clip (dataset order) whose video probes and whose middle frame decodes;
    else why there is none."""
    tried: dict[Path, str] = {}
    sampler = _sampler(first)
    for clip in first.clips:
        path = video_path(clip.video, runs)
        if path in tried:
            continue
        if len(tried) >= MAX_VIDEOS_TRIED:
            break
        try:
            frames = _Frames(path, probe(path))
            frames.get(_middle_frame(frames.info, clip, sampler))
            return clip, frames
        except (InputError, OSError) as exc:
            tried[path] = str(exc)
    if not tried:
        return "no example frames: the runs list no windows"
    return f"no example frames: no decodable window in {len(tried)} video(s); " + "; ".join(
        tried.values()
    )


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _example(k: int, level: str, run: Any, clip: Clip, frames: _Frames) -> Example:
    """Level ``level``'s frame as ``run``'s model got it, or a note saying why not."""
    try:
        idx = _middle_frame(frames.info, clip, _sampler(run))
        frame, t = frames.get(idx)
        seen = process(run_pixels(run), frame, Where(frames.info.path, idx, t))
    except (ConfigError, InputError, OSError) as exc:
        return Example(level, note=f"no example frame: {exc}")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", level).strip("-.") or "level"
    h, w = seen.shape[:2]
    return Example(
        level,
        file_name=f"example-{k}-{slug}.png",
        png=_png(seen),
        caption=f"{run.strategy}: frame {idx}, t={t:.2f} s, {w}x{h}",
    )


def example_frames(runs: Sequence[Any]) -> Examples | None:
    """The sweep's row of example frames (``Examples``); None when no run is of a sweep."""
    levels = level_runs(runs)
    if not levels:
        return None
    try:
        found = _window(runs, levels[0][1])
    except ConfigError as exc:
        found = f"no example frames: {exc}"
    if isinstance(found, str):
        return Examples(note=found)
    clip, frames = found
    where = (
        f"Window {clip.clip_id} ({Path(clip.video).name}, {clip.start_s:.2f}–{clip.end_s:.2f} s): "
        "the middle of the frames the run samples from it, after each level's pixel steps, "
        "as the model got it."
    )
    row = (_example(k, lv, run, clip, frames) for k, (lv, run) in enumerate(levels, start=1))
    return Examples(window=where, frames=tuple(row))
