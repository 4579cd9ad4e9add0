"""``vara review``: a static page where a person watches a video beside what runs said of it.

    summary = build_review(["runs/a", "runs/b"], "review/", truth="truth.csv")

writes ``review/``: ``index.html`` (the page, its data inline as JSON), ``review.js`` and
``review.css`` (the page's code, copied from ``eval/review_assets``), ``strips/`` (one JPEG
per window and sampling: the frames the model saw, ``eval.review_media``) and ``media/``
(H.264 proxies of videos a browser cannot play). Originals a browser plays are referenced by
a relative path, so the folder opens from file:// with no server and keeps working while the
videos stay where they are.

The data: per video, per run, every window (times, labels, scores, explanation, evidence,
captions, or the failure) and the run's timeline events; the true labels per window, from
``--truth`` (windowed as each run windows) or from an eval dir's clips.jsonl; the truth lane
is those windows merged (what ``vara eval`` scores against). Model text travels as JSON in a
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped, and the page sets
it with ``textContent`` only. How the page behaves is in ``eval/review_assets/review.js``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tqdm import tqdm

from vara.errors import InputError
from vara.eval.report_html import escape
from vara.eval.review_media import frame_strips, make_proxy, playable
from vara.eval.review_page import PAGE_TEMPLATE
from vara.eval.review_runs import ReviewRun, find_review_runs, locate_video, run_names
from vara.eval.review_windows import Truth, truth_windows, window_record
from vara.timeline import run_timeline
from vara.tools.video import probe
from vara.types import Clip, LabelSet, VideoInfo

__all__ = ["ReviewSummary", "build_review", "page_html"]

_ASSETS = ("review.js", "review.css")


@dataclass(frozen=True)
class ReviewSummary:
    out_dir: Path
    n_videos: int
    n_windows: int  # over all runs
    n_strips: int
    n_proxies: int
    notes: tuple[str, ...]


def _labels(runs: Sequence[ReviewRun]) -> LabelSet:
    first = runs[0].labelset
    for run in runs[1:]:
        if run.labelset.names != first.names:
            raise InputError(
                f"{run.path} labels with {run.labelset.name!r} ({', '.join(run.labelset.names)})"
                f", {runs[0].path} with {first.name!r}: review runs of one label set together"
            )
    return first


def _src(path: Path, out: Path) -> str:
    rel = os.path.relpath(path, out.resolve())
    return "/".join(quote(part) for part in Path(rel).parts)


def _video_entry(path: Path, out: Path, notes: list[str]) -> tuple[dict, VideoInfo | None]:
    entry: dict[str, Any] = {"name": path.name, "path": str(path), "src": None, "proxy": False}
    try:
        info = probe(path)
    except (InputError, OSError) as exc:
        notes.append(f"{path.name}: no player ({exc})")
        entry["note"] = f"no player: {exc}"
        return entry, None
    entry["duration_s"] = info.duration_s
    if playable(info):
        entry["src"] = _src(path, out)
        return entry, info
    # Named by the source's path, size and time: a rebuild reuses it, an edited video not.
    stat = path.stat()
    tag = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    proxy = out / "media" / f"{path.stem}-{tag}.mp4"
    entry["src"], entry["proxy"] = f"media/{quote(proxy.name)}", True
    if not proxy.is_file():
        make_proxy(path, proxy, info=info)
    return entry, info


def _events(run: ReviewRun, video: Path, clips: list[Clip], duration_s: float) -> list:
    """The run's timeline of the video: timeline.json's where it lists it, else merged here."""
    labels = run.labelset.names
    for tl in run.timelines:
        if locate_video(tl.video, run) == video:
            events = tl.events
            break
    else:
        ids = [c.clip_id for c in clips]
        events = run_timeline(str(video), duration_s, ids, run.predictions).events
    return [
        [labels.index(e.label), round(e.start_s, 3), round(e.end_s, 3), e.score]
        for e in events
        if e.label in labels
    ]


def _strips(run: ReviewRun, path: Path, clips: list[Clip], out: Path, cache: dict) -> dict:
    """clip_id -> (strip file, frame times, note); shared by runs that sample alike."""
    if run.sampler is None:
        return {c.clip_id: (None, (), "no frames: the run records no sampler") for c in clips}
    pixels = run.pixels.canonical if run.pixels else ""
    key = (str(path), json.dumps(run.sampler.to_dict(), sort_keys=True), pixels)
    todo = [c for c in clips if (key, c.start_s, c.end_s) not in cache]
    sid = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
    for clip, jpeg, times, note in frame_strips(path, todo, run.sampler, run.pixels):
        name = None
        if jpeg is not None:
            name = f"strips/{sid}-{len(cache)}.jpg"
            (out / name).write_bytes(jpeg)
        cache[(key, clip.start_s, clip.end_s)] = (name, tuple(round(t, 3) for t in times), note)
    return {c.clip_id: cache[(key, c.start_s, c.end_s)] for c in clips}


def _page_data(runs, names, labelset, out, truth, notes, bar) -> tuple[dict, int, int]:
    by_video: dict[Path, list[tuple[int, Clip]]] = {}
    for r, run in enumerate(runs):
        for clip in run.windows:
            by_video.setdefault(locate_video(clip.video, run), []).append((r, clip))
    videos, cache, n_proxies = [], {}, 0
    for path, pairs in by_video.items():
        entry, info = _video_entry(path, out, notes)
        n_proxies += entry["proxy"]
        duration = info.duration_s if info else max(c.end_s for _, c in pairs)
        entry["duration_s"] = duration
        lanes = []
        for r, run in enumerate(runs):
            clips = [c for rr, c in pairs if rr == r]
            strips = _strips(run, path, clips, out, cache) if info else {}
            true = truth_windows(truth, run, path, clips)
            windows = [
                window_record(run, c, strips.get(c.clip_id), true.get(c.clip_id)) for c in clips
            ]
            lanes.append({"windows": windows, "events": _events(run, path, clips, duration)})
            bar.update(len(clips))
        entry["runs"] = lanes
        entry["truth"] = truth.lane(path, labelset.names) if truth else None
        videos.append(entry)
    data = {
        "labels": list(labelset.names),
        "multi_label": labelset.multi_label,
        "runs": [{"name": n, "path": str(r.path)} for n, r in zip(names, runs, strict=True)],
        "videos": videos,
        "notes": notes,
    }
    return data, sum(name is not None for name, _, _ in cache.values()), n_proxies


def _json_for_script(data: dict) -> str:
    """JSON that cannot end or re-open the <script> holding it (``</script>``, ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(title: str, data: dict) -> str:
    """The page: its shell, the data as inert JSON, then the script that renders it."""
    return PAGE_TEMPLATE.format(title=escape(title), data=_json_for_script(data))


def build_review(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    truth: str | Path | None = None,
    progress: bool = True,
) -> ReviewSummary:
    """Write the review folder of ``run_dirs`` into ``out`` (module docstring); a page there
    before is replaced (its strips too; its proxies are reused while their videos are).
    ``progress``: a bar over the runs' windows (decoding their frame strips is the work)."""
    runs = find_review_runs(run_dirs)
    if not any(r.windows for r in runs):
        names = ", ".join(str(r.path) for r in runs)
        raise InputError(
            f"{names}: no window predicted or failed yet, nothing to review; finish the run "
            "(re-running its command resumes it), then review"
        )
    labelset = _labels(runs)
    known = Truth.load(truth, labelset, runs) if truth else Truth.from_runs(runs)  # before files
    out = Path(out)
    if (out / "index.html").is_file() and (out / "review.js").is_file():
        shutil.rmtree(out / "strips", ignore_errors=True)  # an earlier page's, maybe more
    (out / "strips").mkdir(parents=True, exist_ok=True)
    names = run_names(runs)
    notes = [
        f"{n}: {f.item} failed ({f.stage}: {f.error})"
        for n, r in zip(names, runs, strict=True)
        for f in r.video_failures
    ]
    total = sum(len(r.windows) for r in runs)
    with tqdm(total=total, unit="win", desc="vara review", disable=not progress) as bar:
        data, n_strips, n_proxies = _page_data(runs, names, labelset, out, known, notes, bar)
    data["truth_source"] = str(truth) if truth else ("clips.jsonl" if known else None)
    title = "vara review: " + ", ".join(names)
    (out / "index.html").write_text(page_html(title, data), encoding="utf-8")
    assets = resources.files("vara.eval") / "review_assets"
    for name in _ASSETS:
        with resources.as_file(assets / name) as src:
            shutil.copyfile(src, out / name)
    n_windows = sum(len(r.windows) for r in runs)
    return ReviewSummary(out, len(data["videos"]), n_windows, n_strips, n_proxies, tuple(notes))
