"""A command refused before any work leaves nothing behind: no out dir, no clips.jsonl, no
run.log (a user re-runs it fixed, into the same --out)."""

from __future__ import annotations

from vara.cli import main
from vara.records import write_jsonl_atomic
from vara.testing import write_test_video

DEAD = ["--vlm-url", "http://127.0.0.1:9/v1", "--vlm-model", "m"]  # never asked


def _manifest(tmp_path):
    write_test_video(tmp_path / "a.mp4", n_frames=50, fps=25.0)
    (tmp_path / "clips.csv").write_text("video,labels\na.mp4,tai chi\n")
    return str(tmp_path / "clips.csv")


def test_a_refused_eval_leaves_no_files(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    out = tmp_path / "out"
    bad_prompt = ["--set", "prompts.answer=reason.v9"]
    args = ["eval", manifest, "--labels", "kinetics-sample", *DEAD, "--out", str(out)]
    assert main([*args, *bad_prompt]) == 2
    assert "reason.v9" in capsys.readouterr().err and not out.exists()
    # a strategy dir holding another dataset: refused, and nothing new is written there
    strategy_dir = out / "caption-reason"
    strategy_dir.mkdir(parents=True)
    write_jsonl_atomic(strategy_dir / "clips.jsonl", [{"clip_id": "other"}])
    assert main(args) == 2
    assert "different dataset" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["caption-reason", "clips.jsonl"]


def test_a_run_refused_for_other_settings_writes_nothing_new(tmp_path, capsys):
    video = write_test_video(tmp_path / "v.mp4", n_frames=50, fps=25.0)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"run_info": {"fingerprint": {"format": 2, "models": {}}}}')
    args = ["run", str(video), "--labels", "kinetics-sample", *DEAD, "--out", str(out)]
    assert main(args) == 2
    assert "settings differ" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]
