"""The tools of the ``agentic`` strategy, run by LangGraph's ToolNode inside its graph.

``classify`` (the trained classifier's scores for the window), ``look_again`` (the VLM
captions more frames of a part of the window) and ``ask_vlm`` (the VLM answers one question
about the window's frames). Each returns (text the LLM reads, a ``Finding`` artifact the
Prediction keeps); a tool that raises becomes an error result (``tool_error``), never a crash.
``tool_specs`` gives their OpenAI function specs for one window, described by the agent
prompt's ``tools`` section.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.prebuilt import ToolRuntime
from langgraph.prebuilt.tool_node import ToolInvocationError

from vara.agents import vision
from vara.config import AgentSpec
from vara.errors import ConfigError, InputError, VaraError
from vara.prompts.loader import RenderedPrompt
from vara.tools.scorer import labels_for
from vara.tools.vlm import EndpointUnreachable
from vara.types import Caption, ClassScores, Clip

__all__ = ["TOOLS", "TOOL_SOURCE", "Finding", "tool_error", "tool_ref", "tool_specs"]

log = logging.getLogger(__name__)

# The Evidence source of what each tool reports.
TOOL_SOURCE = {"classify": "classifier", "look_again": "caption", "ask_vlm": "vlm"}
# A question is one line; xgrammar mis-handles maxLength (docs/cpu-notes.md), so bound by pattern.
_QUESTION_PATTERN = "^[^\\u0000-\\u001f]{1,120}$"
_EPS_S = 1e-6


@dataclass(frozen=True)
class Finding:
    """What one successful tool call found: the artifact of its ToolMessage.

    ``latency_s`` is model time not already counted in ``captions``.
    """

    tool: str
    start_s: float
    end_s: float
    text: str
    latency_s: float = 0.0
    scores: ClassScores | None = None
    captions: tuple[Caption, ...] = ()


def tool_ref(n: int) -> str:
    """Ref of the n-th tool result of a window, 1-based, as the answer prompt shows it."""
    return f"tool:{n}"


# --- the tools. What the LLM reads about them is the agent prompt's `tools` section
# (prompts/agent.v1.yaml, see tool_specs); the docstrings document the code only. ---
# ``runtime`` (ToolNode injects it: the run's Context and the window's state) is typed
# ToolRuntime[Any, Any] because langchain validates tool inputs with pydantic, which cannot
# build a schema for Context and warns on an unparameterised ToolRuntime.


@tool(response_format="content_and_artifact")
def classify(runtime: ToolRuntime[Any, Any]) -> tuple[str, Finding]:
    """A trained classifier's probability of each activity in the whole clip (may be wrong)."""
    ctx, clip = runtime.context, runtime.state["clip"]
    if ctx.scorer is None:
        raise ConfigError(
            "no classifier configured: set scorer.run_dir=RUN_DIR (a vara finetune run)"
        )
    started = time.perf_counter()
    scores = ctx.scorer.predict([ctx.frames.get(clip)])[0]
    ranked = sorted(zip(scores.labels, scores.probs, strict=True), key=lambda lp: -lp[1])
    decided = ", ".join(labels_for(scores, ctx.labelset.multi_label)) or "none"
    text = (
        "classifier probabilities: "
        + ", ".join(f"{label}={p:.2f}" for label, p in ranked)
        + f"; it decides: {decided}"
    )
    latency = time.perf_counter() - started
    return text, Finding("classify", clip.start_s, clip.end_s, text, latency, scores=scores)


