"""The agentic strategy: tool calls through the OpenAI tools API against the real vLLM server.

The served tiny model is random, so it is made to call a tool with a named ``tool_choice``
(``agent.first_tool``); its arguments are then constrained to the tool's JSON schema but
their values are noise, which exercises the tool-error path for real. Routing over several
turns (up to the step cap) and well-chosen look_again arguments need a model that behaves on
cue: those tests script the LLM and keep the real VLM and video where they can.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from vara.agents.agentic import build_agentic
from vara.agents.classify import CLASSIFIER_REF, score_text
from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.strategies import load_strategy
from vara.errors import ConfigError, EndpointError, InputError
from vara.prompts.loader import load_labelset, load_prompt
from vara.testing import ScriptedChatModel, write_test_video
from vara.tools.chat import Message, ToolCall
from vara.tools.vlm import OpenAIServer, parse_tool_calls, to_openai_messages, tool_request
from vara.types import Clip, Label, LabelSet

KINETICS = load_labelset("kinetics-sample")
# The tiny model's context is 2048 tokens and its tokenizer spends ~0.55 tokens per character:
# the kinetics label names without their descriptions leave room for the tool specs.
SHORT = LabelSet(
    name="kinetics-short",
    labels=tuple(Label(lab.name, lab.name) for lab in KINETICS.labels),
    multi_label=KINETICS.multi_label,
    description="Everyday actions.",
)
FAST = (  # few small frames, short captions: every request fits the tiny model's context
    "sampler.n_frames=2",
    "sampler.max_side=64",
    "generation.caption_max_tokens=24",
    "generation.answer_max_tokens=768",
    "agent.look_again_max_frames=2",
    "evidence.check=mark",  # the random model cannot quote: marked, not re-asked
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Clip:
    video = write_test_video(tmp_path_factory.mktemp("agentic") / "v.mp4", n_frames=50, fps=25.0)
    return Clip(clip_id="v.mp4:0.00-2.00", video=str(video), start_s=0.0, end_s=2.0)


@pytest.fixture(scope="module")
def served(vllm_server):
    model = OpenAIServer(vllm_server.url, max_retries=1, backoff_s=0.05)
    yield model
    model.close()


class Spy:
    """Passes requests to a real model and records what each asked for (tool_choice, schema)."""

    def __init__(self, model):
        self.model, self.model_id, self.requests = model, model.model_id, []
        self.cache_identity = model.cache_identity

    def complete(self, messages, **kwargs):
        self.requests.append(kwargs)
        return self.model.complete(messages, **kwargs)

    def close(self) -> None:
        pass


def _refs(request: dict) -> list[str]:
    return request["json_schema"]["properties"]["evidence"]["items"]["properties"]["ref"]["enum"]


def _context(vlm, llm=None, *, overrides=(), labelset=SHORT, scorer=None) -> Context:
    strategy = load_strategy("agentic", [*FAST, *overrides])
    prompts = {role: load_prompt(ref) for role, ref in strategy.prompts.items()}
    frames = FrameStore(strategy.sampler)
    return Context(strategy, labelset, prompts, vlm, llm or vlm, frames, scorer=scorer)


def _run(clip: Clip, ctx: Context) -> dict:
    return build_agentic().invoke({"clip": clip}, context=ctx)


def _calls(out: dict) -> list[str]:
    return [c["name"] for m in out["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]


def _tool_messages(out: dict) -> list[ToolMessage]:
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


# --- against the real vLLM server ---


def test_forced_classify_puts_the_classifier_scores_in_the_prediction(
    served, clip, tiny_classifier_run
):
    from vara.tools.classifier import load_classifier

    classifier = load_classifier(tiny_classifier_run, device="cpu")
    llm = Spy(served)
    overrides = ["agent.first_tool=classify", "agent.max_steps=1"]
    out = _run(clip, _context(served, llm, overrides=overrides, scorer=classifier))
    pred = out["prediction"]

    assert [r.get("tool_choice") for r in llm.requests] == ["classify", None]
    assert _calls(out) == ["classify"]
    assert _refs(llm.requests[1]) == ["caption:1", "tool:1"]
    [result] = _tool_messages(out)
    assert result.status == "success" and result.content.startswith("classifier probabilities")
    assert pred.scores is not None and pred.scores.labels == classifier.labels
    assert pred.scores.adapter_id == classifier.model_id
    shown = [e for e in pred.evidence if e.source == "classifier" and e.ref == CLASSIFIER_REF]
    assert [e.text for e in shown] == [score_text(pred.scores, SHORT.multi_label)]
    assert pred.models == {"vlm": "tiny-vlm", "llm": "tiny-vlm", "scorer": classifier.model_id}
    assert set(pred.labels) <= set(SHORT.names) and len(pred.labels) == 1
    assert not [e for e in pred.evidence if e.ref.startswith("tool_error:")]


def test_a_tool_error_is_reported_in_the_prediction_not_raised(served, clip):
    llm = Spy(served)
    overrides = ["agent.first_tool=classify", "agent.max_steps=2"]
    out = _run(clip, _context(served, llm, overrides=overrides))  # no classifier configured
    pred = out["prediction"]

    assert llm.requests[0]["tool_choice"] == "classify"
    assert _calls(out)[0] == "classify"  # the second turn (auto) calls nothing: random model
    assert _tool_messages(out)[0].status == "error"
    [error] = [e for e in pred.evidence if e.ref == "tool_error:1"]
    assert error.source == "classifier"
    assert error.text.startswith("classify: Error: no classifier configured")
    assert "scorer.run_dir" in error.text
    assert pred.scores is None and "classifier" not in pred.models
    assert pred.labels and set(pred.labels) <= set(SHORT.names)


def test_forced_ask_vlm_answers_from_the_frames(served, clip):
    llm = Spy(served)
    ctx = _context(served, llm, overrides=["agent.first_tool=ask_vlm", "agent.max_steps=1"])
    out = _run(clip, ctx)
    pred = out["prediction"]

    assert _calls(out) == ["ask_vlm"]
    [result] = _tool_messages(out)
    assert result.status == "success" and result.content.startswith("Q: ")
    assert " A: " in result.content
    assert ctx.stats.snapshot()["caption_requests"] == 2  # the first caption + the question
    assert _refs(llm.requests[1]) == ["caption:1", "tool:1"]
    assert not [e for e in pred.evidence if e.ref.startswith("tool_error:")]


def test_forced_look_again_decodes_or_reports_its_arguments(served, clip):
    ctx = _context(served, overrides=["agent.first_tool=look_again", "agent.max_steps=1"])
    out = _run(clip, ctx)
    pred = out["prediction"]

    assert _calls(out) == ["look_again"]
    [call] = [c for m in out["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
    # The window's bounds went into the tool's JSON schema, so the decoder kept to them.
    assert 0.0 <= call["args"]["start_s"] <= 2.0 and 0.0 <= call["args"]["end_s"] <= 2.0
    assert 1 <= call["args"]["n_frames"] <= 2
    [result] = _tool_messages(out)
    if result.status == "success":  # a random model may well pick an empty range instead
        assert len(pred.captions) == 2
    else:
        [error] = [e for e in pred.evidence if e.ref == "tool_error:1"]
        assert error.source == "caption" and "start_s < end_s" in error.text


def test_look_again_captions_more_frames_of_a_part(served, clip):
    """A scripted LLM picks sensible arguments; decoding and the VLM's caption are real."""
    llm = ScriptedChatModel(
        [
            [ToolCall("c1", "look_again", {"start_s": 0.5, "end_s": 1.5, "n_frames": 5})],
            _answer("tool:1", SHORT.names[0]),
        ]
    )
    ctx = _context(served, llm, overrides=["agent.max_steps=1"])
    pred = _run(clip, ctx)["prediction"]

    first, again = pred.captions
    assert len(again.frame_idx) == 2  # capped by agent.look_again_max_frames
    assert all(0.5 <= t < 1.5 for t in again.timestamps_s)
    assert again.clip_id == clip.clip_id and again.model == "tiny-vlm"
    assert [(e.source, e.ref) for e in pred.evidence] == [("caption", "tool:1")]
    shown = llm.requests[1]["messages"][-1].text
    assert "[tool:1] (0.50-1.50 s): 2 frames (capped at 2) from 0.50 s to 1.50 s:" in shown


