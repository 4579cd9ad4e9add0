"""``vara timeline RUN_DIR --format elan|vtt|csv [--out DIR]``: export a run's timelines.

RUN_DIR is a ``vara run`` out dir or one strategy dir of a ``vara eval`` out dir: what it
holds in ``timeline.json`` becomes, in ``--out`` (default RUN_DIR),

    elan  <video stem>.eaf per video   (ELAN 3.0: a tier per label)
    vtt   <video stem>.vtt per video   (WebVTT: a cue per event, beside the video in a player)
    csv   intervals.csv                (video,label,start_s,end_s: a manifest for vara eval)

Two videos with one stem get ``<stem>-2``, ... in the order timeline.json lists them. The
writers live in ``vara.timeline_export``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from vara.commands.common import EXIT_OK
from vara.errors import InputError

__all__ = ["add", "export_timelines"]

_SUFFIX = {"elan": ".eaf", "vtt": ".vtt"}


def _read(run_dir: Path) -> tuple[list, list[str]]:
    """The run's timelines and its label names in label-set order ([] when not recorded)."""
    from vara.types import Timeline

    path = run_dir / "timeline.json"
    if not path.is_file():
        raise InputError(
            f"{str(path)!r} not found: pass a `vara run` out dir or one strategy dir of a "
            "`vara eval` out dir (it is written when the run ends)"
        )
    timelines = [Timeline.from_dict(t) for t in json.loads(path.read_text())["timelines"]]
    run = run_dir / "run.json"
    labelset = {}
    if run.is_file():
        labelset = json.loads(run.read_text())["run_info"].get("fingerprint", {}).get("labelset")
    return timelines, [lab["name"] for lab in (labelset or {}).get("labels", [])]


def _stems(videos: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for v in videos:
        stem = Path(v).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def export_timelines(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> list[Path]:
    """Write the run's timelines as ``fmt`` (elan, vtt, csv) into ``out``; the files written."""
    from datetime import datetime, timezone

    from vara.timeline_export import eaf_text, interval_rows, vtt_text

    timelines, labels = _read(Path(run_dir))
    dst = Path(out) if out is not None else Path(run_dir)
    dst.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path = dst / "intervals.csv"
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows(interval_rows(timelines))
        return [path]
    if fmt not in _SUFFIX:
        raise InputError(f"unknown timeline format {fmt!r}: use elan, vtt or csv")
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths = []
    for tl, stem in zip(timelines, _stems([t.video for t in timelines]), strict=True):
        text = eaf_text(tl, date=date, labels=labels) if fmt == "elan" else vtt_text(tl)
        path = dst / f"{stem}{_SUFFIX[fmt]}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _cmd(args: argparse.Namespace) -> int:
    paths = export_timelines(args.run_dir, args.format, args.out)
    print(f"wrote {len(paths)} file(s) to {paths[0].parent if paths else args.out}")
    return EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "timeline", help="export a run's timelines to ELAN (.eaf), WebVTT (.vtt) or CSV"
    )
    s.add_argument("run_dir", metavar="RUN_DIR", help="vara run out dir or eval strategy dir")
    s.add_argument(
        "--format",
        required=True,
        choices=["elan", "vtt", "csv"],
        help="elan: .eaf per video; vtt: .vtt per video; csv: intervals.csv (an eval manifest)",
    )
    s.add_argument("--out", metavar="DIR", help="folder to write into (default: RUN_DIR)")
    s.set_defaults(func=_cmd)
