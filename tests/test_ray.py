"""`vara run --ray`: videos spread over a local Ray cluster (2 CPUs, so 2 workers), labelled
against the real vLLM server; the driver alone writes predictions.jsonl (agents/ray_labels.py).

Each run is the console command in a subprocess, which starts its own local cluster, as a
user's `vara run --ray` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import vara

pytestmark = pytest.mark.server

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vara[ray]')")


def _args(videos: Path, url: str, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(videos),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "direct",
        "--vlm-url",
        url,
        "--frames",
        "2",
        "--no-cache",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def _labels(out: Path) -> dict[str, list[str]]:
    return {r["clip_id"]: r["labels"] for r in map(json.loads, open(out / "predictions.jsonl"))}


def _ids(out: Path) -> Counter:
    return Counter(json.loads(line)["clip_id"] for line in open(out / "predictions.jsonl"))


def _stats(out: Path) -> dict[str, int]:
    return json.loads((out / "run.json").read_text())["run_info"]["sessions"][-1]["stats"]


def test_ray_run_equals_a_local_run_and_resumes(vllm_server, shared_videos, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    r = vara(*_args(shared_videos, vllm_server.url, local))
    assert r.returncode == 0, r.stderr[-3000:]
    r = vara(*_args(shared_videos, vllm_server.url, on_ray, "--ray"))
    assert r.returncode == 0, r.stderr[-3000:]
    want, got = _labels(local), _labels(on_ray)
    assert len(want) == 60  # 7 clips of 6.5-10 s: 2-s windows, half overlap
    assert got == want  # every window, same labels
    assert max(_ids(on_ray).values()) == 1
    assert _stats(on_ray)["ray_tasks"] == 7  # one task per video
    info = json.loads((on_ray / "run.json").read_text())["run_info"]
    assert info["status"] == "complete"
    # The workers made the requests: run.json counts them as a local run does.
    local_info = json.loads((local / "run.json").read_text())["run_info"]
    [replica] = info["endpoints"]["vlm"]
    assert replica["requests"] == local_info["endpoints"]["vlm"][0]["requests"] >= 60

    # Resume: a run cut after 25 windows finishes the other 35 on Ray, redoing none.
    lines = (on_ray / "predictions.jsonl").read_text().splitlines(keepends=True)
    (on_ray / "predictions.jsonl").write_text("".join(lines[:25]))
    r = vara(*_args(shared_videos, vllm_server.url, on_ray, "--ray"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "35 predicted now, 25 resumed, 0 failed" in r.stdout
    assert _labels(on_ray) == want and max(_ids(on_ray).values()) == 1


def _task_pids() -> list[int]:
    """Ray workers running vara's task (Ray titles a busy worker ``ray::<function>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and cmd.startswith(b"ray::label_video"):
            pids.append(int(proc.name))
    return pids


def test_a_ray_worker_killed_mid_run_has_its_windows_redone_once(
    vllm_server, shared_videos, tmp_path
):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vara.cli", *_args(shared_videos, vllm_server.url, out, "--ray")]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 300
    try:
        while killed is None and time.monotonic() < deadline and run.poll() is None:
            preds = out / "predictions.jsonl"
            busy = _task_pids()
            if busy and preds.exists() and preds.read_text().count("\n") >= 3:
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert killed is not None, "no worker was caught running a task: nothing was tested"
    assert run.returncode == 0, stderr[-3000:]
    ids = _ids(out)
    assert len(ids) == 60 and max(ids.values()) == 1, "a window lost or written twice"
    stats = _stats(out)
    assert stats["ray_tasks_lost"] >= 1  # the kill hit a task mid-video...
    assert stats["ray_tasks"] == 7 + stats["ray_tasks_lost"]  # ...whose rest ran as a new task
    assert "60 predicted now, 0 resumed, 0 failed" in stdout


def test_a_ray_address_that_answers_nothing_is_one_line_and_leaves_no_out_dir(
    vllm_server, shared_videos, tmp_path
):
    out = tmp_path / "never"
    r = vara(*_args(shared_videos / "tai_chi.mp4", vllm_server.url, out, "--ray", "foo"))
    assert r.returncode == 2, r.stderr[-2000:]
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert "--ray: no Ray cluster at 'foo'" in line and "ray start --head" in line
    assert "Traceback" not in r.stderr and not out.exists()