def test_tool_calls_round_trip_through_the_server(served):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "classify",
                "description": "scores",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    asked = [Message("user", "Which activity is this?")]
    done = served.complete(asked, tools=tools, tool_choice="classify", max_tokens=128)
    [call] = done.tool_calls
    assert call.name == "classify" and call.arguments == {} and call.error is None
    follow = [
        *asked,
        Message("assistant", done.text, tool_calls=done.tool_calls),
        Message("tool", "jumping=0.91", tool_call_id=call.id),
        Message("user", "So?"),
    ]
    again = served.complete(follow, tools=tools, tool_choice="none", max_tokens=8)
    assert again.tool_calls == () and again.completion_tokens <= 8
    served.complete(asked, tools=tools, tool_choice="auto", max_tokens=16)  # no crash


# --- the OpenAI tool dialect, offline ---


def test_tool_dialect():
    assert tool_request([{"function": {"name": "f"}}], "f")["tool_choice"] == {
        "type": "function",
        "function": {"name": "f"},
    }
    with pytest.raises(InputError, match="neither one of"):
        tool_request([{"function": {"name": "f"}}], "g")
    calls = parse_tool_calls(
        {
            "tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}},
                {"id": "b", "function": {"name": "g", "arguments": '{"x": 12345'}},
                {"id": "c", "function": {"name": "h", "arguments": "[1]"}},
            ]
        }
    )
    assert calls[0] == ToolCall("a", "f", {"x": 1})
    assert calls[1].arguments == {} and "not valid JSON" in calls[1].error
    assert "must be a JSON object" in calls[2].error
    wire = to_openai_messages(
        [Message("assistant", "", tool_calls=calls[:1]), Message("tool", "ok", tool_call_id="a")]
    )
    assert wire[0]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert wire[1] == {"role": "tool", "tool_call_id": "a", "content": "ok"}


