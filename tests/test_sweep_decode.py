"""A robustness sweep decodes each window once: its variants of one strategy share one decoding
pass, each perturbing the same resized frames, and predict exactly what separate runs with the
same --perturb predict (agents/frame_share.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from vara.agents.frames import FrameStore
from vara.agents.strategies import load_strategy
from vara.cli import main
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip, write_test_video
from vara.tools import frame_batches
from vara.tools.datasets import load_dataset
from vara.tools.pixel_steps import StepKind
from vara.tools.pixels import STEPS, pixel_spec
from vara.types import Clip, SamplerSpec

LEVELS = ("none", "mask:frac=0.1", "mask:frac=0.3,shape=ellipse", "noise:8+mask:frac=0.5")
SLUGS = ("none", "mask-frac0.1", "mask-frac0.3_shapeellipse", "noise-8+mask-frac0.5")
N_WINDOWS = 6  # two 4-s videos in 2-s windows, 50% overlap: 3 each


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep-decode")
    clip_model = build_tiny_clip(d / "clip")
    rows = ["video,label,start_s,end_s"]
    for seed, (name, label) in enumerate((("a.mp4", "tai chi"), ("b.mp4", "yoga"))):
        write_test_video(d / name, n_frames=100, fps=25.0, size=(320, 240), seed=seed)
        rows.append(f"{name},{label},0,4")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    args = ["eval", str(d / "m.csv"), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={clip_model}", "--frames", "4", "--max-side", "128"]
    return d, [*args, "--no-progress"]


def _run_info(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["run_info"]


def _predictions(out: Path) -> dict[str, dict]:
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return {r["clip_id"]: r for r in map(json.loads, lines)}


def _sweep(setup, out: Path) -> None:
    _, args = setup
    assert main([*args, "--sweep", "perturb=" + ",".join(LEVELS), "--out", str(out)]) == 0


def test_a_four_level_sweep_decodes_each_window_once_and_predicts_as_separate_runs(setup, capsys):
    d, args = setup
    _sweep(setup, d / "sweep")
    infos = {slug: _run_info(d / "sweep" / f"clip@{slug}") for slug in SLUGS}
    decoded = sum(i["stats"].get("windows_decoded", 0) for i in infos.values())
    assert decoded == N_WINDOWS  # not 4 x N_WINDOWS
    for slug in SLUGS[1:]:  # the others perturbed the frames the first variant's pass decoded
        assert infos[slug]["stats"]["windows_decode_shared"] == N_WINDOWS
    for level, slug in zip(LEVELS, SLUGS, strict=True):
        alone = d / f"alone-{slug}"
        perturb = [] if level == "none" else [x for s in level.split("+") for x in ("--perturb", s)]
        assert main([*args, *perturb, "--out", str(alone)]) == 0, capsys.readouterr().err
        info = _run_info(alone / "clip")
        assert info["stats"]["windows_decoded"] == N_WINDOWS  # a run of its own decodes all
        assert info["fingerprint"]["pixels"] == infos[slug]["fingerprint"]["pixels"]
        shared, own = _predictions(d / "sweep" / f"clip@{slug}"), _predictions(alone / "clip")
        assert shared.keys() == own.keys() and len(own) == N_WINDOWS
        for clip_id, pred in own.items():
            assert shared[clip_id]["labels"] == pred["labels"]
            assert shared[clip_id]["pixels"] == pred["pixels"]
            got, want = shared[clip_id]["scores"]["probs"], pred["scores"]["probs"]
            assert np.allclose(got, want, atol=1e-6)
    # the levels really differ: a mask changes what CLIP scores
    none, masked = (_predictions(d / "sweep" / f"clip@{s}") for s in (SLUGS[0], SLUGS[3]))
    assert any(
        not np.allclose(none[k]["scores"]["probs"], masked[k]["scores"]["probs"]) for k in none
    )


def test_a_resumed_sweep_decodes_only_the_windows_still_missing(setup):
    d, _ = setup
    out = d / "resumed"
    _sweep(setup, out)
    before = {s: _predictions(out / f"clip@{s}") for s in SLUGS}
    cut = out / f"clip@{SLUGS[2]}" / "predictions.jsonl"  # as if it crashed 2 windows short
    kept = cut.read_text().splitlines()[:-2]
    cut.write_text("\n".join(kept) + "\n")
    _sweep(setup, out)
    infos = {s: _run_info(out / f"clip@{s}") for s in SLUGS}
    assert sum(i["stats"].get("windows_decoded", 0) for i in infos.values()) == 2
    assert [i["n_predicted_this_run"] for i in infos.values()] == [0, 0, 2, 0]
    assert all(i["status"] == "complete" for i in infos.values())
    after = {s: _predictions(out / f"clip@{s}") for s in SLUGS}
    for s in SLUGS:
        assert after[s].keys() == before[s].keys()
        for k, pred in before[s].items():
            assert np.allclose(after[s][k]["scores"]["probs"], pred["scores"]["probs"], atol=1e-6)
        results = json.loads((out / f"clip@{s}" / "results.json").read_text())
        assert results["run_info"]["counts"]["n_predictions"] == N_WINDOWS


def _clip(path: Path) -> Clip:
    return Clip("a:0-2", str(path), 0.0, 2.0)


def test_perturbing_shared_frames_equals_decoding_under_the_whole_spec(setup):
    d, _ = setup
    path, sampler = str(d / "a.mp4"), SamplerSpec(n_frames=4, max_side=128)
    spec = pixel_spec(128, ["noise:8", "mask:frac=0.3,place=random"])
    whole, variant = FrameStore(sampler, spec), FrameStore(sampler, spec)
    plain = FrameStore(sampler)
    source = FrameStore.shared([plain, variant])
    assert source.pixels == plain.pixels  # the resize alone: what both start from
    [decoded] = source.stream(path, [_clip(d / "a.mp4")], on_error=None)
    [direct] = whole.stream(path, [_clip(d / "a.mp4")], on_error=None)
    adopted = variant.adopt(decoded, path)
    assert np.array_equal(adopted.frames, direct.frames)
    assert adopted.pixels == spec and adopted.plan.pixels.canonical == spec.canonical
    assert plain.adopt(decoded, path) is decoded
    assert not np.array_equal(decoded.frames, adopted.frames)  # the shared frames untouched
    assert FrameStore.shared([whole, variant]) is whole  # same pixels: decoded as they are


def test_a_step_writing_into_shared_frames_fails_loudly(setup, monkeypatch):
    d, _ = setup

    def in_place(frame, where):
        frame[:] = 0
        return frame

    monkeypatch.setitem(STEPS, "zero-in-place", StepKind("zero-in-place", in_place))
    path, sampler = str(d / "a.mp4"), SamplerSpec(n_frames=2, max_side=128)
    [batch] = frame_batches.iter_frame_batches(path, [_clip(d / "a.mp4")], sampler)
    variant = FrameStore(sampler, pixel_spec(128, ["zero-in-place"]))
    with pytest.raises(ValueError, match="read-only"):
        variant.adopt(batch, path)
    assert batch.frames.any()


def test_runs_that_sample_differently_do_not_share_frames():
    a = FrameStore(SamplerSpec(n_frames=4, max_side=128))
    for other in (SamplerSpec(n_frames=8, max_side=128), SamplerSpec(n_frames=4, max_side=224)):
        b = FrameStore(other, pixel_spec(other.max_side, ["mask:frac=0.3"]))
        assert not a.shares_decoding(b)
        with pytest.raises(ValueError, match="sample or resize differently"):
            FrameStore.shared([a, b])


def test_strategies_outside_a_sweep_run_one_after_another_each_decoding(setup):
    """Strategies that caption alike reuse each other's captions only if they run in turn."""
    d, _ = setup
    labelset = load_labelset("kinetics-sample")
    dataset = load_dataset(d / "m.csv", labelset)
    clip_model = d / "clip"
    first = load_strategy("clip", [f"scorer.model={clip_model}", "sampler.n_frames=2"])
    second = dataclasses.replace(first, name="clip-again")
    evaluate(dataset, labelset, [first, second], d / "apart", progress=False)
    for name in ("clip", "clip-again"):
        assert _run_info(d / "apart" / name)["stats"]["windows_decoded"] == N_WINDOWS
