"""Benchmark: the end of a long run, predictions.jsonl -> per-video timelines.

Run:
    OMP_NUM_THREADS=1 .venv/bin/python bench/run_outputs.py --out /tmp/run_outputs.json
Quick sanity run:
    OMP_NUM_THREADS=1 .venv/bin/python bench/run_outputs.py --windows 5000 --out /tmp/ro.json

Workload: ``--videos`` videos of ``--windows`` windows in all, one Prediction each, as a
caption-reason run writes them (4 captions of ~70 words, evidence, explanation, raw answer,
prompt refs: ~2 KB a line). In ONE run, each in a fresh subprocess (peak RSS is per process):
  full   every record parsed into a Prediction, one timeline per video filtering all of them
         by path (the runner's way until 2026-11: build_timeline(path, duration, predictions))
  vara   the runner's way: iter_jsonl streaming records into WindowLabels by clip id, and
         run_timeline over each video's windows
Reported: wall seconds and peak RSS of each, and the ratios vara / full. Both must give the
same timelines (checked).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "a gloved hand holds a round mask over the face while the other squeezes a bag".split()


def write_predictions(path: Path, n_videos: int, n_windows: int) -> None:
    per_video = max(1, n_windows // n_videos)
    caption = " ".join(WORDS * 5)
    with open(path, "w") as fh:
        for v in range(n_videos):
            for w in range(per_video):
                start = w * 1.0
                labels = ["Ventilation"] if (w // 7) % 2 == 0 else []
                record = {
                    "clip_id": f"video{v}.mp4:{start:.2f}-{start + 2:.2f}",
                    "video": f"/data/video{v}.mp4",
                    "start_s": start,
                    "end_s": start + 2.0,
                    "labels": labels,
                    "evidence": [{"source": "caption", "ref": "caption:1", "text": caption[:90]}],
                    "explanation": caption,
                    "strategy": "caption-reason",
                    "prompts": [{"id": "reason", "version": 1, "sha256": "0" * 64}] * 2,
                    "models": {"vlm": "tiny", "llm": "tiny"},
                    "raw": json.dumps({"labels": labels, "explanation": caption}),
                    "captions": [
                        {
                            "clip_id": "x",
                            "text": caption,
                            "frame_idx": [4 * i + k for k in range(4)],
                            "timestamps_s": [0.1 * k for k in range(4)],
                            "model": "tiny",
                            "prompt_id": "caption.v1",
                            "prompt_hash": "0" * 64,
                            "latency_s": 0.5,
                        }
                        for i in range(4)
                    ],
                    "attempts": 1,
                }
                fh.write(json.dumps(record) + "\n")


def one(mode: str, path: Path, n_videos: int, per_video: int) -> dict:
    from vara.records import iter_jsonl, read_jsonl
    from vara.timeline import WindowLabels, build_timeline, run_timeline
    from vara.types import Prediction

    t0 = time.perf_counter()
    if mode == "full":
        preds = [Prediction.from_dict(r) for r in read_jsonl(path)]
        timelines = [
            build_timeline(f"/data/video{v}.mp4", per_video + 1.0, preds) for v in range(n_videos)
        ]
    else:
        by_id = {r["clip_id"]: WindowLabels.from_record(r) for r in iter_jsonl(path)}
        timelines = [
            run_timeline(
                f"/data/video{v}.mp4",
                per_video + 1.0,
                [f"video{v}.mp4:{w:.2f}-{w + 2:.2f}" for w in range(per_video)],
                by_id,
            )
            for v in range(n_videos)
        ]
    wall = time.perf_counter() - t0
    return {
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "events": [
            [(e.label, e.start_s, e.end_s, e.n_windows) for e in t.events] for t in timelines
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=500)
    ap.add_argument("--windows", type=int, default=50_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    per_video = max(1, args.windows // args.videos)
    if args._child:
        mode, path = args._child
        print(json.dumps(one(mode, Path(path), args.videos, per_video)))
        return
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "predictions.jsonl"
        write_predictions(path, args.videos, args.windows)
        size_mib = path.stat().st_size / 2**20
        runs = {}
        for mode in ("full", "vara"):
            cmd = [
                sys.executable,
                __file__,
                "--videos",
                str(args.videos),
                "--windows",
                str(args.windows),
                "--out",
                str(args.out),
                "--_child",
                mode,
                str(path),
            ]
            runs[mode] = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            )
    same = runs["full"].pop("events") == runs["vara"].pop("events")
    result = {
        "config": {
            "videos": args.videos,
            "windows": per_video * args.videos,
            "predictions_mib": round(size_mib, 1),
        },
        "runs": runs,
        "ratios": {
            "wall_vara_over_full": round(runs["vara"]["wall_s"] / runs["full"]["wall_s"], 3),
            "rss_vara_over_full": round(
                runs["vara"]["peak_rss_mib"] / runs["full"]["peak_rss_mib"], 3
            ),
        },
        "same_timelines": same,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if not same:
        sys.exit("the two ways gave different timelines")


if __name__ == "__main__":
    main()