def test_the_in_process_engine_refuses_tools(tiny_vlm_dir):
    from vara.tools.local_engine import LocalEngine

    engine = LocalEngine(tiny_vlm_dir, device="cpu")
    with pytest.raises(EndpointError, match="tool calling needs a vLLM server"):
        engine.complete([Message("user", "hi")], tools=[{"function": {"name": "f"}}])
    engine.close()


# --- routing, with a scripted LLM and VLM ---


def _answer(ref: str, label: str) -> str:
    return json.dumps(
        {
            "evidence": [{"ref": ref, "text": "the VLM says so"}],
            "labels": [label],
            "explanation": "The tool result supports it.",
        }
    )


def test_the_loop_runs_tool_turns_up_to_the_step_cap(clip):
    vlm = ScriptedChatModel(["Someone waves an arm.", "Yes, a mask."], "vlm-x")
    garbled = ToolCall("c3", "look_again", {}, error="arguments are not valid JSON (...)")
    llm = ScriptedChatModel(
        [
            [
                ToolCall("c1", "ask_vlm", {"question": "Is a mask held?"}),
                ToolCall("c2", "classify"),
            ],
            [garbled, ToolCall("c4", "look_again", {"start_s": 5, "end_s": 6, "n_frames": 2})],
            _answer("tool:1", SHORT.names[1]),  # no third tool turn: the cap is 2
        ],
        "llm-y",
    )
    ctx = _context(vlm, llm, overrides=["agent.max_steps=2", "agent.first_tool=ask_vlm"])
    pred = _run(clip, ctx)["prediction"]

    assert [r["tool_choice"] for r in llm.requests] == ["ask_vlm", "auto", None]
    assert [t["function"]["name"] for t in llm.requests[0]["tools"]] == [
        "classify",
        "look_again",
        "ask_vlm",
    ]
    # The second turn saw the first turn's calls and their results, paired by id.
    second = llm.requests[1]["messages"]
    assert [c.id for c in second[-3].tool_calls] == ["c1", "c2"]
    assert [(m.role, m.tool_call_id) for m in second[-2:]] == [("tool", "c1"), ("tool", "c2")]
    assert second[-2].text == "Q: Is a mask held? A: Yes, a mask."
    # The VLM got the question verbatim, with the window's frames.
    assert vlm.requests[1]["messages"][-1].text == "Is a mask held?"
    assert len(vlm.requests[1]["messages"][-1].images) == 2
    # The answer could cite the first caption and the one successful tool result.
    schema = llm.requests[2]["json_schema"]
    assert schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"] == [
        "caption:1",
        "tool:1",
    ]
    assert pred.labels == (SHORT.names[1],)
    assert [(e.source, e.ref) for e in pred.evidence] == [
        ("vlm", "tool:1"),
        ("classifier", "tool_error:2"),
        ("caption", "tool_error:3"),
        ("caption", "tool_error:4"),
    ]
    errors = [e.text for e in pred.evidence[1:]]
    assert "no classifier configured" in errors[0]
    assert "not valid JSON" in errors[1]
    assert "needs 0.00 <= start_s < end_s <= 2.00" in errors[2]
    assert pred.models == {"vlm": "vlm-x", "llm": "llm-y"}


