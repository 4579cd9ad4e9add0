"""Robustness sweeps: every strategy at every perturbation level, one results.json each,
and `vara compare`'s robustness table and curves."""

from __future__ import annotations

import json

import pytest

from vara.agents.sweep import parse_sweep
from vara.cli import main
from vara.errors import ConfigError
from vara.testing import build_tiny_clip, write_test_video


def test_levels_keep_their_own_parameters():
    levels = parse_sweep("perturb=none,mask:frac=0.3,shape=ellipse,blur:1+noise:5,mask:frac=0.5")
    assert [lv.text for lv in levels] == [
        "none",
        "mask:frac=0.3,shape=ellipse",
        "blur:1+noise:5",
        "mask:frac=0.5",
    ]
    assert levels[2].steps == ("blur:1", "noise:5")
    assert [lv.slug for lv in levels] == [
        "none",
        "mask-frac0.3_shapeellipse",
        "blur-1+noise-5",
        "mask-frac0.5",
    ]
    for bad, message in [
        ("masks=none", "expected perturb=LEVEL"),
        ("perturb=none,mask:frack=0.3", "did you mean 'frac'"),
        ("perturb=mask:frac=0.3,mask:frac=0.3", "given twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_sweep(bad)


@pytest.mark.server
def test_clip_and_caption_reason_over_a_mask_sweep_in_one_command(vllm_server, tmp_path, capsys):
    clip_model = build_tiny_clip(tmp_path / "clip")
    for seed, name in enumerate(("a.mp4", "b.mp4")):
        write_test_video(tmp_path / name, n_frames=75, fps=25.0, seed=seed, codec="h264")
    (tmp_path / "clips.csv").write_text("video,labels\na.mp4,tai chi\nb.mp4,yoga\n")
    out = tmp_path / "robust"
    levels = "perturb=none,mask:frac=0.1,mask:frac=0.3,mask:frac=0.5"
    args = ["eval", str(tmp_path / "clips.csv"), "--labels", "kinetics-sample"]
    args += ["--strategy", "clip", "--strategy", "caption-reason", "--sweep", levels]
    args += ["--set", f"scorer.model={clip_model}", "--set", "evidence.check=mark"]
    args += ["--frames", "2", "--vlm-url", vllm_server.url, "--out", str(out), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    results = sorted(out.glob("*/results.json"))
    assert len(results) == 8
    seen = {}
    for path in results:
        info = json.loads(path.read_text())["run_info"]
        seen[(info["sweep"]["strategy"], info["sweep"]["level"])] = info["pixels"]
    assert seen[("clip", "none")] == "resize(max_side=224)"
    assert seen[("caption-reason", "mask:frac=0.3")].endswith(
        'mask(fill="black",frac=0.3,place="center",seed=0,shape="rect")'
    )
    clip_none = json.loads((out / "clip@none" / "results.json").read_text())["metrics"]
    assert clip_none["confidence"]["n"] == 2  # the scorer's scores are calibrated too
    assert main(["compare", str(out), "--out", str(out / "report")]) == 0
    html = (out / "report" / "report.html").read_text()
    assert "Robustness: macro-F1 per perturbation" in html and "mask:frac=0.5 macro-F1" in html
    assert (out / "report" / "robustness.png").stat().st_size > 1000
