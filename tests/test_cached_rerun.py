"""A re-run whose VLM outputs are all in the caption cache never decodes the video.

The prompt-editing loop (edit the reasoning prompt, re-run) must cost only the answers: no
caption requests and no video decoding. Scripted models stand in for the VLM and LLM here
(a run needs answers in a known order); the cache, the runner and the decoder are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vara.agents.models import ModelPool
from vara.agents.runner import run_clips
from vara.agents.strategies import load_strategy
from vara.errors import ConfigError
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl
from vara.testing import SEMANTIC_TAG as TAG
from vara.testing import ScriptedChatModel, write_test_video
from vara.testing.synth_video import write_vfr_video
from vara.tools import frame_batches, video
from vara.tools.cache import CaptionCache
from vara.tools.reason import time_ref
from vara.tools.windows import make_windows

LABELS = load_labelset("newborn-resuscitation")


def _vlm_reply(strategy: str) -> str:
    return json.dumps({"frames": [TAG] * 4}) if strategy == "semantic-tokens" else "A mask."


def _answer(strategy, plan) -> str:
    ref = time_ref(plan.timestamps_s[0]) if strategy == "semantic-tokens" else "caption:1"
    return json.dumps(
        {
            "evidence": [{"ref": ref, "text": "mask"}],  # as the caption (tags) say
            "labels": ["Ventilation"],
            "explanation": "A mask is held.",
        }
    )


def _run(strategy, path, clips, out, cache, n_vlm):
    config = load_strategy(strategy, ["sampler.n_frames=4", "concurrency=1"])
    plans = [frame_batches.frame_plan(path, c, config.sampler) for c in clips]
    vlm = ScriptedChatModel([_vlm_reply(strategy)] * n_vlm, "vlm-x")
    llm = ScriptedChatModel([_answer(strategy, p) for p in plans], "llm-y")
    summary = run_clips(
        [(str(path), clips)],
        config,
        LABELS,
        out,
        models=ModelPool(vlm=vlm, llm=llm),
        cache=cache,
        progress=False,
    )
    assert not summary.failures and summary.n_predicted == len(clips)
    return summary, vlm


@pytest.mark.parametrize("strategy", ["caption-reason", "semantic-tokens"])
def test_cached_windows_are_not_decoded_and_new_ones_are(strategy, tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "v.mp4", n_frames=100, fps=25.0, codec="h264")
    clips = make_windows(video.probe(path), 2.0, 0.5)  # 3 windows
    cache = CaptionCache(tmp_path / "c.sqlite")
    first, _ = _run(strategy, path, clips[:2], tmp_path / "a", cache, n_vlm=2)
    assert first.stats["caption_requests"] == 2 and not first.stats.get("windows_not_decoded")

    decoded: list[str] = []
    real = frame_batches.iter_frame_batches

    def spy(path, clips, spec, **kwargs):
        clips = list(clips)
        decoded.extend(c.clip_id for c in clips)
        return real(path, clips, spec, **kwargs)

    monkeypatch.setattr(frame_batches, "iter_frame_batches", spy)
    second, vlm = _run(strategy, path, clips, tmp_path / "b", cache, n_vlm=1)
    assert second.stats["windows_not_decoded"] == 2
    assert second.stats["caption_requests"] == 1 and second.stats["caption_cache_hits"] == 2
    assert decoded == [clips[2].clip_id]  # only the window the cache did not hold
    assert len(vlm.requests[0]["messages"][-1].images) == 4
    # Without decoding, the windows carry the same frames and times as the decoded run.
    seen = {
        p["clip_id"]: [(c["frame_idx"], c["timestamps_s"]) for c in p["captions"]]
        for p in read_jsonl(tmp_path / "a" / "predictions.jsonl")
    }
    again = {
        p["clip_id"]: [(c["frame_idx"], c["timestamps_s"]) for c in p["captions"]]
        for p in read_jsonl(tmp_path / "b" / "predictions.jsonl")
    }
    assert {k: again[k] for k in seen} == seen


def test_frame_plan_gives_the_decoded_indices_and_times_also_for_vfr(tmp_path):
    config = load_strategy("caption-reason", ["sampler.n_frames=5"])
    path = write_test_video(tmp_path / "v.mp4", n_frames=90, fps=30.0, codec="h264")
    times = np.cumsum(np.random.default_rng(3).choice([0.02, 0.04, 0.1], size=60))
    vfr = write_vfr_video(tmp_path / "vfr.mp4", timestamps_s=times - times[0], size=(64, 48))
    for p in (path, vfr):  # VFR: the probe's frame times are what decoding reports
        clips = make_windows(video.probe(p), 1.0, 0.5)
        for batch in frame_batches.iter_frame_batches(p, clips, config.sampler):
            assert frame_batches.frame_plan(p, batch.clip, config.sampler) == batch.plan


def _resume(path, clips, config, out, **kwargs) -> None:
    """A re-run into ``out`` with models that must never be asked (it is to be refused)."""
    pool = ModelPool(vlm=ScriptedChatModel([], "vlm-x"), llm=ScriptedChatModel([], "llm-y"))
    run_clips([(str(path), clips)], config, LABELS, out, models=pool, **kwargs)


def test_resuming_with_another_setting_names_the_setting(tmp_path):
    path = write_test_video(tmp_path / "v.mp4", n_frames=50, fps=25.0, codec="h264")
    clips = make_windows(video.probe(path), 2.0, 0.5)[:1]
    _run("caption-reason", path, clips, tmp_path / "a", None, n_vlm=1)
    config = load_strategy("caption-reason", ["sampler.n_frames=2", "concurrency=1"])
    with pytest.raises(
        ConfigError, match=r"holds a run whose settings differ: strategy\.sampler\.n_frames; "
    ):
        _resume(path, clips, config, tmp_path / "a")
    SAME = ["sampler.n_frames=4", "concurrency=1"]  # as _run: only the prompts differ below
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    v1 = load_strategy("caption-reason").prompts["answer"]
    (prompts / "reason.v2.yaml").write_bytes(
        (Path(__file__).resolve().parents[1] / "prompts" / f"{v1}.yaml").read_bytes()
    )
    config = load_strategy("caption-reason", ["prompts.answer=reason.v2", *SAME])
    with pytest.raises(ConfigError, match=r"differ: prompts \(reason\.v1 -> reason\.v2\); "):
        _resume(path, clips, config, tmp_path / "a", prompts_dir=str(prompts))
    (prompts / "reason.v1.yaml").write_text(  # an edit in place of the packaged version
        (prompts / "reason.v2.yaml").read_text().replace("careful", "meticulous")
    )
    config = load_strategy("caption-reason", SAME)
    with pytest.raises(ConfigError, match=r"differ: prompts \(reason\.v1 edited\); "):
        _resume(path, clips, config, tmp_path / "a", prompts_dir=str(prompts))


def test_overlapping_windows_caption_their_shared_frames_once(tmp_path):
    """frames_per_caption=2 of 4 frames, 50% overlap: a window's second group is the next
    window's first; it is captioned once (the group's prompt names its own span)."""
    path = write_test_video(tmp_path / "v.mp4", n_frames=100, fps=25.0, codec="h264")
    clips = make_windows(video.probe(path), 2.0, 0.5)  # 3 windows
    config = load_strategy(
        "caption-reason", ["sampler.n_frames=4", "frames_per_caption=2", "concurrency=3"]
    )
    plans = [frame_batches.frame_plan(path, c, config.sampler) for c in clips]
    groups = {p.frame_idx[i : i + 2] for p in plans for i in (0, 2)}
    assert len(groups) == 4  # of 6 groups, 2 are shared with the next window
    vlm = ScriptedChatModel(["A mask."] * 4, "vlm-x")  # raises if asked a 5th time
    llm = ScriptedChatModel([_answer("caption-reason", p) for p in plans], "llm-y")
    cache = CaptionCache(tmp_path / "c.sqlite")
    summary = run_clips(
        [(str(path), clips)],
        config,
        LABELS,
        tmp_path / "out",
        models=ModelPool(vlm=vlm, llm=llm),
        cache=cache,
        progress=False,
    )
    assert not summary.failures and summary.n_predicted == 3
    assert summary.stats["caption_requests"] == 4 and summary.stats["caption_cache_hits"] == 2
