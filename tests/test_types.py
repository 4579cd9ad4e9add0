"""Round trips and invariants of the boundary dataclasses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vara.types import (
    Caption,
    ClassScores,
    Clip,
    Evidence,
    Failure,
    FrameBatch,
    FramePlan,
    Label,
    LabelSet,
    Prediction,
    PromptRef,
    SamplerSpec,
    Timeline,
    TimelineEvent,
    VideoInfo,
)

CLIP = Clip("v.mp4:0.00-2.00", "v.mp4", 0.0, 2.0, labels=("Suction",))


@pytest.mark.parametrize(
    "obj",
    [
        LabelSet(
            "s", (Label("A", "a", ("aa",)), Label("B", "b")), True, ("r",), (("A", "B"),), "d"
        ),
        CLIP,
        VideoInfo("v.mp4", 25.0, 250, 10.0, 320, 240, 90, "h264"),
        SamplerSpec(n_frames=None, fps=4.0, min_frames=2, max_frames=8, max_side=None),
        FramePlan(CLIP, (0, 5, 9), (0.0, 0.2, 0.36), SamplerSpec()),
        Caption("c", "text", (1, 2), (0.04, 0.08), "m", "caption.v1", "abc", 0.5),
        Prediction(
            "c",
            "v.mp4",
            0.0,
            2.0,
            ("A",),
            (Evidence("caption", "caption:1", "t"),),
            "because",
            "caption-reason",
            (PromptRef("reason", 1, "ff"),),
            {"vlm": "m"},
            "{}",
            attempts=2,
            reask_errors=("the reply is not valid JSON",),
            scores=ClassScores(("A",), (0.7,), (0.5,), "run1"),
            captions=(Caption("c", "text", (1,), (0.04,), "m", "caption.v1", "abc", 0.5),),
            latency_s=1.5,
        ),
        Timeline("v.mp4", 10.0, (TimelineEvent("A", 0.0, 3.0, 0.9, 2),)),
        Failure("v.mp4", "probe", "video 'v.mp4' not found"),
    ],
)
def test_round_trip_through_json(obj):
    again = type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))
    assert again == obj


def test_frame_batch_round_trip_keeps_pixels():
    frames = np.random.default_rng(0).integers(0, 255, (3, 4, 6, 3), dtype=np.uint8)
    fb = FrameBatch(CLIP, frames, (0, 5, 9), (0.0, 0.2, 0.36), SamplerSpec())
    again = FrameBatch.from_dict(json.loads(json.dumps(fb.to_dict())))
    assert again == fb
    assert again.frames.shape == (3, 4, 6, 3)
    other = FrameBatch(CLIP, frames.copy(), (0, 5, 9), (0.0, 0.2, 0.36), SamplerSpec())
    other.frames[0, 0, 0, 0] ^= 1
    assert other != fb


def test_frame_batch_rejects_wrong_layout():
    with pytest.raises(ValueError, match="uint8"):
        FrameBatch(CLIP, np.zeros((2, 4, 4, 3), np.float32), (0, 1), (0.0, 0.1), SamplerSpec())
    with pytest.raises(ValueError, match="length"):
        FrameBatch(CLIP, np.zeros((2, 4, 4, 3), np.uint8), (0,), (0.0,), SamplerSpec())


def test_invariants_fail_with_the_offending_values():
    with pytest.raises(ValueError, match="repeats labels"):
        LabelSet("s", (Label("A", "a"), Label("A", "b")), True)
    with pytest.raises(ValueError, match="unknown labels"):
        LabelSet("s", (Label("A", "a"),), True, exclusive=(("A", "Z"),))
    with pytest.raises(ValueError, match="start_s < end_s"):
        Clip("c", "v", 2.0, 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        SamplerSpec(n_frames=8, fps=2.0)
    with pytest.raises(ValueError, match="unknown keys"):
        Failure.from_dict({"item": "x", "stage": "s", "error": "e", "colour": 1})


def test_frozen():
    with pytest.raises(AttributeError):
        CLIP.start_s = 1.0  # type: ignore[misc]
