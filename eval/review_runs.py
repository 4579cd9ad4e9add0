"""Run directories as the review page reads them: windows, what each run said of them, how.

Two layouts are read, and a folder holding several of the second:

- a ``vara run`` out dir: ``run.json`` (fingerprint: label set, pixel steps; config: the
  strategy with its sampler), ``predictions.jsonl``, ``failures.jsonl``, ``timeline.json``,
  ``videos.json`` (which video each clip-id key names);
- a ``vara eval`` strategy dir: the same plus ``results.json`` and ``clips.jsonl`` (every
  window with its true labels).

A run's windows are its predictions and its failed windows (a window failure's item is the
clip id ``KEY:START-END``); in an eval dir, every clip of clips.jsonl. Nothing is re-run:
the page shows what the run recorded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError
from vara.eval.run_dirs import run_dirs
from vara.records import read_records
from vara.types import Clip, Failure, LabelSet, PixelSpec, Prediction, SamplerSpec, Timeline

__all__ = ["ReviewRun", "find_review_runs", "load_review_run", "locate_video", "run_names"]

_FIX = "pass a `vara run` out dir, a `vara eval` strategy dir, or a `vara eval` out dir"
_CLIP_ID = re.compile(r"^(?P<key>.+):(?P<a>\d+(?:\.\d+)?)-(?P<b>\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class ReviewRun:
    """One run as the page shows it. ``windows`` are sorted by (video, start); ``truth`` holds
    the true labels an eval dir recorded per clip id (empty for a ``vara run`` dir)."""

    path: Path
    strategy: str
    labelset: LabelSet
    sampler: SamplerSpec | None  # None: not recorded (no frame strips)
    pixels: PixelSpec | None
    windows: tuple[Clip, ...]
    predictions: dict[str, Prediction]
    failures: dict[str, Failure]  # of windows, by clip id
    timelines: tuple[Timeline, ...]
    truth: dict[str, tuple[str, ...]]
    manifest: str | None = None  # an eval dir's dataset path (relative videos resolve there)
    video_failures: tuple[Failure, ...] = ()  # a video that did not probe or decode
    windowing: tuple[float, float] | None = None  # (window_s, overlap) as configured


def locate_video(video: str, run: ReviewRun) -> Path:
    """The video as recorded, else beside the run's manifest, else beside the run."""
    path = Path(video)
    if path.is_absolute() or path.exists():
        return path.resolve()
    for base in (Path(run.manifest).parent if run.manifest else None, run.path):
        if base is not None and (base / path).exists():
            return (base / path).resolve()
    return path.resolve()


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}); {_FIX}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object; {_FIX}")
    return data


def _info(run_dir: Path) -> dict[str, Any]:
    """The run's recorded settings: results.json's run_info, else run.json's (the label set
    and pixel steps from its fingerprint)."""
    if (run_dir / "results.json").is_file():
        return _json(run_dir / "results.json").get("run_info") or {}
    if (run_dir / "run.json").is_file():
        info = _json(run_dir / "run.json").get("run_info") or {}
        fp = info.get("fingerprint") or {}
        return {**info, "labelset": fp.get("labelset"), "pixels": fp.get("pixels")}
    raise InputError(f"{run_dir} has neither run.json nor results.json: {_FIX}")


def _pixels(info: dict[str, Any], sampler: SamplerSpec | None) -> PixelSpec | None:
    """The run's pixel steps, built as the runner builds them (``eval.examples.run_pixels``)."""
    from vara.eval.examples import run_pixels

    if sampler is None:
        return None

    class _Run:  # what run_pixels reads of a run
        path = "run"
        run_info = info

    return run_pixels(_Run())


def _video_keys(run_dir: Path, preds: Iterable[Prediction]) -> dict[str, str]:
    """Clip-id key -> video path: videos.json, else the predictions' own clip ids."""
    keys: dict[str, str] = {}
    for p in preds:
        m = _CLIP_ID.match(p.clip_id)
        if m:
            keys.setdefault(m["key"], p.video)
    path = run_dir / "videos.json"
    if path.is_file():
        for key, entry in (_json(path).get("videos") or {}).items():
            if isinstance(entry, dict) and entry.get("path"):
                keys[key] = str(entry["path"])
    return keys


def _windows(run_dir: Path, preds: dict[str, Prediction], fails: dict[str, Failure]) -> list:
    if (run_dir / "clips.jsonl").is_file():
        return read_records(run_dir / "clips.jsonl", Clip, _FIX)
    clips = {p.clip_id: Clip(p.clip_id, p.video, p.start_s, p.end_s) for p in preds.values()}
    keys = _video_keys(run_dir, preds.values())
    for item in fails:
        m = _CLIP_ID.match(item)
        if m and m["key"] in keys and item not in clips:
            clips[item] = Clip(item, keys[m["key"]], float(m["a"]), float(m["b"]))
    return list(clips.values())


def load_review_run(run_dir: str | Path) -> ReviewRun:
    """One run directory (module docstring); InputError naming it when it is not one."""
    run_dir = Path(run_dir)
    info = _info(run_dir)
    if not info.get("labelset"):
        raise InputError(f"{run_dir}: its run_info records no label set; {_FIX}")
    labelset = LabelSet.from_dict(info["labelset"])
    config = info.get("config") or {}
    sampler = SamplerSpec.from_dict(config["sampler"]) if config.get("sampler") else None
    preds = {p.clip_id: p for p in read_records(run_dir / "predictions.jsonl", Prediction, _FIX)}
    fails = {f.item: f for f in read_records(run_dir / "failures.jsonl", Failure, _FIX)}
    windows = _windows(run_dir, preds, fails)
    timelines: list[Timeline] = []
    if (run_dir / "timeline.json").is_file():
        raw = _json(run_dir / "timeline.json").get("timelines") or []
        timelines = [Timeline.from_dict(t) for t in raw]
    return ReviewRun(
        path=run_dir,
        strategy=str(info.get("strategy") or config.get("name") or run_dir.name),
        labelset=labelset,
        sampler=sampler,
        pixels=_pixels(info, sampler),
        windows=tuple(sorted(windows, key=lambda c: (c.video, c.start_s, c.end_s))),
        predictions=preds,
        failures={k: v for k, v in fails.items() if _CLIP_ID.match(k)},
        timelines=tuple(timelines),
        truth={c.clip_id: c.labels for c in windows if c.labels is not None},
        manifest=(info.get("dataset") or {}).get("path"),
        windowing=_windowing(config),
        video_failures=tuple(f for k, f in fails.items() if not _CLIP_ID.match(k)),
    )


def _windowing(config: dict[str, Any]) -> tuple[float, float] | None:
    w = config.get("windows") or {}
    if "window_s" in w and "overlap" in w:
        return float(w["window_s"]), float(w["overlap"])
    return None


def _is_run(path: Path) -> bool:
    return (path / "predictions.jsonl").is_file() and (
        (path / "run.json").is_file() or (path / "results.json").is_file()
    )


def find_review_runs(paths: Sequence[str | Path]) -> list[ReviewRun]:
    """The runs under ``paths``: each a run dir or a folder of them (a ``vara eval`` out dir)."""
    none_found = "holds no predictions.jsonl with a run.json"
    return [load_review_run(d) for d in run_dirs(paths, _is_run, none_found, _FIX)]


def run_names(runs: Sequence[ReviewRun]) -> list[str]:
    """Strategy names, with the folder added where two runs share one."""
    names = [r.strategy for r in runs]
    return [
        f"{n} ({r.path.resolve().name})" if names.count(n) > 1 else n
        for n, r in zip(names, runs, strict=True)
    ]
