"""Benchmark: look_again's frames on a 10-minute variable-frame-rate video, near its start and
near its end.

Run (this code; the video is generated once into --workdir):
    OMP_NUM_THREADS=1 .venv/bin/python bench/vfr_look_again.py --out /tmp/vfr_look_again.json
The same script runs against any vara checkout (it uses only APIs older versions have), e.g.
the one before real-time VFR windows, to compare.

Workload: a 160x120 H.264 video (GOP 120, B-frames) of ~10 minutes recorded the way phones do:
stretches at 30, 10 and 5 fps with jittered intervals and occasional 0.3 s stalls (~9,000
frames). For each of --positions seconds it makes what ``look_again`` makes, a part of a
window (1 s, 8 frames), and runs look_again's frame path: ``FrameStore.add_part`` (plans
the part) then ``FrameStore.get`` (decodes it: a fresh reader per call, as the tool does),
--repeat times; it reports the median seconds per call at each position and the ratio of
the last position's to the first's (flat: ~1; decoding from frame 0 each call: grows with
the position). It also checks every frame is the planned one (frame numbers drawn in the
frames) and counts sampled frames written outside the part's time span.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from vara.agents.frames import FrameStore
from vara.testing.synth_video import frame_number, write_vfr_video
from vara.tools.video import probe
from vara.types import Clip, SamplerSpec

MINUTES = 10.0  # video length
SIZE = (160, 120)  # small: the video is quick to make; decoding cost scales with frames
GOP = 120  # frames between keyframes (phones: about 1-4 s)
POSITIONS = (10.0, 60.0, 300.0, 540.0, 590.0)  # part starts (s): near the start ... the end
PART_S = 1.0  # look_again's part of a window
N_FRAMES = 8  # frames look_again asks for


def phone_times(minutes: float, seed: int = 0) -> np.ndarray:
    """Frame times (whole ms) of a ``minutes``-long recording at 30/10/5 fps stretches."""
    rng = np.random.default_rng(seed)
    gaps: list[float] = []
    while sum(gaps) < minutes * 60:
        rate = rng.choice([30.0, 10.0, 5.0], p=[0.5, 0.3, 0.2])
        n = int(rng.integers(20, 200))
        jitter = rng.normal(1.0, 0.15, n).clip(0.5, 1.6) / rate
        jitter[rng.random(n) < 0.01] = 0.3  # a stall
        gaps.extend(jitter)
    times = np.round(np.concatenate([[0.0], np.cumsum(gaps)]), 3)
    return np.unique(times[times < minutes * 60])


def ensure_video(workdir: Path, minutes: float) -> tuple[Path, np.ndarray]:
    workdir.mkdir(parents=True, exist_ok=True)
    times = phone_times(minutes)
    path = workdir / f"vfr_{minutes:g}min_{SIZE[0]}x{SIZE[1]}_gop{GOP}.mp4"
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".partial.mp4")
        write_vfr_video(tmp, timestamps_s=times, size=SIZE, gop=GOP, bframes=2)
        tmp.rename(path)
        print(f"wrote {path.name} ({len(times)} frames) in {time.perf_counter() - started:.0f} s")
    return path, times


def look_again_frames(store: FrameStore, part: Clip) -> tuple[float, list[int], list[int]]:
    """Seconds for look_again's frame path on ``part``; planned and decoded frame numbers."""
    started = time.perf_counter()
    store.add_part(part, N_FRAMES)
    batch = store.get(part)
    took = time.perf_counter() - started
    store.drop(part.clip_id)
    return took, list(batch.frame_idx), [frame_number(f) for f in batch.frames]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vara-bench-vfr"))
    ap.add_argument("--minutes", type=float, default=MINUTES, help="video length")
    ap.add_argument("--repeat", type=int, default=3, help="calls per position (median kept)")
    ap.add_argument("--out", type=Path, help="write the results here as JSON")
    args = ap.parse_args()
    path, times = ensure_video(args.workdir, args.minutes)
    started = time.perf_counter()
    info = probe(path)  # once per process (cached): it decodes a VFR file whole to count it
    probe_s = time.perf_counter() - started
    store = FrameStore(SamplerSpec(n_frames=8, max_side=448))
    rows, wrong, outside = [], 0, 0
    for pos in (p * args.minutes / MINUTES for p in POSITIONS):
        calls = []
        for k in range(args.repeat):
            part = Clip(f"{path.name}:{pos:.2f}#{k}", str(path), pos, pos + PART_S)
            took, planned, seen = look_again_frames(store, part)
            calls.append(took)
            wrong += planned != seen
            outside += sum(not pos - 1e-6 <= times[i] < pos + PART_S for i in seen)
        rows.append({"start_s": pos, "median_s": statistics.median(calls), "calls_s": calls})
        print(f"part at {pos:6.1f} s: {statistics.median(calls) * 1000:8.1f} ms per call")
    ratio = rows[-1]["median_s"] / rows[0]["median_s"]
    import vara

    result = {
        "video": {"path": str(path), "frames": len(times), "seconds": float(times[-1])},
        "vara": str(Path(vara.__file__).parent),
        "probe_s": probe_s,
        "probed_frames": info.frame_count,
        "positions": rows,
        "last_over_first": ratio,
        "calls_with_wrong_frames": wrong,
        "frames_outside_part": outside,
        "frames_checked": len(rows) * args.repeat * N_FRAMES,
        "versions": {p: metadata.version(p) for p in ("opencv-python-headless", "av", "numpy")},
        "machine": platform.platform(),
    }
    print(
        f"probe {probe_s:.1f} s ({info.frame_count} frames); last/first {ratio:.2f}; "
        f"calls with wrong frames {wrong}; sampled frames outside the part {outside} of "
        f"{result['frames_checked']}  [vara from {result['vara']}]"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
