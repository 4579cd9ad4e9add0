"""Benchmark: sampling frames for overlapping windows from a long 720p H.264 video.

Run (full: 10-min comparison + 1-hour RSS; videos are generated once into --workdir):
    OMP_NUM_THREADS=1 .venv/bin/python bench/sample_frames.py --out /tmp/vara-bench/result.json
Quick sanity run (1-min comparison, 6-min RSS):
    OMP_NUM_THREADS=1 .venv/bin/python bench/sample_frames.py --quick --out /tmp/sample_frames.json

Workload: 16 frames per 2-s window, windows overlapping by 50 %, frames resized so the
longer side is 448 (SamplerSpec's default), over a 1280x720 25 fps H.264 video with a
250-frame GOP and B-frames (vara.testing.synth_video.write_long_video). In ONE run it times:
  vara   vara.tools.frame_batches.iter_frame_batches (one pass; grab through gaps, seek over
         big ones)
  naive  OpenCV, window by window, CAP_PROP_POS_FRAMES seek before every sampled frame,
         cv2.resize INTER_AREA (--naive-windows N times an even subset and scales it)
  pyav   PyAV decoding the stream once, converting only the sampled frames with swscale
         AREA to the same size, frames shared by windows decoded once; with frame threading
         ("AUTO") and with PyAV's default ("SLICE"); vara is compared to the faster one
vara and the PyAV variants run --repeat times, interleaved (medians reported: the machine
is shared). Then it checks every method's frames carry the right frame numbers, and the
mean pixel difference to vara's frames (resizers differ slightly). Peak RSS of vara's
sampler is measured in a fresh subprocess per video, on the short and the long video: it
should not depend on video length. Results go to --out as one self-describing JSON
(config, per-run timings, checks, package versions, machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from vara.testing.synth_video import frame_number, write_long_video
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.video import probe
from vara.tools.windows import make_windows, plan_frames
from vara.types import SamplerSpec

WINDOW_S = 2.0  # seconds per window
OVERLAP = 0.5  # fraction shared by neighbouring windows
N_FRAMES = 16  # frames sampled per window
MAX_SIDE = 448  # longer side after resizing (SamplerSpec default)
SIZE = (1280, 720)  # the comparison video must be 720p
N_CHECK = 12  # windows per method kept for the cross-check (evenly spread)


def ensure_video(workdir: Path, duration_s: float) -> Path:
    """Generate (once) a synthetic 720p H.264 video of ``duration_s`` seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"synth_{int(duration_s)}s_{SIZE[0]}x{SIZE[1]}_gop250.mp4"
    if not path.exists():
        tmp = path.with_suffix(".partial.mp4")
        t = time.perf_counter()
        print(f"generating {path.name} ...", flush=True)
        write_long_video(tmp, duration_s=duration_s, size=SIZE)
        tmp.rename(path)
        print(f"  {time.perf_counter() - t:.0f} s", flush=True)
    return path


def run_vara(path: Path, clips, spec: SamplerSpec, keep: set[int]) -> dict[int, np.ndarray]:
    kept = {}
    for k, batch in enumerate(iter_frame_batches(path, clips, spec)):
        if k in keep:
            kept[k] = batch.frames
    return kept


