"""Routing of the window graphs with a scripted model: accept, re-ask once, fail loudly.

A real model cannot be made to answer badly on cue, so these use ScriptedChatModel; the
same graphs run against the real vLLM server in test_run_e2e.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.registry import build_graph
from vara.agents.strategies import load_strategy
from vara.errors import StructuredOutputError
from vara.prompts.loader import load_labelset, load_prompt
from vara.testing import SEMANTIC_TAG, ScriptedChatModel
from vara.types import Clip, FrameBatch

CLIP = Clip(clip_id="v.mp4:0.00-2.00", video="v.mp4", start_s=0.0, end_s=2.0)


def _context(strategy_name: str, vlm, llm=None, labels="newborn-resuscitation") -> Context:
    strategy = load_strategy(strategy_name)
    frames = FrameStore(strategy.sampler)
    ts = (0.25, 0.75, 1.25, 1.75)
    frames.put(
        FrameBatch(CLIP, np.zeros((4, 8, 8, 3), np.uint8), (6, 18, 31, 43), ts, strategy.sampler)
    )
    prompts = {role: load_prompt(ref) for role, ref in strategy.prompts.items()}
    return Context(strategy, load_labelset(labels), prompts, vlm, llm or vlm, frames)


def _answer(labels, ref="caption:1", quote="mask") -> str:
    return json.dumps(
        {
            "evidence": [{"ref": ref, "text": quote}],
            "labels": labels,
            "explanation": "The caption says a mask is held over the baby's face.",
        }
    )


def test_caption_reason_accepts_a_valid_first_answer():
    vlm = ScriptedChatModel(["A gloved hand holds a round mask over a baby's face."], "vlm-x")
    llm = ScriptedChatModel([_answer(["Ventilation"])], "llm-y")
    out = build_graph("caption-reason").invoke(
        {"clip": CLIP}, context=_context("caption-reason", vlm, llm)
    )
    pred = out["prediction"]
    assert pred.labels == ("Ventilation",)
    assert pred.attempts == 1
    assert pred.models == {"vlm": "vlm-x", "llm": "llm-y"}
    assert pred.captions[0].text.startswith("A gloved hand")
    assert [e.ref for e in pred.evidence] == ["caption:1"]
    assert {p.id for p in pred.prompts} == {"caption", "reason", "reask"}
    # The VLM saw all four frames; the LLM got a schema whose enums are the labels and refs.
    assert len(vlm.requests[0]["messages"][-1].images) == 4
    schema = llm.requests[0]["json_schema"]
    assert schema["properties"]["labels"]["items"]["enum"] == [
        "Ventilation",
        "Stimulation",
        "Suction",
    ]
    assert schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"] == ["caption:1"]


def test_reask_carries_the_validator_message_and_recovers():
    vlm = ScriptedChatModel(["a mask and a suction tube"])
    bad = _answer(["Ventilation", "Suction"])  # breaks the exclusivity rule
    llm = ScriptedChatModel([bad, _answer(["Suction"])])
    out = build_graph("caption-reason").invoke(
        {"clip": CLIP}, context=_context("caption-reason", vlm, llm)
    )
    assert out["prediction"].labels == ("Suction",)
    assert out["prediction"].attempts == 2
    assert len(out["prediction"].reask_errors) == 1
    assert "cannot be present together" in out["prediction"].reask_errors[0]
    second = llm.requests[1]["messages"]
    assert second[-2].role == "assistant" and second[-2].text == bad
    assert "cannot be present together" in second[-1].text
    assert second[-1].role == "user"


def test_second_bad_answer_fails_loudly_keeping_both_raw_texts():
    vlm = ScriptedChatModel(["frames"])
    llm = ScriptedChatModel(["not json at all", '{"labels": ["Breathing"]}'])
    with pytest.raises(StructuredOutputError) as info:
        build_graph("caption-reason").invoke(
            {"clip": CLIP}, context=_context("caption-reason", vlm, llm)
        )
    assert info.value.raw == ("not json at all", '{"labels": ["Breathing"]}')
    assert "v.mp4:0.00-2.00" in str(info.value)
    assert len(llm.requests) == 2  # exactly one re-ask


def test_direct_sends_frames_and_cites_timestamps():
    vlm = ScriptedChatModel([_answer(["tai chi"], ref="t=0.75s")])
    ctx = _context("direct", vlm, labels="kinetics-sample")
    out = build_graph("direct").invoke({"clip": CLIP}, context=ctx)
    pred = out["prediction"]
    assert pred.labels == ("tai chi",)
    assert pred.evidence[0].source == "frame"
    assert len(vlm.requests[0]["messages"][-1].images) == 4
    refs = vlm.requests[0]["json_schema"]["properties"]["evidence"]["items"]["properties"]["ref"][
        "enum"
    ]
    assert refs == ["t=0.25s", "t=0.75s", "t=1.25s", "t=1.75s"]
    labels = vlm.requests[0]["json_schema"]["properties"]["labels"]
    assert labels["minItems"] == labels["maxItems"] == 1  # single-label set


def test_max_reasks_zero_gives_up_after_one_answer():
    vlm = ScriptedChatModel(["x"])
    llm = ScriptedChatModel(["{}"])
    ctx = _context("caption-reason", vlm, llm)
    ctx = Context(
        load_strategy("caption-reason", ["max_reasks=0"]),
        ctx.labelset,
        ctx.prompts,
        vlm,
        llm,
        ctx.frames,
    )
    with pytest.raises(StructuredOutputError):
        build_graph("caption-reason").invoke({"clip": CLIP}, context=ctx)
    assert len(llm.requests) == 1


def test_semantic_tokens_reask_sends_frames_again_and_is_counted():
    tag = SEMANTIC_TAG
    vlm = ScriptedChatModel(['{"frames": []}', json.dumps({"frames": [tag] * 4})])
    llm = ScriptedChatModel([_answer(["Ventilation"], ref="t=0.25s")])
    ctx = _context("semantic-tokens", vlm, llm)
    pred = build_graph("semantic-tokens").invoke({"clip": CLIP}, context=ctx)["prediction"]
    assert len(vlm.requests[1]["messages"][-3].images) == 4  # the re-ask repeats the frames
    assert ctx.stats.snapshot()["caption_requests"] == 2
    assert pred.attempts == 2 and "at frames" in pred.reask_errors[0]
    assert pred.labels == ("Ventilation",)


def test_a_fabricated_quote_is_reasked_then_kept_marked_unverified():
    """The caption never says what the evidence quotes: the validator's message goes back in
    the re-ask; the second answer fabricates again, and is kept with verified=False."""
    caption = "A gloved hand holds a round mask over a baby's face."
    vlm = ScriptedChatModel([caption])
    fabricated = _answer(["Ventilation"], quote="the nurse squeezes the bag twice")
    llm = ScriptedChatModel([fabricated, fabricated])
    pred = build_graph("caption-reason").invoke(
        {"clip": CLIP}, context=_context("caption-reason", vlm, llm)
    )["prediction"]
    assert pred.attempts == 2 and len(llm.requests) == 2
    assert (
        "'the nurse squeezes the bag twice', which caption:1 does not say" in (pred.reask_errors[0])
    )
    assert "does not say" in llm.requests[1]["messages"][-1].text  # sent back to the model
    [e] = pred.evidence
    assert e.verified is False and e.text == "the nurse squeezes the bag twice"


def test_a_true_quote_is_verified_and_a_frame_ref_is_not_checkable():
    vlm = ScriptedChatModel(["A gloved hand holds a round mask over a baby's face."])
    llm = ScriptedChatModel([_answer(["Ventilation"], quote="Holds a round mask, over")])
    pred = build_graph("caption-reason").invoke(
        {"clip": CLIP}, context=_context("caption-reason", vlm, llm)
    )["prediction"]
    assert pred.attempts == 1 and [e.verified for e in pred.evidence] == [True]
    direct = ScriptedChatModel([_answer(["tai chi"], ref="t=0.75s", quote="anything")])
    ctx = _context("direct", direct, labels="kinetics-sample")
    out = build_graph("direct").invoke({"clip": CLIP}, context=ctx)["prediction"]
    assert out.attempts == 1 and [e.verified for e in out.evidence] == [None]
