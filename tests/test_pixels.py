"""The pixel pipeline: one PixelSpec, applied in one place, named by every cache key, resume
fingerprint and prediction. Changing any pixel setting captions afresh; the same setting hits.

The caption-cache test runs caption-reason against the real vLLM server; a toy step
(``invert``) is registered the way a new perturbation would be.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from vara.agents.models import ModelPool
from vara.agents.runner import run_clips
from vara.agents.strategies import load_strategy
from vara.errors import ConfigError
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl
from vara.testing import write_test_video
from vara.tools import pixels
from vara.tools.cache import CaptionCache
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.pixels import STEPS, StepKind, parse_step, pixel_spec, register_step
from vara.tools.video import probe
from vara.tools.vlm import OpenAIServer
from vara.tools.windows import make_windows
from vara.types import PixelSpec, PixelStep, SamplerSpec


def _invert(frame: np.ndarray, where: pixels.Where, *, amount: int) -> np.ndarray:
    return (amount - frame.astype(np.int16)).clip(0, 255).astype(np.uint8)


@pytest.fixture
def invert():
    kind = register_step(StepKind("invert", _invert, {"amount": 255}, "amount - each value"))
    yield kind
    del STEPS["invert"]


def test_a_spec_is_canonical_and_its_hash_names_it(invert):
    spec = pixel_spec(448, ["invert"])
    assert spec.canonical == "resize(max_side=448)|invert(amount=255)"
    assert spec == pixel_spec(448, ["invert:amount=255"])  # defaults are filled in
    assert spec.sha256 != pixel_spec(448, ["invert:amount=200"]).sha256
    assert spec.sha256 != pixel_spec(224, ["invert"]).sha256
    assert PixelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert PixelStep("s", (("b", 1), ("a", 2))) == PixelStep("s", (("a", 2), ("b", 1)))


def test_bad_steps_are_named(invert):
    with pytest.raises(ConfigError, match=r"unknown step 'invrt' \(did you mean 'invert'\?\)"):
        parse_step("invrt")
    with pytest.raises(ConfigError, match=r"'amont=3' .* \(did you mean 'amount'\?\)"):
        parse_step("invert:amont=3")
    with pytest.raises(ConfigError, match="resize is set by sampler.max_side"):
        pixel_spec(448, ["resize:max_side=2"])
    with pytest.raises(ValueError, match="the first step must be resize"):
        PixelSpec((PixelStep("invert", (("amount", 255),)),))


def test_steps_apply_in_the_decoder_after_the_resize(tmp_path, invert):
    path = write_test_video(tmp_path / "v.mp4", n_frames=50, fps=25.0)
    clips = make_windows(probe(path), 2.0, 0.5)
    sampler = SamplerSpec(n_frames=3, max_side=64)
    plain = list(iter_frame_batches(path, clips, sampler))
    inverted = list(iter_frame_batches(path, clips, sampler, pixels=pixel_spec(64, ["invert"])))
    for a, b in zip(plain, inverted, strict=True):
        assert a.frames.shape[1:3] == (48, 64)  # resized first, then inverted
        assert np.array_equal(b.frames, 255 - a.frames)
        assert b.plan.pixels.canonical == "resize(max_side=64)|invert(amount=255)"


class Seen:
    """The served VLM, recording the images each caption request sent."""

    def __init__(self, model):
        self.model, self.model_id, self.images = model, model.model_id, []
        self.cache_identity = model.cache_identity

    def complete(self, messages, **kwargs):
        self.images.extend(m.images for m in messages if m.images)
        return self.model.complete(messages, **kwargs)

    def close(self) -> None:
        pass


FAST = ["sampler.n_frames=2", "generation.caption_max_tokens=12", "concurrency=2"]


def test_any_pixel_change_captions_afresh_and_the_same_pixels_hit(vllm_server, tmp_path, invert):
    path = write_test_video(tmp_path / "v.mp4", n_frames=100, fps=25.0, codec="h264")
    clips = make_windows(probe(path), 2.0, 0.5)
    cache = CaptionCache(tmp_path / "captions.sqlite")
    served = OpenAIServer(vllm_server.url, max_retries=1)
    labels = load_labelset("kinetics-sample")

    def run(name: str, *overrides: str):
        strategy = load_strategy("caption-reason", [*FAST, *overrides])
        seen = Seen(served)
        out = tmp_path / name
        pool = ModelPool(vlm=seen, llm=served)
        groups = [(str(path), clips)]
        summary = run_clips(groups, strategy, labels, out, models=pool, cache=cache, progress=False)
        preds = read_jsonl(out / "predictions.jsonl")
        fingerprint = json.loads((out / "run.json").read_text())["run_info"]["fingerprint"]
        return summary.stats, seen, preds, fingerprint

    n = len(clips)
    first, seen, preds, fp = run("first", "sampler.max_side=64")
    assert first["caption_requests"] == n and not first.get("caption_cache_hits")
    spec = pixel_spec(64)
    assert {p["pixels"] for p in preds} == {spec.sha256} and fp["pixels"] == spec.canonical
    plain = seen.images

    same, seen, _, _ = run("same", "sampler.max_side=64")
    assert not same.get("caption_requests") and same["caption_cache_hits"] == n
    assert same["windows_not_decoded"] == n and seen.images == []

    changed = {
        "smaller": (["sampler.max_side=32"], pixel_spec(32)),
        "inverted": (
            ["sampler.max_side=64", "pixels.perturb=[invert]"],
            pixel_spec(64, ["invert"]),
        ),
        "half-inverted": (
            ["sampler.max_side=64", "pixels.perturb=['invert:amount=128']"],
            pixel_spec(64, ["invert:amount=128"]),
        ),
    }
    for name, (overrides, expected) in changed.items():
        stats, seen, preds, fp = run(name, *overrides)
        assert stats["caption_requests"] == n, name
        assert not stats.get("caption_cache_hits") and not stats.get("windows_not_decoded")
        assert {p["pixels"] for p in preds} == {expected.sha256}
        assert fp["pixels"] == expected.canonical
        if name == "inverted":  # the VLM saw the inverted pixels of the same frames
            assert _frames(seen.images) == _frames([[255 - f for f in fs] for fs in plain])

    # A masked run: every caption asked afresh, of frames half black; its re-run asks none.
    masked = ["sampler.max_side=64", "pixels.perturb=['mask:frac=0.5,shape=ellipse']"]
    stats, seen, _, _ = run("masked", *masked)
    assert stats["caption_requests"] == n and not stats.get("caption_cache_hits")
    sent = [f for frames in seen.images for f in frames]
    assert sent and all((f == 0).all(axis=-1).mean() >= 0.49 for f in sent)  # + the video's own
    assert all((f[f.shape[0] // 2, f.shape[1] // 2] == 0).all() for f in sent)  # centred
    again, seen, _, _ = run("masked-again", *masked)
    assert not again.get("caption_requests") and again["caption_cache_hits"] == n
    served.close()


def _frames(requests) -> list[bytes]:
    """Every frame sent, in a request-order-free form (windows run concurrently)."""
    return sorted(f.tobytes() for frames in requests for f in frames)
