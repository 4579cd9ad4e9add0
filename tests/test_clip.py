"""The clip scorer on tiny random CLIP and SigLIP checkpoints built offline: batching, pooling,
the template ensemble, the heads, and `vara eval --strategy clip` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vara.agents.strategies import load_strategy
from vara.cli import main
from vara.prompts.loader import load_labelset, load_prompt
from vara.testing import build_tiny_clip, write_test_video
from vara.tools.clip_zero_shot import ClipScorer, ensemble_texts
from vara.tools.scorer import DeferredScorer, check
from vara.types import Clip, FrameBatch, SamplerSpec

KINETICS = load_labelset("kinetics-sample")


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny(request, tmp_path_factory):
    return request.param, build_tiny_clip(
        tmp_path_factory.mktemp(request.param), kind=request.param
    )


def _scorer(path, *overrides: str) -> ClipScorer:
    strategy = load_strategy("clip", [f"scorer.model={path}", *overrides])
    check(strategy.scorer, KINETICS, strategy.sampler)
    return DeferredScorer(strategy.scorer, KINETICS).load()


def _batches(n_windows: int, n_frames: int = 8, seed: int = 0) -> list[FrameBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for w in range(n_windows):
        frames = rng.integers(0, 255, (n_frames, 40, 56, 3), dtype=np.uint8)
        clip = Clip(f"v:{w}", "v.mp4", float(w), w + 2.0)
        times = tuple(w + i / 4 for i in range(n_frames))
        out.append(FrameBatch(clip, frames, tuple(range(n_frames)), times, SamplerSpec(n_frames)))
    return out


def test_scores_are_probabilities_of_the_label_set_with_provenance(tiny):
    kind, path = tiny
    scorer = _scorer(path)
    [scores] = scorer.predict(_batches(1))
    assert scores.labels == KINETICS.names and scores.adapter_id == scorer.model_id
    probs = np.array(scores.probs)
    assert ((0 <= probs) & (probs <= 1)).all()
    if kind == "clip":  # softmax over the classes; SigLIP's sigmoids are independent
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    prompt = load_prompt("clip.v1")
    assert scorer.model_id.endswith(f"+clip.v1:{prompt.sha256[:12]}")
    assert scores.thresholds == (0.0,) * len(KINETICS.names)  # single-label: the top class


def test_frames_are_encoded_in_batches_across_windows(tiny, monkeypatch):
    _, path = tiny
    scorer = _scorer(path, "scorer.batch_size=16")
    calls = []
    real = scorer._model.get_image_features
    monkeypatch.setattr(
        scorer._model, "get_image_features", lambda **kw: calls.append(1) or real(**kw)
    )
    scorer.predict(_batches(3))  # 24 frames
    assert len(calls) == 2
    calls.clear()
    _scorer(path, "scorer.batch_size=4")  # its own model: this spy saw none of it
    assert not calls


def test_windows_of_concurrent_callers_share_forward_passes(tiny, monkeypatch):
    import time
    from concurrent.futures import ThreadPoolExecutor

    _, path = tiny
    scorer = _scorer(path, "scorer.batch_size=32")
    windows = _batches(3)
    alone = [scorer.predict([w])[0].probs for w in windows]
    calls = []
    real = scorer._model.get_image_features
    monkeypatch.setattr(
        scorer._model, "get_image_features", lambda **kw: calls.append(1) or real(**kw)
    )
    with ThreadPoolExecutor(3) as pool:
        with scorer._batcher._model_lock:  # the model is busy: the callers queue up
            futures = [pool.submit(scorer.predict, [w]) for w in windows]
            while len(scorer._batcher._queue) < 3:
                time.sleep(0.01)
        got = [f.result()[0].probs for f in futures]
    assert len(calls) == 1  # 24 frames of 3 callers, one forward
    assert np.allclose(got, alone, atol=1e-5)


def test_mean_pooling_and_the_ensemble_are_what_they_say(tiny):
    kind, path = tiny
    scorer = _scorer(path)
    batch = _batches(1)[0]
    model, proc = scorer._model, scorer._processor
    with torch.no_grad():
        frames = model.get_image_features(**proc(images=list(batch.frames), return_tensors="pt"))
        frames = frames.pooler_output
        frames = frames / frames.norm(dim=-1, keepdim=True)
        window = frames.mean(0)
        window = window / window.norm()
        texts = ensemble_texts(load_prompt("clip.v1"), KINETICS)
        classes = []
        for group in texts:
            pad = "max_length" if kind == "siglip" else True
            tok = proc(text=group, padding=pad, truncation=True, return_tensors="pt")
            e = model.get_text_features(**tok).pooler_output
            m = (e / e.norm(dim=-1, keepdim=True)).mean(0)
            classes.append(m / m.norm())
        logits = model.logit_scale.exp() * window @ torch.stack(classes).T
        if kind == "siglip":
            expected = torch.sigmoid(logits + model.logit_bias)
        else:
            expected = torch.softmax(logits, -1)
    [scores] = scorer.predict([batch])
    assert np.allclose(scores.probs, expected.numpy(), atol=1e-5)
    assert len(texts[2]) == 5  # ApplyEyeMakeup: 3 templates, its description, 1 synonym
    vote = _scorer(path, "scorer.pool=vote").predict([batch])[0]
    assert not np.allclose(vote.probs, scores.probs)


def test_vara_eval_with_the_clip_strategy(tiny, tmp_path, capsys):
    kind, path = tiny
    for seed, name in enumerate(("a.mp4", "b.mp4")):
        write_test_video(tmp_path / name, n_frames=75, fps=25.0, seed=seed)
    (tmp_path / "clips.csv").write_text("video,labels\na.mp4,tai chi\nb.mp4,yoga\n")
    out = tmp_path / "out"
    args = ["eval", str(tmp_path / "clips.csv"), "--labels", "kinetics-sample"]
    args += ["--strategy", "clip", "--set", f"scorer.model={path}", "--frames", "4"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    results = json.loads((out / "clip" / "results.json").read_text())
    assert results["run_info"]["models"]["scorer"].startswith(f"clip:{path.name}@")
    assert results["run_info"]["counts"]["n_predictions"] == 2
    assert results["metrics"]["hallucination_rate"] is None  # no language model answered


def test_a_gpu_asked_for_where_there_is_none_is_one_line_naming_the_setting(tiny):
    from vara.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    _, path = tiny
    with pytest.raises(ConfigError, match=r"scorer.device='cuda' but no CUDA device .*use cpu"):
        _scorer(path, "scorer.device=cuda")
