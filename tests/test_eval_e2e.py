"""`vara eval` end to end against the real vLLM server: four strategies on the shared clips,
metrics recomputed with scikit-learn from the files on disk, the caption cache across a
prompt edit (counted by the server), SIGKILL + resume, and `vara compare` on the result."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import SERVER_MAX_IMAGES
from sklearn_check import assert_metrics_match

from vara.cli import main
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl
from vara.testing import write_test_video

STRATEGIES = ("caption-reason", "direct", "caption-judge", "semantic-tokens")
KINETICS = load_labelset("kinetics-sample")
# The random test model never quotes its captions: its evidence is marked unverified at
# once instead of re-asked (each re-ask of it risks an answer cut off by its 2048-token
# context); the re-ask path itself is tested with scripted answers (test_graph_routing).
MARK_QUOTES = ["--set", "evidence.check=mark"]
pytestmark = pytest.mark.server


def _images_seen(server) -> float:
    """Images the server has processed so far (vLLM's multimodal cache queries)."""
    text = httpx.get(server.url.removesuffix("/v1") + "/metrics", timeout=10).text
    return sum(
        float(v) for v in re.findall(r"^vllm:mm_cache_queries_total\{.*\} (\S+)$", text, re.M)
    )


@pytest.fixture(scope="module")
def shared_eval(vllm_server, shared_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "shared"
    cache = out.parent / "captions.sqlite"
    args = ["eval", str(shared_videos / "manifest.csv"), "--labels", "kinetics-sample"]
    args += [a for s in STRATEGIES for a in ("--strategy", s)]
    # 4 frames: semantic tokens for 8 frames can outgrow the tiny model's 2048-token context.
    args += ["--frames", "4", "--vlm-url", vllm_server.url, "--cache", str(cache)]
    args += MARK_QUOTES
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    return out, cache


def test_all_four_strategies_complete_on_the_shared_clips(shared_eval):
    out, _ = shared_eval
    for s in STRATEGIES:
        r = json.loads((out / s / "results.json").read_text())
        info = r["run_info"]
        assert info["strategy"] == s and info["dataset"]["n_clips"] == 7
        assert info["counts"]["n_predictions"] == 7 and info["counts"]["n_failures"] == 0
        assert r["metrics"]["coverage"] == 1.0
        assert all(len(p["sha256"]) == 64 for p in info["prompts"])
        assert "torch" in r["meta_info"]["packages"]
        for p in read_jsonl(out / s / "predictions.jsonl"):
            assert len(p["labels"]) == 1 and p["labels"][0] in KINETICS.names
    # caption-judge captions exactly as caption-reason does: every caption came from the cache.
    judge = json.loads((out / "caption-judge" / "results.json").read_text())["run_info"]
    assert judge["counts"]["caption_requests"] == 0 and judge["counts"]["caption_cache_hits"] == 7
    assert judge["counts"]["windows_not_decoded"] == 7  # nor did it decode a video
    scores = [p["scores"] for p in read_jsonl(out / "caption-judge" / "predictions.jsonl")]
    assert all(len(s["probs"]) == len(KINETICS.names) for s in scores)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_metric_matches_a_scikit_learn_recomputation(shared_eval, strategy):
    out, _ = shared_eval
    assert_metrics_match(out / strategy, KINETICS)


def test_editing_only_the_reasoning_prompt_makes_no_caption_requests(
    shared_eval, vllm_server, shared_videos, tmp_path
):
    _, cache = shared_eval
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    v1 = (Path(__file__).resolve().parents[1] / "prompts" / "reason.v1.yaml").read_text()
    (prompts / "reason.v2.yaml").write_text(
        v1.replace("You are a careful annotator", "You are a meticulous annotator")
    )
    before = _images_seen(vllm_server)
    out = tmp_path / "edited"
    code = main(
        [
            "eval",
            str(shared_videos / "manifest.csv"),
            "--labels",
            "kinetics-sample",
            "--strategy",
            "caption-reason",
            "--set",
            "prompts.answer=reason.v2",
            "--prompts-dir",
            str(prompts),
            "--frames",
            "4",
            "--vlm-url",
            vllm_server.url,
            "--cache",
            str(cache),
            *MARK_QUOTES,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    counts = json.loads((out / "caption-reason" / "results.json").read_text())["run_info"]["counts"]
    assert counts["caption_requests"] == 0 and counts["caption_cache_hits"] == 7
    assert counts["windows_not_decoded"] == 7  # and no video was decoded
    assert _images_seen(vllm_server) == before  # the server saw no frame at all
    used = {
        (p["id"], p["version"])
        for r in read_jsonl(out / "caption-reason" / "predictions.jsonl")
        for p in r["prompts"]
    }
    assert ("reason", 2) in used and ("reason", 1) not in used


def test_sigkill_mid_eval_then_rerun_gives_one_prediction_per_window(vllm_server, tmp_path):
    video = write_test_video(tmp_path / "long.mp4", n_frames=500, fps=25.0, codec="h264")
    manifest = tmp_path / "intervals.csv"
    manifest.write_text("video,label,start_s,end_s\nlong.mp4,tai chi,0,20\n")
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "vara.cli",
        "eval",
        str(manifest),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "caption-reason",
        "--frames",
        "4",
        "--concurrency",
        "2",
        "--vlm-url",
        vllm_server.url,
        "--no-cache",
        *MARK_QUOTES,
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = out / "caption-reason" / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if preds.exists() and preds.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "eval finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "caption-reason" / "results.json").exists()
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    n_windows = len(read_jsonl(out / "caption-reason" / "clips.jsonl"))
    ids = [row["clip_id"] for row in read_jsonl(preds)]
    assert n_windows == 19 and len(ids) == len(set(ids)) == n_windows
    assert json.loads((out / "caption-reason" / "results.json").read_text())["metrics"]["n"] == 19
    assert video.exists()


def test_rerunning_a_finished_eval_keeps_its_counts_and_timings(
    vllm_server, shared_videos, tmp_path, capsys
):
    """A re-run resumes with nothing to do: results.json still reports the first session's
    caption requests and wall time (summed over sessions), not the empty re-run's."""
    args = [
        "eval",
        str(shared_videos / "manifest.csv"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "caption-reason",
        "--frames",
        "2",
        "--vlm-url",
        vllm_server.url,
        "--no-cache",
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    results = tmp_path / "out" / "caption-reason" / "results.json"
    assert main(args) == 0
    report = capsys.readouterr().out.split("report: vara ", 1)[1].split()
    assert main(report) == 0 and (tmp_path / "out" / "report" / "report.html").exists()
    first = json.loads(results.read_text())["run_info"]
    assert first["counts"]["caption_requests"] == 7 and first["timings"]["sessions"] == 1
    assert main(args) == 0
    again = json.loads(results.read_text())["run_info"]
    assert again["counts"]["caption_requests"] == 7
    assert again["timings"]["sessions"] == 2 and again["started"] == first["started"]
    assert again["timings"]["wall_s"] >= first["timings"]["wall_s"] > 0
    assert again["timings"]["clips_per_s"] == round(7 / again["timings"]["wall_s"], 4)
    run = json.loads((results.parent / "run.json").read_text())["run_info"]
    assert [s["n_predicted"] for s in run["sessions"]] == [7, 0]
    assert run["stats"].get("caption_requests", 0) == 0  # the session's own figures stay too


def test_an_eval_where_every_window_fails_reports_where(
    vllm_server, shared_videos, tmp_path, capsys
):
    """More frames than the server takes: every window fails before the model answers. The
    run still ends with results (coverage 0, no hallucination rate: nothing was answered),
    exit status 1, and stderr names failures.jsonl."""
    manifest = tmp_path / "two.csv"
    manifest.write_text(
        f"path,label\n{shared_videos / 'arm_wrestling.mp4'},arm wrestling\n"
        f"{shared_videos / 'cleaning_pool.mp4'},cleaning pool\n"
    )
    frames = str(SERVER_MAX_IMAGES + 1)
    args = [
        "eval",
        str(manifest),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "direct",
        "--frames",
        frames,
        "--vlm-url",
        vllm_server.url,
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert re.search(r"^direct .* - +2$", out, re.M), out  # halluc. "-", 2 failed
    failures = tmp_path / "out" / "direct" / "failures.jsonl"
    assert str(failures) in err and len(read_jsonl(failures)) == 2
    m = json.loads((failures.parent / "results.json").read_text())["metrics"]
    assert m["coverage"] == 0.0 and m["hallucination_rate"] is None


def test_a_bad_manifest_row_is_one_line_naming_it(tmp_path, shared_videos):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video,labels\n{shared_videos / 'tai_chi.mp4'},tai chii\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vara.cli",
            "eval",
            str(manifest),
            "--labels",
            "kinetics-sample",
            "--out",
            str(tmp_path / "o"),
            "--vlm-url",
            "http://127.0.0.1:9/v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "m.csv" in line and "line 2" in line and "tai chi" in line, line


def test_compare_writes_a_report_of_the_four_strategies(shared_eval, tmp_path):
    out, _ = shared_eval
    assert main(["compare", str(out), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    for s in STRATEGIES:
        assert s in html
    assert "data:image/png;base64," in html and "<script" not in html
    assert (tmp_path / "report" / "report.md").exists()
