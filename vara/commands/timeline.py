"""``vara timeline RUN_DIR --format elan|vtt|csv|png [--out DIR]``: export a run's timelines.

RUN_DIR is a ``vara run`` out dir or one strategy dir of a ``vara eval`` out dir: what it
holds in ``timeline.json`` becomes, in ``--out`` (default RUN_DIR),

    elan  <video stem>.eaf per video            (ELAN 3.0: a tier per label)
    vtt   <video stem>.vtt per video            (WebVTT: a cue per event, beside the video)
    csv   intervals.csv                         (video,label,start_s,end_s: a manifest)
    png   <video stem>.timeline.png per video   (Gantt chart; ``--truth`` adds truth lanes)

``--min-event-s``, ``--merge-gap-s``, ``--hysteresis`` smooth the timelines again from the
run's predictions (vara/smoothing.py), replacing the run's own smoothing; without them the
timelines are as timeline.json holds them. The smoothing used is written into the files
that can hold it (EAF header property, WebVTT NOTE, the PNG's title).

Two videos with one stem get ``<stem>-2``, ... in the order timeline.json lists them. The
writers live in ``vara.timeline_export`` and ``vara.eval.gantt``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from vara.commands.common import EXIT_OK, add_smoothing_flags, folder
from vara.errors import InputError

__all__ = ["add", "export_timelines"]

_SUFFIX = {"elan": ".eaf", "vtt": ".vtt", "png": ".timeline.png"}


def _read(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The run's timeline.json and its label names in label-set order ([] when not recorded)."""
    path = run_dir / "timeline.json"
    if not path.is_file():
        inside = sorted(d.name for d in run_dir.glob("*/") if (d / "timeline.json").is_file())
        hint = f"; this folder's strategy dirs have one: {', '.join(inside)}" if inside else ""
        raise InputError(
            f"{str(path)!r} not found: pass a `vara run` out dir or one strategy dir of a "
            f"`vara eval` out dir (it is written when the run ends){hint}"
        )
    doc = json.loads(path.read_text())
    run = run_dir / "run.json"
    labelset = {}
    if run.is_file():
        labelset = json.loads(run.read_text())["run_info"].get("fingerprint", {}).get("labelset")
    return doc, [lab["name"] for lab in (labelset or {}).get("labels", [])]


def _smoothed_again(run_dir: Path, doc: dict[str, Any], smoothing) -> list:
    """The run's timelines rebuilt from predictions.jsonl with ``smoothing``."""
    from vara.records import iter_jsonl
    from vara.timeline import WindowLabels, run_timeline
    from vara.types import Timeline

    timelines = [Timeline.from_dict(t) for t in doc["timelines"]]
    if "windows" not in doc:
        raise InputError(
            f"{run_dir / 'timeline.json'} predates recorded window sequences, so it cannot be "
            "smoothed again: re-run the same `vara run`/`vara eval` command on its out dir "
            "(it labels nothing again, and rewrites timeline.json)"
        )
    preds = {
        r["clip_id"]: WindowLabels.from_record(r) for r in iter_jsonl(run_dir / "predictions.jsonl")
    }
    return [
        run_timeline(t.video, t.duration_s, ids, preds, smoothing)
        for t, ids in zip(timelines, doc["windows"], strict=True)
    ]


def _stems(videos: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for v in videos:
        stem = Path(v).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def _truth_for(truth: dict[str, list], manifest: Path, video: str) -> list:
    """The manifest's events of ``video``: same path (relative to the manifest's folder),
    else same file name; none when the manifest does not list it."""
    resolved = {str((manifest.parent / v).resolve()): ev for v, ev in truth.items()}
    target = str(Path(video).resolve())
    if target in resolved:
        return resolved[target]
    named = [ev for v, ev in truth.items() if Path(v).name == Path(video).name]
    return named[0] if len(named) == 1 else []


def export_timelines(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    smoothing=None,
    truth: str | Path | None = None,
) -> list[Path]:
    """Write the run's timelines as ``fmt`` (elan, vtt, csv, png) into ``out``; the files
    written. ``smoothing`` (a vara.smoothing.Smoothing) rebuilds them smoothed so; ``truth``
    (an interval CSV) adds truth lanes to a png."""
    from datetime import datetime, timezone

    from vara.smoothing import Smoothing
    from vara.timeline_export import eaf_text, interval_rows, read_intervals, vtt_text
    from vara.types import Timeline

    if fmt not in (*_SUFFIX, "csv"):
        raise InputError(f"unknown timeline format {fmt!r}: use elan, vtt, csv or png")
    run_dir = Path(run_dir)
    doc, labels = _read(run_dir)
    if smoothing is not None:
        timelines = _smoothed_again(run_dir, doc, smoothing)
    else:
        timelines = [Timeline.from_dict(t) for t in doc["timelines"]]
        smoothing = Smoothing.from_dict(doc.get("smoothing"))
    dst = Path(out) if out is not None else run_dir
    dst.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path = dst / "intervals.csv"
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows(interval_rows(timelines))
        return [path]
    said = json.dumps(smoothing.to_dict(), separators=(",", ":"))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    events = read_intervals(truth) if truth is not None else None
    paths = []
    for tl, stem in zip(timelines, _stems([t.video for t in timelines]), strict=True):
        path = dst / f"{stem}{_SUFFIX[fmt]}"
        if fmt == "png":
            from vara.eval.gantt import gantt_png

            mine = None if events is None else _truth_for(events, Path(truth), tl.video)
            notes = {} if smoothing.is_identity else {"smoothing": said}
            path.write_bytes(gantt_png(tl, labels, mine, notes=notes))
        elif fmt == "elan":
            props = {"vara:smoothing": said}
            path.write_text(eaf_text(tl, date=date, labels=labels, properties=props), "utf-8")
        else:
            path.write_text(vtt_text(tl, note=f"vara smoothing {said}"), encoding="utf-8")
        paths.append(path)
    return paths


def _smoothing(args: argparse.Namespace):
    """The flags' smoothing; None when no flag is given (the run's timelines as they are)."""
    from vara.smoothing import Smoothing

    if args.min_event_s is None and args.merge_gap_s is None and args.hysteresis is None:
        return None
    try:
        return Smoothing(args.min_event_s or 0.0, args.merge_gap_s or 0.0, args.hysteresis)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _cmd(args: argparse.Namespace) -> int:
    smoothing = _smoothing(args)
    if args.truth is not None and args.format != "png":
        raise InputError("--truth draws truth lanes in a Gantt chart: use it with --format png")
    paths = export_timelines(
        args.run_dir, args.format, args.out, smoothing=smoothing, truth=args.truth
    )
    print(f"wrote {len(paths)} file(s) to {paths[0].parent if paths else args.out}")
    return EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "timeline",
        help="export a run's timelines: ELAN (.eaf), WebVTT (.vtt), CSV or a Gantt chart (.png)",
    )
    s.add_argument("run_dir", metavar="RUN_DIR", help="vara run out dir or eval strategy dir")
    s.add_argument(
        "--format",
        required=True,
        choices=["elan", "vtt", "csv", "png"],
        help="elan: .eaf per video; vtt: .vtt per video; csv: intervals.csv (an eval "
        "manifest); png: <stem>.timeline.png per video (a lane per label)",
    )
    s.add_argument(
        "--out", metavar="DIR", type=folder, help="folder to write into (default: RUN_DIR)"
    )
    s.add_argument(
        "--truth",
        metavar="MANIFEST",
        help="png: an interval CSV (video,label,start_s,end_s) drawn as a truth lane per label",
    )
    add_smoothing_flags(s)
    s.set_defaults(func=_cmd)