@tool(parse_docstring=True, response_format="content_and_artifact")
def look_again(
    start_s: float, end_s: float, n_frames: int, runtime: ToolRuntime[Any, Any]
) -> tuple[str, Finding]:
    """Have the vision-language model describe a part of the clip again, from more frames.

    Args:
        start_s: Where the part starts, in seconds of the video (inside the clip).
        end_s: Where the part ends, in seconds of the video (after start_s, inside the clip).
        n_frames: How many frames to look at in that part.
    """
    ctx, clip = runtime.context, runtime.state["clip"]
    if not clip.start_s - _EPS_S <= start_s < end_s <= clip.end_s + _EPS_S:
        raise InputError(
            f"look_again(start_s={start_s}, end_s={end_s}) needs "
            f"{clip.start_s:.2f} <= start_s < end_s <= {clip.end_s:.2f}: a part of this clip"
        )
    cap = ctx.strategy.agent.look_again_max_frames
    n = min(max(1, n_frames), cap)
    start_s, end_s = max(start_s, clip.start_s), min(end_s, clip.end_s)
    # Calls of one turn run concurrently: a part id per call keeps their frames apart.
    part_id = f"{clip.clip_id}@{start_s:.2f}-{end_s:.2f}#{runtime.tool_call_id}"
    part = Clip(part_id, clip.video, start_s, end_s)
    # Decoded only if a caption misses the cache (FrameStore.get decodes a planned part).
    ctx.frames.add_part(part, n)
    try:  # vision.caption reads only runtime.context and the part's frames from the store
        captions = vision.caption({"clip": part}, runtime)["captions"]
    finally:
        ctx.frames.drop(part.clip_id)
    captions = tuple(dataclasses.replace(c, clip_id=clip.clip_id) for c in captions)
    capped = f" (capped at {cap})" if n < n_frames else ""
    seen = " ".join(" ".join(c.text.split()) for c in captions)
    text = f"{n} frames{capped} from {start_s:.2f} s to {end_s:.2f} s: {seen}"
    return text, Finding("look_again", start_s, end_s, text, captions=captions)


@tool(parse_docstring=True, response_format="content_and_artifact")
def ask_vlm(question: str, runtime: ToolRuntime[Any, Any]) -> tuple[str, Finding]:
    """Ask the vision-language model one short question about what the clip's frames show.

    Args:
        question: One question about something visible, e.g. "Is anyone holding a mask?"
    """
    ctx, clip = runtime.context, runtime.state["clip"]
    question = " ".join(question.split())
    if not question:
        raise InputError("ask_vlm needs a non-empty question")
    plan = ctx.frames.plan(clip)
    prompt = ctx.prompts["caption"]
    ts = list(plan.timestamps_s)
    # The caption prompt's system turn tells the VLM its job and the setting; the question
    # replaces its user turn (so max_words, used only there, is never sent).
    system = prompt.render(
        domain=ctx.labelset.description,
        n_frames=len(ts),
        start_s=clip.start_s,
        end_s=clip.end_s,
        timestamps=ts,
        max_words=0,
    ).system
    answer = vision.describe(
        ctx,
        plan,
        slice(0, len(ts)),
        prompt,
        RenderedPrompt(system=system, user=question),
        max_tokens=ctx.strategy.generation.caption_max_tokens,
    )
    text = f"Q: {question} A: {' '.join(answer.text.split())}"
    return text, Finding("ask_vlm", clip.start_s, clip.end_s, text, answer.latency_s)


TOOLS = [classify, look_again, ask_vlm]


def tool_error(exc: Exception) -> str:
    """A failed call's result, shown to the LLM and kept in the Prediction."""
    if isinstance(exc, EndpointUnreachable):
        raise exc  # no server: the run stops (runner), rather than every window's tools failing
    if not isinstance(exc, VaraError | ToolInvocationError):
        log.warning("tool call failed unexpectedly", exc_info=exc)
    return f"Error: {exc}"


@functools.cache
def _base_specs() -> tuple[dict[str, Any], ...]:
    return tuple(convert_to_openai_tool(t) for t in TOOLS)


def tool_specs(clip: Clip, spec: AgentSpec, texts: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The tools as OpenAI function specs, bounded to this window: a constrained decoder
    (vLLM's named tool_choice) can then only emit times inside it and a frame count <= cap.

    What the model reads about each tool and argument comes from the agent prompt's
    ``tools`` section (prompts/agent.v1.yaml), so it is versioned and hashed with the prompt;
    the docstrings above only document the code."""
    specs = copy.deepcopy(list(_base_specs()))
    props = {s["function"]["name"]: s["function"]["parameters"]["properties"] for s in specs}
    for s in specs:
        name = s["function"]["name"]
        text = (texts or {}).get(name)
        if text is None:
            raise ConfigError(f"the agent prompt's 'tools' section does not describe {name!r}")
        s["function"]["description"] = text["description"]
        for arg, prop in props[name].items():
            if arg not in text.get("args", {}):
                raise ConfigError(f"the agent prompt's 'tools.{name}.args' lacks {arg!r}")
            prop["description"] = text["args"][arg]
    for key in ("start_s", "end_s"):
        props["look_again"][key].update(minimum=clip.start_s, maximum=clip.end_s)
    props["look_again"]["n_frames"].update(minimum=1, maximum=spec.look_again_max_frames)
    props["ask_vlm"]["question"]["pattern"] = _QUESTION_PATTERN
    return specs