def test_the_loop_ends_when_the_llm_calls_no_tool(clip):
    vlm = ScriptedChatModel(["Someone waves an arm."])
    llm = ScriptedChatModel(["I know enough.", _answer("caption:1", SHORT.names[0])])
    pred = _run(clip, _context(vlm, llm))["prediction"]
    assert [r["tool_choice"] for r in llm.requests] == ["auto", None]
    assert pred.labels == (SHORT.names[0],) and pred.captions[0].text == "Someone waves an arm."
    assert [(e.source, e.ref) for e in pred.evidence] == [("caption", "caption:1")]


def test_what_the_llm_reads_about_the_tools_comes_from_the_prompt(clip, tmp_path):
    """Tool and argument descriptions are prompt text: versioned in prompts/agent.vN.yaml,
    hashed into the prompt's provenance, editable with --prompts-dir."""
    packaged = load_prompt("agent.v1")
    edited = tmp_path / "agent.v2.yaml"
    edited.write_text(
        Path(packaged.source)
        .read_text()
        .replace("How many frames to look at in that part.", "Frames to decode, 1 to 2.")
    )
    for prompt, n_frames_text in (
        (packaged, "How many frames to look at in that part."),
        (load_prompt("agent.v2", tmp_path), "Frames to decode, 1 to 2."),
    ):
        vlm = ScriptedChatModel(["Someone waves an arm."])
        llm = ScriptedChatModel(["I know enough.", _answer("caption:1", SHORT.names[0])])
        ctx = _context(vlm, llm)
        ctx.prompts["agent"] = prompt
        _run(clip, ctx)
        specs = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
        assert specs["look_again"]["parameters"]["properties"]["n_frames"]["description"] == (
            n_frames_text
        )
        assert specs["classify"]["description"] == prompt.tools["classify"]["description"]
    assert load_prompt("agent.v2", tmp_path).sha256 != packaged.sha256
    broken = tmp_path / "agent.v3.yaml"
    broken.write_text("user: hi\ntools:\n  classify: {description: x}\n")
    ctx = _context(ScriptedChatModel(["Someone waves."]), ScriptedChatModel([]))
    ctx.prompts["agent"] = load_prompt("agent.v3", tmp_path)
    with pytest.raises(ConfigError, match="does not describe 'look_again'"):
        _run(clip, ctx)


def test_agentic_without_a_server_is_refused_up_front(tiny_vlm_dir, tmp_path, capsys):
    from vara.agents.runner import run_videos
    from vara.cli import main as cli

    video = write_test_video(tmp_path / "v.mp4", n_frames=50)
    strategy = load_strategy("agentic", [f"vlm.model={tiny_vlm_dir}"])
    with pytest.raises(ConfigError, match="calls tools, which needs the LLM on a vLLM server"):
        run_videos([str(video)], strategy, load_labelset("kinetics-sample"), tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.jsonl").exists()
    # vara eval connects its models before running; the check still comes first.
    (tmp_path / "m.csv").write_text("video,labels\nv.mp4,tai chi\n")
    args = [
        "eval",
        str(tmp_path / "m.csv"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "agentic",
        "--vlm-model",
        str(tiny_vlm_dir),
        "--out",
        str(tmp_path / "e"),
    ]
    assert cli(args) == 2
    assert "calls tools, which needs the LLM on a vLLM server" in capsys.readouterr().err
    assert not (tmp_path / "e" / "agentic" / "results.json").exists()