def run_naive(path: Path, plans, out_size, windows: list[int], keep: set[int]):
    import cv2

    kept = {}
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    for k in windows:
        frames = []
        for i in plans[k]:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"naive: frame {i} failed")
            bgr = cv2.resize(bgr, out_size, interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if k in keep:
            kept[k] = np.stack(frames)
    cap.release()
    return kept


def run_pyav(path: Path, plans, out_size, keep: set[int], threads: str) -> dict[int, np.ndarray]:
    """Decode once; convert only wanted frames; assemble windows as soon as complete."""
    import av

    refs: dict[int, int] = {}
    for plan in plans:
        for i in set(plan):
            refs[i] = refs.get(i, 0) + 1
    cache, kept, k = {}, {}, 0
    w, h = out_size
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = threads  # "AUTO" (frame threads) or PyAV's default "SLICE"
        for idx, frame in enumerate(container.decode(stream)):
            if idx in refs:
                cache[idx] = frame.to_ndarray(
                    format="rgb24", width=w, height=h, interpolation="AREA"
                )
            while k < len(plans) and plans[k][-1] <= idx:
                frames = np.stack([cache[i] for i in plans[k]])
                if k in keep:
                    kept[k] = frames
                for i in set(plans[k]):
                    refs[i] -= 1
                    if refs[i] == 0:
                        del cache[i]
                k += 1
            if k == len(plans):
                break
    return kept


def timed(fn, *args):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, round(time.perf_counter() - t, 3), round(time.process_time() - c, 3)


def compare(path: Path, naive_limit: int, repeat: int) -> dict:
    info = probe(path)
    spec = SamplerSpec(n_frames=N_FRAMES, max_side=MAX_SIDE)
    clips = make_windows(info, WINDOW_S, OVERLAP)
    plans = [plan_frames(info, c, spec) for c in clips]
    n = len(clips)
    naive_windows = list(range(n))
    if 0 < naive_limit < n:  # evenly spread subset, timed per window and scaled
        naive_windows = sorted({round(j * (n - 1) / (naive_limit - 1)) for j in range(naive_limit)})
    keep = set(naive_windows[:: max(1, len(naive_windows) // N_CHECK)])
    scale = MAX_SIDE / max(info.width, info.height)
    out = (round(info.width * scale), round(info.height * scale))
    distinct = len({i for p in plans for i in p})
    print(f"{path.name}: {n} windows, {distinct} distinct frames, {repeat} repeats", flush=True)

    methods = {
        "vara": lambda kept: run_vara(path, clips, spec, kept),
        "pyav_auto": lambda kept: run_pyav(path, plans, out, kept, "AUTO"),
        "pyav_slice": lambda kept: run_pyav(path, plans, out, kept, "SLICE"),
    }
    wall = {m: [] for m in methods}
    cpu = {m: [] for m in methods}
    got = {}
    for r in range(repeat):  # interleaved, so load from other processes hits all alike
        for name, fn in methods.items():
            kept, t, c = timed(fn, keep if r == 0 else set())
            got.setdefault(name, kept)
            wall[name].append(t)
            cpu[name].append(c)
            print(f"  {name:10s} {t:8.2f} s wall {c:8.2f} s cpu", flush=True)
    got["naive"], t_naive_m, c_naive = timed(run_naive, path, plans, out, naive_windows, keep)
    t_naive = round(t_naive_m * n / len(naive_windows), 3)
    note = "" if len(naive_windows) == n else f" (on {len(naive_windows)} windows, scaled)"
    print(f"  {'naive':10s} {t_naive:8.2f} s wall {c_naive:8.2f} s cpu{note}", flush=True)

    med = {m: float(np.median(v)) for m, v in wall.items()}
    best_pyav = min(med["pyav_auto"], med["pyav_slice"])

    def mean_abs_diff(name: str) -> float:  # resizers differ slightly; the frames must not
        diffs = [np.abs(got["vara"][k].astype(np.int16) - got[name][k]).mean() for k in keep]
        return round(float(np.mean(diffs)), 3)

    checks = {
        "windows_checked": sorted(keep),
        "frame_numbers_right": {
            name: all([frame_number(f) for f in frames[k]] == list(plans[k]) for k in keep)
            for name, frames in got.items()
        },
        "mean_abs_diff_vs_vara": {m: mean_abs_diff(m) for m in ("naive", "pyav_auto")},
    }
    return {
        "video": {**info.to_dict(), "size_mb": round(path.stat().st_size / 1e6, 1)},
        "windows": n,
        "distinct_frames": distinct,
        "output_size": list(out),
        "wall_s_runs": wall,
        "cpu_s_runs": cpu,
        "wall_s_median": {**{m: round(v, 3) for m, v in med.items()}, "naive": t_naive},
        "naive_cpu_s_measured": c_naive,
        "naive_windows_measured": len(naive_windows),
        "ratio": {
            "naive_over_vara": round(t_naive / med["vara"], 2),
            "best_pyav_over_vara": round(best_pyav / med["vara"], 2),
            "pyav_auto_over_vara": round(med["pyav_auto"] / med["vara"], 2),
        },
        "checks": checks,
    }


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def rss_child(path: str) -> None:
    """Run vara's sampler over the whole video; print its peak RSS (MiB) as JSON.

    ru_maxrss alone misleads here: after fork+exec it starts at the parent's RSS. So the
    kernel's high-water mark is reset (clear_refs 5) after imports, and VmHWM read after.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    base = _status_mib("VmRSS")
    info = probe(path)
    spec = SamplerSpec(n_frames=N_FRAMES, max_side=MAX_SIDE)
    t = time.perf_counter()
    n = sum(1 for _ in iter_frame_batches(path, make_windows(info, WINDOW_S, OVERLAP), spec))
    wall = round(time.perf_counter() - t, 2)
    peak = (
        _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    out = {
        "duration_s": info.duration_s,
        "windows": n,
        "wall_s": wall,
        "rss_after_imports_mib": round(base, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_source": "VmHWM after clear_refs" if reset else "ru_maxrss",
    }
    print(json.dumps(out))


def measure_rss(path: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"RSS child failed on {path.name}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def meta() -> dict:
    versions = {}
    for pkg in ("opencv-python-headless", "av", "numpy", "vara"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": versions,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/vara-bench"),
        help="where generated videos are cached (reused across runs)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1-min comparison and 6-min RSS video instead of 10 min and 1 h",
    )
    ap.add_argument(
        "--naive-windows",
        type=int,
        default=0,
        help="time the naive loop on this many evenly spread windows and scale "
        "(0 = all windows; the naive loop is slow)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of vara and each PyAV variant (interleaved; medians reported)",
    )
    ap.add_argument("--skip-rss", action="store_true", help="only the speed comparison")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    short_s, long_s = (60, 360) if args.quick else (600, 3600)
    short = ensure_video(args.workdir, short_s)
    result = {
        "benchmark": "sample_frames",
        "config": {
            "window_s": WINDOW_S,
            "overlap": OVERLAP,
            "n_frames": N_FRAMES,
            "max_side": MAX_SIDE,
            "quick": args.quick,
            "videos": f"synthetic {SIZE[0]}x{SIZE[1]} 25 fps H.264, GOP 250, B-frames",
        },
        "comparison": compare(short, args.naive_windows, args.repeat),
        "meta": meta(),
    }
    if not args.skip_rss:
        long = ensure_video(args.workdir, long_s)
        rss = {f"{int(short_s)}s": measure_rss(short), f"{int(long_s)}s": measure_rss(long)}
        peaks = [r["peak_rss_mib"] for r in rss.values()]
        rss["long_over_short_peak"] = round(peaks[1] / peaks[0], 3)
        result["rss"] = rss
        print(f"  peak RSS: {peaks[0]} MiB ({short_s} s) vs {peaks[1]} MiB ({long_s} s)")
    r = result["comparison"]["ratio"]
    print(f"  naive/vara = {r['naive_over_vara']}x   best pyav/vara = {r['best_pyav_over_vara']}x")
    print(f"  checks: {result['comparison']['checks']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
