"""Robustness sweeps: every strategy at every perturbation level, one results.json each,
and `vara compare`'s robustness table and curves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn_check import assert_metrics_match

from vara.agents.sweep import parse_sweep
from vara.cli import main
from vara.errors import ConfigError
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip
from vara.testing.browser import Page

KINETICS = load_labelset("kinetics-sample")


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
def test_clip_and_caption_reason_over_a_mask_sweep_in_one_command(
    vllm_server, shared_videos, tmp_path, capsys
):
    """Issue 14's acceptance: the shared clips, tiny CLIP in-process and the tiny VLM on the
    real server, four mask levels in one command; every results.json recomputes with
    scikit-learn; the report's curves and example frames render in headless Chromium."""
    clip_model = build_tiny_clip(tmp_path / "clip")
    out = tmp_path / "robust"
    levels = "perturb=none,mask:frac=0.1,mask:frac=0.3,mask:frac=0.5"
    args = ["eval", str(shared_videos / "manifest.csv"), "--labels", "kinetics-sample"]
    args += ["--strategy", "clip", "--strategy", "caption-reason", "--sweep", levels]
    args += ["--set", f"scorer.model={clip_model}", "--set", "evidence.check=mark"]
    args += ["--frames", "2", "--vlm-url", vllm_server.url, "--out", str(out), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    results = sorted(out.glob("*/results.json"))
    assert len(results) == 8
    seen = {}
    for path in results:
        assert_metrics_match(path.parent, KINETICS)
        info = json.loads(path.read_text())["run_info"]
        seen[(info["sweep"]["strategy"], info["sweep"]["level"])] = info["pixels"]
    assert seen[("clip", "none")] == "resize(max_side=224)"
    assert seen[("caption-reason", "mask:frac=0.3")].endswith(
        'mask(fill="black",frac=0.3,place="center",seed=0,shape="rect")'
    )
    clip_none = json.loads((out / "clip@none" / "results.json").read_text())["metrics"]
    assert clip_none["confidence"]["n"] == 7  # the scorer's scores are calibrated too
    assert main(["compare", str(out), "--out", str(out / "report")]) == 0
    html = (out / "report" / "report.html").read_text()
    assert "Robustness: macro-F1 per perturbation" in html and "mask:frac=0.5 macro-F1" in html
    assert (out / "report" / "robustness.png").stat().st_size > 1000
    with Page(out / "report" / "report.html", tmp_path / "profile") as page:
        shown = page.evaluate(
            "[...document.querySelectorAll('img')]"
            ".filter(i => i.classList.contains('example') || /robustness/i.test(i.alt))"
            ".map(i => [i.className, i.alt, i.complete && i.naturalWidth > 0])"
        )
        page.evaluate("document.querySelector('.examples').closest('section').scrollIntoView()")
        shot = page.screenshot(tmp_path / "examples.png")
    examples = [alt for cls, alt, ok in shown if cls == "example" and ok]
    assert examples == ["none", "mask:frac=0.1", "mask:frac=0.3", "mask:frac=0.5"]
    assert any(cls != "example" and ok for cls, _, ok in shown)  # the curves' plot loaded
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 20 and (pixels == 0).all(-1).mean() > 0.02  # frames with masks
