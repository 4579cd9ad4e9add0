"""Learned class-specific noise (`vara finetune clip_noise`, scorer kind clip-noise) on a tiny
random CLIP: it learns a synthetic two-class task whose classes differ visibly, the run
reloads bit-identically, zero noise is zero-shot CLIP, and `vara eval` runs it beside `clip`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import vara

from vara.cli import main as cli
from vara.errors import ConfigError
from vara.finetune.clip_noise import MaskedEncode, RobustSpec
from vara.finetune.data import cache_frames
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip
from vara.testing.synth_classes import write_two_class_set
from vara.tools.classifier import load_classifier
from vara.tools.clip_noise import noise_region
from vara.tools.datasets import load_dataset
from vara.tools.scorer import check
from vara.types import Clip, FrameBatch, SamplerSpec

EPS = 0.25


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-class")
    manifest, labels = write_two_class_set(root / "videos")
    return root, manifest, labels, build_tiny_clip(root / "tiny-clip")


def _overrides(synth, out, *more: str) -> list[str]:
    root, manifest, labels, clip = synth
    val = ",".join(p.name for p in sorted((root / "videos").glob("val_*.avi")))
    return [
        f"data.manifest={manifest}",
        f"data.labels={labels}",
        f"model.checkpoint={clip}",
        f"out={out}",
        f"noise.eps={EPS}",
        "train.lr=0.05",
        "train.epochs=12",
        f"split.val_videos=[{val}]",
        f"data.frames_dir={root / 'frames'}",
        *more,
    ]


@pytest.fixture(scope="module")
def noise_run(synth):
    root = synth[0]
    assert cli(["finetune", "clip_noise", *_overrides(synth, root / "run"), "--quiet"]) == 0
    return root / "run"


def _val_frames(run):
    cfg = yaml.safe_load((run / "config.yaml").read_text())["data"]
    ds = load_dataset(run / "val.jsonl", load_labelset(cfg["labels"]))
    sampler = SamplerSpec(n_frames=cfg["n_frames"], max_side=cfg["max_side"])
    return [
        np.load(p) for p in cache_frames(ds.clips, sampler, Path(cfg["frames_dir"]), progress=False)
    ]


def test_noise_learns_the_visible_task_that_zero_shot_clip_does_not(noise_run):
    card = json.loads((noise_run / "run_card.json").read_text())
    epochs = card["epochs"]
    assert epochs[-1]["train_loss"] < 0.8 * epochs[0]["train_loss"]
    assert epochs[-1]["val_loss"] < 0.8 * epochs[0]["val_loss"]
    assert card["final"]["val_macro_f1"] >= 0.99  # 4 held-out videos, 2 per class
    assert card["trainable_parameters"] == 2 * 3 * 32 * 32  # a noise per class, CLIP frozen
    assert 0 < card["noise"]["max_abs"] <= EPS
    info = json.loads((noise_run / "classifier.json").read_text())
    assert info["kind"] == "clip-noise" and info["instruction"] == "clip.v1"
    assert (noise_run / "noise.safetensors").is_file() and not (noise_run / "frames").exists()


def test_reload_gives_bit_identical_scores(noise_run):
    clf = load_classifier(noise_run, batch_size=3)  # other batching than validation's
    got = clf.logits(_val_frames(noise_run))
    want = np.load(noise_run / "val_logits.npy")
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_zero_noise_is_zero_shot_clip(noise_run, synth):
    """The clip-noise model with its noise set to zero scores as the clip scorer does."""
    from vara.agents.strategies import load_strategy
    from vara.tools.scorer import DeferredScorer

    labels = load_labelset(synth[2])
    clf = load_classifier(noise_run)
    with torch.no_grad():
        clf._model.w.zero_()
    frames = _val_frames(noise_run)
    logits = clf.logits(frames)
    noised = torch.softmax(torch.as_tensor(logits), -1).numpy()
    strategy = load_strategy("clip", [f"scorer.model={synth[3]}"])
    check(strategy.scorer, labels, strategy.sampler)
    scorer = DeferredScorer(strategy.scorer, labels).load()
    sampler = SamplerSpec(n_frames=8)
    batches = [
        FrameBatch(
            Clip(f"v:{i}", "v.avi", 0.0, 2.0), f, tuple(range(len(f))), (0.0,) * len(f), sampler
        )
        for i, f in enumerate(frames)
    ]
    zero_shot = np.array([s.probs for s in scorer.predict(batches)])
    assert np.allclose(noised, zero_shot, atol=1e-5)


def test_eval_beside_zero_shot_clip(noise_run, synth, tmp_path):
    root, _, labels, clip = synth
    out = tmp_path / "eval"
    r = vara(
        "eval",
        str(noise_run / "val.jsonl"),
        "--labels",
        str(labels),
        "--strategy",
        "clip",
        "--strategy",
        "clip-noise",
        "--set",
        f"scorer.model={clip}",
        "--set",
        f"scorer.run_dir={noise_run}",
        "--out",
        str(out),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    got = {s: json.loads((out / s / "results.json").read_text()) for s in ("clip", "clip-noise")}
    assert got["clip-noise"]["metrics"]["exact_match"] == 1.0
    assert got["clip"]["metrics"]["n"] == got["clip-noise"]["metrics"]["n"] == 4
    # the zero-shot figure is whatever the random CLIP gives; both are reported
    print({s: r["metrics"]["exact_match"] for s, r in got.items()})
    want = np.load(noise_run / "val_logits.npy")
    preds = [json.loads(x) for x in (out / "clip-noise" / "predictions.jsonl").open()]
    probs = np.exp(want - want.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    val = [json.loads(line)["video"] for line in (noise_run / "val.jsonl").open()]
    for p in preds:  # the same windows, frames and noise as training's validation pass
        assert p["scores"]["probs"] == pytest.approx(probs[val.index(p["video"])], abs=2e-6)


def test_clip_noise_strategy_refuses_another_kind_of_run(tmp_path, synth):
    from vara.agents.strategies import load_strategy

    run = tmp_path / "tsf"
    run.mkdir()
    labels = load_labelset(synth[2])
    info = {"kind": "timesformer", "backbone": "x", "labels": list(labels.names)}
    (run / "classifier.json").write_text(json.dumps({**info, "multi_label": False, "n_frames": 8}))
    strategy = load_strategy("clip-noise", [f"scorer.run_dir={run}"])
    with pytest.raises(ConfigError, match="timesformer run, not a clip-noise one"):
        check(strategy.scorer, labels, strategy.sampler)


def test_border_noise_acts_only_on_the_border():
    region = noise_region("border", 32, 4)
    assert region[:, 4:-4, 4:-4].sum() == 0
    assert region.sum() == 3 * (32 * 32 - 24 * 24)
    with pytest.raises(ValueError, match="border must be in"):
        noise_region("border", 32, 16)


def test_robust_training_masks_the_share_asked():
    frames = np.full((4, 40, 40, 3), 200, np.uint8)
    encode = MaskedEncode(lambda ws: ws, RobustSpec(masks=("mask:frac=0.3",), p=1.0), seed=0)
    [masked] = encode([frames])
    black = (masked == 0).all(axis=-1).mean(axis=(1, 2))
    assert np.allclose(black, 0.3, atol=0.01)
    keep = MaskedEncode(lambda ws: ws, RobustSpec(masks=("mask:frac=0.3",), p=0.0), seed=0)
    assert np.array_equal(keep([frames])[0], frames)
    with pytest.raises(ConfigError, match="bogus"):
        RobustSpec(masks=("bogus:frac=0.3",))


def test_a_bad_noise_setting_names_the_key(synth, tmp_path, capsys):
    args = _overrides(synth, tmp_path / "r", "noise.mode=ring")
    assert cli(["finetune", "clip_noise", *args]) == 2
    assert "noise.mode must be one of ('full', 'border')" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything is written
