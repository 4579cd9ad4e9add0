"""`vara run` end to end: real clips and synthetic H.264, through the real vLLM server and
in-process; bad inputs in a multi-video run; an unreachable server; resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import vara

from vara.cli import main
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl
from vara.testing import write_test_video
from vara.testing.synth_video import damage_middle
from vara.tools.video import probe
from vara.tools.windows import make_windows
from vara.types import Prediction

KINETICS = load_labelset("kinetics-sample")
NEWBORN = load_labelset("newborn-resuscitation")


def _check_outputs(out: Path, videos: list[str], labelset, strategy: str) -> list[Prediction]:
    """Every window predicted once, only known labels, provenance filled, timeline consistent."""
    preds = [Prediction.from_dict(r) for r in read_jsonl(out / "predictions.jsonl")]
    expected = {c.clip_id for v in videos for c in make_windows(probe(v), 2.0, 0.5)}
    assert sorted(p.clip_id for p in preds) == sorted(expected)
    for p in preds:
        assert set(p.labels) <= set(labelset.names), p.labels
        assert p.strategy == strategy and p.explanation and p.evidence
        assert all(len(r.sha256) == 64 for r in p.prompts)
        if not labelset.multi_label:
            assert len(p.labels) == 1
        for group in labelset.exclusive:
            assert len(set(group) & set(p.labels)) <= 1
    timelines = json.loads((out / "timeline.json").read_text())["timelines"]
    assert [t["video"] for t in timelines] == videos
    for t in timelines:
        for e in t["events"]:
            assert e["label"] in labelset.names and e["end_s"] > e["start_s"]
            covering = [
                p
                for p in preds
                if p.video == t["video"] and e["start_s"] <= p.start_s and p.end_s <= e["end_s"]
            ]
            assert sum(e["label"] in p.labels for p in covering) == e["n_windows"]
    run = json.loads((out / "run.json").read_text())
    assert run["run_info"]["n_predictions"] == len(expected)
    assert "torch" in run["meta_info"]["packages"]
    return preds


@pytest.mark.server
def test_served_caption_reason_on_a_shared_clip(vllm_server, shared_videos, tmp_path):
    clip = str(shared_videos / "tai_chi.mp4")
    r = vara(
        "run",
        clip,
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        vllm_server.url,
        "--set",
        "evidence.check=mark",  # a random model cannot quote: its quotes are marked, not re-asked
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    preds = _check_outputs(tmp_path, [clip], KINETICS, "caption-reason")
    assert all(e.verified is not None for p in preds for e in p.evidence)  # checked
    assert all(p.captions and p.models == {"vlm": "tiny-vlm", "llm": "tiny-vlm"} for p in preds)
    assert all(e.ref == "caption:1" for p in preds for e in p.evidence)
    assert json.loads((tmp_path / "run.json").read_text())["run_info"]["status"] == "complete"


@pytest.mark.server
def test_served_direct_multilabel_on_synthetic_long_gop_h264(vllm_server, tmp_path):
    video = str(
        write_test_video(
            tmp_path / "synthetic.mp4",
            n_frames=150,
            fps=25.0,
            size=(320, 240),
            codec="h264",
            gop=250,
            bframes=3,
        )
    )
    out = tmp_path / "out"
    code = main(
        [
            "run",
            video,
            "--labels",
            "newborn-resuscitation",
            "--strategy",
            "direct",
            "--vlm-url",
            vllm_server.url,
            "--frames",
            "6",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    preds = _check_outputs(out, [video], NEWBORN, "direct")
    assert all(e.ref.startswith("t=") for p in preds for e in p.evidence)


def test_in_process_caption_reason_on_a_shared_clip(
    tiny_vlm_dir, shared_videos, tmp_path, monkeypatch, capsys
):
    clip = str(shared_videos / "ApplyEyeMakeup.avi")
    args = [
        "run",
        clip,
        "--labels",
        "kinetics-sample",
        "--vlm-model",
        str(tiny_vlm_dir),
        "--frames",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    code = main(args)
    assert code == 0
    preds = _check_outputs(tmp_path, [clip], KINETICS, "caption-reason")
    assert preds[0].models["vlm"] == str(tiny_vlm_dir)

    # Re-running the finished run, or one the out dir refuses, loads no weights.
    from vara.tools import local_engine

    def no_load(*_a, **_k):
        raise AssertionError("the in-process VLM loaded")

    monkeypatch.setattr(local_engine, "_load", no_load)
    assert main(args) == 0
    assert main([*args, "--frames", "2"]) == 2
    assert "settings differ: strategy.sampler.n_frames" in capsys.readouterr().err


@pytest.mark.server
def test_served_captions_are_not_the_in_process_ones(
    vllm_server, tiny_vlm_dir, shared_videos, tmp_path, monkeypatch
):
    """The quickstart's order: one checkpoint under one name, run in-process, then served.
    Another backend captions afresh; the same backend again re-uses its own captions."""
    from conftest import TINY_VLM_NAME

    (tmp_path / TINY_VLM_NAME).symlink_to(tiny_vlm_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)  # so the in-process model id is the served name, "tiny-vlm"
    clip = str(shared_videos / "ApplyEyeMakeup.avi")
    args = [
        "run",
        clip,
        "--labels",
        "kinetics-sample",
        "--frames",
        "4",
        "--cache",
        str(tmp_path / "c.sqlite"),
        "--no-progress",
    ]

    def stats(out: str) -> dict:
        run_info = json.loads((tmp_path / out / "run.json").read_text())["run_info"]
        assert run_info["fingerprint"]["models"]["vlm"] == TINY_VLM_NAME  # one name, two backends
        return run_info["stats"]

    assert main([*args, "--vlm-model", TINY_VLM_NAME, "--out", "in"]) == 0
    n = stats("in")["caption_requests"]
    assert n > 0
    assert main([*args, "--vlm-url", vllm_server.url, "--out", "served"]) == 0
    assert stats("served")["caption_requests"] == n and not stats("served").get(
        "caption_cache_hits"
    )
    assert main([*args, "--vlm-url", vllm_server.url, "--out", "again"]) == 0
    assert stats("again")["caption_cache_hits"] == n and not stats("again").get("caption_requests")


def _bad_inputs(d: Path) -> dict[str, Path]:
    good = write_test_video(d / "good.mp4", n_frames=100, fps=25.0, codec="h264")
    text = d / "notes.mp4"
    text.write_text("this is a text file, not a video\n")
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    truncated = d / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return {
        "good": good,
        "missing": d / "missing.mp4",
        "text": text,
        "empty": empty,
        "truncated": truncated,
    }


@pytest.mark.server
def test_bad_inputs_are_listed_and_the_good_video_finishes(vllm_server, tmp_path):
    files = _bad_inputs(tmp_path)
    # Damaged mid-file: the windows over the damage fail, those after it are labelled.
    damaged = damage_middle(
        write_test_video(tmp_path / "damaged.mp4", n_frames=250, codec="h264", gop=25, bframes=0)
    )
    out = tmp_path / "out"
    r = vara(
        "run",
        *map(str, [*files.values(), damaged]),
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        vllm_server.url,
        "--frames",
        "4",
        "--out",
        str(out),
        "--no-progress",
    )
    assert r.returncode == 1, r.stderr
    failures = read_jsonl(out / "failures.jsonl")
    lost = [f for f in failures if f["item"].startswith("damaged.mp4:")]
    assert lost and all(f["stage"] == "decode" and "corrupt" in f["error"] for f in lost)
    failures = [f for f in failures if f not in lost]
    failed_items = {Path(f["item"]).name for f in failures}
    assert failed_items == {"missing.mp4", "notes.mp4", "empty.mp4", "truncated.mp4"}
    for f in failures:
        assert Path(f["item"]).name in f["error"] and "\n" not in f["error"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(lines) == 4 + len(lost) and all("Traceback" not in ln for ln in lines)
    windows = make_windows(probe(str(damaged)), 2.0, 0.5)
    labelled = {p["clip_id"] for p in read_jsonl(out / "predictions.jsonl")}
    assert windows[-1].clip_id in labelled  # after the damage
    assert len(labelled) == len(make_windows(probe(str(files["good"])), 2.0, 0.5)) + len(
        windows
    ) - len(lost)


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "truncated"])
def test_each_bad_input_gives_one_line_naming_it(kind, tmp_path):
    path = _bad_inputs(tmp_path)[kind]
    r = vara("probe", str(path))
    # As with `vara run`: no input at all exists is a usage error (2); a bad file is one (1).
    assert r.returncode == (2 if kind == "missing" else 1)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and path.name in lines[0], r.stderr


def test_input_mistakes_are_caught_before_any_work(shared_videos, tmp_path, caplog):
    """A typo'd only video, a video named twice, a damaged predictions.jsonl."""
    from vara.agents.inputs import expand_inputs

    out = tmp_path / "out"
    r = vara(
        "run",
        str(tmp_path / "nosuch.mp4"),
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        "http://127.0.0.1:9/v1",
        "--out",
        str(out),
    )
    assert r.returncode == 2 and "no such video: " in r.stderr and "nosuch.mp4" in r.stderr
    assert not out.exists() and "Traceback" not in r.stderr

    clip = shared_videos / "tai_chi.mp4"
    (tmp_path / "link.mp4").symlink_to(clip)
    twice = expand_inputs([str(clip), str(shared_videos), str(tmp_path / "link.mp4")])
    assert twice.count(str(clip)) == 1 and str(tmp_path / "link.mp4") not in twice
    assert len(twice) == len(expand_inputs([shared_videos]))
    assert "tai_chi.mp4 is named more than once" in caplog.text

    out.mkdir()
    good = json.dumps({"clip_id": "tai_chi.mp4#0"})
    (out / "predictions.jsonl").write_text(f"{good}\n{{not json\n{good}\n")
    r = vara(
        "run",
        str(clip),
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        "http://127.0.0.1:9/v1",
        "--vlm-model",
        "m",
        "--out",
        str(out),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "predictions.jsonl: line 2 is not JSON" in r.stderr and "delete that line" in r.stderr


def test_unreachable_server_is_one_line_naming_the_url(shared_videos, tmp_path):
    url = "http://127.0.0.1:9/v1"
    r = vara(
        "run",
        str(shared_videos / "tai_chi.mp4"),
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        url,
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert r.returncode == 3  # resumable: a server to start, not a command to fix
    assert r.stderr.strip().count("\n") == 0 and url in r.stderr, r.stderr
    assert "re-run the same command to resume" in r.stderr


@pytest.mark.server
def test_too_many_frames_for_the_server_names_the_flag(vllm_server, shared_videos, tmp_path):
    r = vara(
        "run",
        str(shared_videos / "tai_chi.mp4"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "direct",
        "--vlm-url",
        vllm_server.url,
        "--frames",
        "17",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    assert r.returncode == 1
    failures = read_jsonl(tmp_path / "failures.jsonl")
    assert failures and all("--limit-mm-per-prompt" in f["error"] for f in failures)
    assert all(f["error"].startswith("answer: server ") for f in failures)  # the step that failed


@pytest.mark.server
def test_a_context_overflow_names_the_step_and_the_flags(vllm_server, shared_videos, tmp_path):
    """semantic-tokens asks for room to tag 16 frames; the 2048-token context has none."""
    r = vara(
        "run",
        str(shared_videos / "tai_chi.mp4"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "semantic-tokens",
        "--vlm-url",
        vllm_server.url,
        "--frames",
        "16",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--no-cache",
    )
    assert r.returncode == 1
    failures = read_jsonl(tmp_path / "failures.jsonl")
    assert failures and all(f["error"].startswith("tokens: server ") for f in failures), failures
    assert all(
        "(16 images) does not fit" in f["error"] and "--frames" in f["error"] for f in failures
    )


@pytest.mark.server
def test_rerun_resumes_and_a_different_config_is_refused(vllm_server, tmp_path):
    video = str(write_test_video(tmp_path / "v.mp4", n_frames=100, fps=25.0, codec="h264"))
    out = str(tmp_path / "out")
    args = [
        "run",
        video,
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        vllm_server.url,
        "--frames",
        "4",
        "--out",
        out,
        "--no-progress",
    ]
    assert main(args) == 0
    n = len(read_jsonl(Path(out) / "predictions.jsonl"))
    r = vara(*args[:-1])  # with its progress bar, which starts at the resumed windows
    assert r.returncode == 0 and f"0 predicted now, {n} resumed" in r.stdout
    assert f"{n}/{n} [" in r.stderr and f"{n} resumed]" in r.stderr, r.stderr
    assert len(read_jsonl(Path(out) / "predictions.jsonl")) == n
    r = vara(*args[:-1], "--strategy", "direct", "--no-progress")
    # direct asks no LLM, so the models differ too
    assert r.returncode == 2 and "settings differ: models.llm, prompts (" in r.stderr
    assert "-> direct.v1), strategy.graph, strategy.name; use a new --out" in r.stderr
    assert out in r.stderr


def test_a_video_resumes_from_any_path_and_a_namesake_is_labelled(
    vllm_server, tmp_path, monkeypatch, capsys
):
    """Clip ids key on the video's content (videos.json), not on the path it was given by."""
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
    first = write_test_video(tmp_path / "day1" / "cam.mp4", n_frames=75, codec="h264")
    other = write_test_video(tmp_path / "day2" / "cam.mp4", n_frames=50, codec="h264", seed=1)
    out = tmp_path / "out"

    def run(*videos: str) -> str:
        args = [
            "run",
            *videos,
            "--labels",
            "kinetics-sample",
            "--strategy",
            "direct",
            "--vlm-url",
            vllm_server.url,
            "--frames",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
        assert main(args) == 0
        return capsys.readouterr().out

    def events(video: str) -> int:
        timelines = json.loads((out / "timeline.json").read_text())["timelines"]
        return sum(e["n_windows"] for t in timelines if t["video"] == video for e in t["events"])

    n_first = len(make_windows(probe(str(first)), 2.0, 0.5))
    assert f"{n_first} predicted now, 0 resumed" in run(str(first))
    monkeypatch.chdir(tmp_path / "day1")  # the same file by a relative path
    assert f"0 predicted now, {n_first} resumed" in run("cam.mp4")
    assert events("cam.mp4") == n_first  # its timeline, from the earlier session's windows
    monkeypatch.chdir(tmp_path)
    n_other = len(make_windows(probe(str(other)), 2.0, 0.5))
    assert f"{n_other} predicted now, 0 resumed" in run(str(other))  # not the namesake's
    assert f"0 predicted now, {n_first + n_other} resumed" in run(
        str(tmp_path / "day1"), str(tmp_path / "day2")
    )
    preds = read_jsonl(out / "predictions.jsonl")
    assert len(preds) == len({p["clip_id"] for p in preds}) == n_first + n_other
    assert events(str(other)) == n_other


@pytest.mark.server
def test_sigkill_mid_run_then_rerun_gives_one_prediction_per_window(vllm_server, tmp_path):
    import os
    import signal
    import time

    video = str(write_test_video(tmp_path / "long.mp4", n_frames=500, fps=25.0, codec="h264"))
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "vara.cli",
        "run",
        video,
        "--labels",
        "kinetics-sample",
        "--vlm-url",
        vllm_server.url,
        "--frames",
        "4",
        "--concurrency",
        "2",
        "--set",
        "evidence.check=mark",  # a random model cannot quote: marked, not re-asked
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if preds.exists() and preds.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; use a longer video"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(read_jsonl(preds))
    n_windows = len(make_windows(probe(video), 2.0, 0.5))
    assert 3 <= n_before < n_windows
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{n_windows - n_before} predicted now, {n_before} resumed" in r.stdout
    ids = [row["clip_id"] for row in read_jsonl(preds)]
    assert len(ids) == len(set(ids)) == n_windows


@pytest.mark.parametrize(
    "command",
    [
        ["run", "{v}", "--labels", "kinetics-sample"],
        ["eval", "{v}", "--labels", "kinetics-sample"],
        ["compare", "{d}"],
        ["review", "{d}"],
        ["timeline", "{d}", "--format", "vtt"],
    ],
)
def test_an_out_folder_that_is_a_file_is_a_usage_error_naming_it(command, tmp_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder\n")
    args = [a.format(v=tmp_path / "x.mp4", d=tmp_path) for a in command]
    r = vara(*args, "--out", str(taken))
    assert r.returncode == 2, r.stderr
    assert f"argument --out: '{taken}' is a file, not a folder" in r.stderr
    assert "Traceback" not in r.stderr and taken.read_text() == "not a folder\n"


def test_probe_takes_a_folder_as_run_does(shared_videos):
    r = vara("probe", str(shared_videos))
    assert r.returncode == 0, r.stderr
    probed = {Path(json.loads(line)["path"]).name for line in r.stdout.splitlines()}
    assert probed == {p.name for p in shared_videos.iterdir() if p.suffix in (".mp4", ".avi")}
