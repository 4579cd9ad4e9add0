"""The ``agentic`` strategy: an LLM gathers evidence with tools, then gives the structured answer.

    sample -> caption -> agent <-> tools -> answer -> validate -> finalize | answer | give_up

``caption`` is the first look (the VLM's caption of the window, shared with caption-reason
through the cache). ``agent`` asks the LLM with three tools through the OpenAI tools API
(VideoAgent style): ``classify`` (the trained classifier's scores for the window),
``look_again`` (the VLM captions more frames of a part of the window) and ``ask_vlm`` (the VLM
answers one question about the window's frames). ``tools`` is LangGraph's ToolNode: a tool
that raises becomes an error result the LLM sees, never a crash. The loop ends when the LLM
calls no tool or after ``agent.max_steps`` tool-calling turns (a counter in the state, not
LangGraph's recursion limit). ``answer`` asks for the same schema-constrained answer as
caption-reason (the ``answer`` prompt, reason.v1) over the first caption and every tool
result, citable as ``caption:N`` and ``tool:N``; validate and the re-ask are the shared nodes.

The Prediction keeps what the tools did: the classifier's scores (``scores``, and an Evidence
with source "classifier"), look_again's captions (after the first one in ``captions``), and
each failed call as an Evidence with ref ``tool_error:N`` (N counts tool calls in order)
whose text names the tool and the error. The state holds messages and small records, never
pixels; tools fetch frames through the context.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, ToolRuntime
from langgraph.prebuilt.tool_node import ToolInvocationError
from langgraph.runtime import Runtime

from vara.agents import nodes, vision
from vara.agents.classify import CLASSIFIER_REF, score_text
from vara.agents.context import Context
from vara.agents.state import WindowInput, WindowState
from vara.config import AgentSpec
from vara.errors import ConfigError, InputError, VaraError
from vara.prompts.loader import RenderedPrompt
from vara.tools import video
from vara.tools.chat import Message, ToolCall
from vara.tools.reason import caption_items
from vara.tools.vlm import EndpointUnreachable
from vara.types import Caption, ClassScores, Clip, Evidence, SamplerSpec

__all__ = ["AgentState", "Finding", "TOOLS", "build_agentic", "tool_ref", "tool_results"]

log = logging.getLogger(__name__)

# The Evidence source of what each tool reports.
TOOL_SOURCE = {"classify": "classifier", "look_again": "caption", "ask_vlm": "vlm"}
# A question is one line; xgrammar mis-handles maxLength (STACK-NOTES), so bound by pattern.
_QUESTION_PATTERN = "^[^\\u0000-\\u001f]{1,120}$"
_EPS_S = 1e-6


class AgentState(WindowState, total=False):
    messages: Annotated[list[AnyMessage], add_messages]  # the tool loop's conversation
    steps: int  # LLM turns taken in the tool loop
    last_turn: bool  # the latest turn was the last one allowed (agent.max_steps)


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
    if ctx.classifier is None:
        raise ConfigError(
            "no classifier configured: set classifier.run_dir=RUN_DIR (a vara finetune run)"
        )
    started = time.perf_counter()
    scores = ctx.classifier.predict([ctx.frames.get(clip)])[0]
    ranked = sorted(zip(scores.labels, scores.probs, strict=True), key=lambda lp: -lp[1])
    decided = ", ".join(ctx.classifier.labels_for(scores)) or "none"
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
    sampler = SamplerSpec(n_frames=n, max_side=ctx.strategy.sampler.max_side)
    batch = next(iter(video.iter_frame_batches(clip.video, [part], sampler)))
    ctx.frames.put(batch)
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
    batch = ctx.frames.get(clip)
    prompt = ctx.prompts["caption"]
    ts = list(batch.timestamps_s)
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
        batch,
        slice(0, len(ts)),
        prompt,
        RenderedPrompt(system=system, user=question),
        max_tokens=ctx.strategy.generation.caption_max_tokens,
    )
    text = f"Q: {question} A: {' '.join(answer.text.split())}"
    return text, Finding("ask_vlm", clip.start_s, clip.end_s, text, answer.latency_s)


TOOLS = [classify, look_again, ask_vlm]


def _tool_error(exc: Exception) -> str:
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


# --- converting between LangGraph's messages (state, ToolNode) and vara's chat Messages ---


def _to_chat(messages: list[AnyMessage]) -> list[Message]:
    out = []
    for m in messages:
        text = m.content if isinstance(m.content, str) else str(m.text)
        if isinstance(m, SystemMessage):
            out.append(Message("system", text))
        elif isinstance(m, HumanMessage):
            out.append(Message("user", text))
        elif isinstance(m, AIMessage):
            calls = [ToolCall(c["id"], c["name"], c["args"]) for c in m.tool_calls]
            calls += [
                ToolCall(c["id"], c["name"] or "", {}, c["error"] or "invalid call")
                for c in m.invalid_tool_calls
            ]
            out.append(Message("assistant", text, tool_calls=tuple(calls)))
        elif isinstance(m, ToolMessage):
            out.append(Message("tool", text, tool_call_id=m.tool_call_id))
    return out


def _from_reply(text: str, calls: tuple[ToolCall, ...]) -> list[AnyMessage]:
    """The LLM's turn, then an error result for each call whose arguments did not parse
    (ToolNode runs only the well-formed ones)."""
    good = [c for c in calls if c.error is None]
    bad = [c for c in calls if c.error is not None]
    turn = AIMessage(
        content=text,
        tool_calls=[{"id": c.id, "name": c.name, "args": c.arguments} for c in good],
        invalid_tool_calls=[
            {
                "type": "invalid_tool_call",
                "id": c.id,
                "name": c.name,
                "args": None,
                "error": c.error,
            }
            for c in bad
        ],
    )
    errors = [
        ToolMessage(f"Error: {c.error}", tool_call_id=c.id, name=c.name, status="error")
        for c in bad
    ]
    return [turn, *errors]


class ToolResult(NamedTuple):
    n: int  # 1-based, in call order: tool:N or tool_error:N
    tool: str
    text: str  # what the LLM was shown
    finding: Finding | None  # None when the call failed


def tool_results(messages: list[AnyMessage]) -> list[ToolResult]:
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    return [
        ToolResult(
            n,
            m.name or "",
            m.content if isinstance(m.content, str) else str(m.text),
            m.artifact if m.status != "error" and isinstance(m.artifact, Finding) else None,
        )
        for n, m in enumerate(tool_messages, start=1)
    ]


# --- the nodes ---


def _opening(state: AgentState, ctx: Context) -> list[AnyMessage]:
    clip = state["clip"]
    rendered = ctx.prompts["agent"].render(
        labelset=ctx.labelset,
        captions=caption_items(state["captions"]),
        n_frames=len(state["timestamps_s"]),
        start_s=clip.start_s,
        end_s=clip.end_s,
        timestamps=list(state["timestamps_s"]),
    )
    head: list[AnyMessage] = [SystemMessage(rendered.system)] if rendered.system else []
    return [*head, HumanMessage(rendered.user)]


def agent(state: AgentState, runtime: Runtime[Context]) -> dict:
    """One LLM turn with the tools; the first may be forced to call ``agent.first_tool``."""
    ctx = runtime.context
    spec = ctx.strategy.agent
    steps = state.get("steps", 0)
    opening = [] if state.get("messages") else _opening(state, ctx)
    history = [*state.get("messages", []), *opening]
    done = ctx.llm.complete(
        _to_chat(history),
        tools=tool_specs(state["clip"], spec, ctx.prompts["agent"].tools),
        tool_choice=spec.first_tool if steps == 0 and spec.first_tool else "auto",
        max_tokens=spec.tool_max_tokens,
        temperature=ctx.strategy.generation.temperature,
    )
    return {
        "messages": [*opening, *_from_reply(done.text, done.tool_calls)],
        "steps": steps + 1,
        "last_turn": steps + 1 >= spec.max_steps,
        "model_latency_s": state.get("model_latency_s", 0.0) + done.latency_s,
    }


def route_after_agent(state: AgentState) -> Literal["tools", "agent", "answer"]:
    turn = next(m for m in reversed(state["messages"]) if isinstance(m, AIMessage))
    if turn.tool_calls:
        return "tools"  # run them even on the last turn: their results inform the answer
    if turn.invalid_tool_calls and not state["last_turn"]:
        return "agent"  # every call was garbled: the LLM sees the errors and may retry
    return "answer"


def route_after_tools(state: AgentState) -> Literal["agent", "answer"]:
    return "answer" if state["last_turn"] else "agent"


def answer(state: AgentState, runtime: Runtime[Context]) -> dict:
    """The structured answer over the first caption(s) and every successful tool result."""
    ctx = runtime.context
    clip = state["clip"]
    items = caption_items(state["captions"])
    for r in tool_results(state["messages"]):
        if r.finding is not None:
            f = r.finding
            text = " ".join(f.text.split())
            items.append(
                {"ref": tool_ref(r.n), "start_s": f.start_s, "end_s": f.end_s, "text": text}
            )
    rendered = ctx.prompts["answer"].render(
        labelset=ctx.labelset, captions=items, start_s=clip.start_s, end_s=clip.end_s
    )
    refs = tuple(item["ref"] for item in items)
    first = nodes.chat_turns(rendered.system, rendered.user)
    return nodes.ask_answer(state, ctx, ctx.llm, first, refs)


def finalize(state: AgentState, runtime: Runtime[Context]) -> dict:
    """nodes.finalize, plus what the tools did: scores, captions, cited sources, errors."""
    ctx = runtime.context
    results = tool_results(state["messages"])
    found = [r.finding for r in results if r.finding is not None]
    scores = next((f.scores for f in reversed(found) if f.scores is not None), None)
    captions = [*state["captions"], *(c for f in found for c in f.captions)]
    pred = nodes.finalize({**state, "captions": captions, "scores": scores}, runtime)["prediction"]
    source = {tool_ref(r.n): TOOL_SOURCE.get(r.tool, "vlm") for r in results}
    cited = [dataclasses.replace(e, source=source.get(e.ref, e.source)) for e in pred.evidence]
    if scores is not None:
        text = score_text(scores, ctx.labelset.multi_label)
        cited.append(Evidence(source="classifier", ref=CLASSIFIER_REF, text=text))
    for r in results:
        if r.finding is None:
            where = TOOL_SOURCE.get(r.tool, "vlm")
            cited.append(Evidence(where, f"tool_error:{r.n}", f"{r.tool or '?'}: {r.text}"))  # type: ignore[arg-type]
    latency = pred.latency_s + sum(f.latency_s for f in found)
    out = dataclasses.replace(pred, evidence=tuple(cited), latency_s=round(latency, 4))
    return {"prediction": out}


def build_agentic() -> CompiledStateGraph:
    """sample -> caption -> agent <-> tools -> answer -> validate -> finalize | ..."""
    g = StateGraph(AgentState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("caption", vision.caption)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(TOOLS, handle_tool_errors=_tool_error))
    g.add_node("answer", answer)
    g.add_node("validate", nodes.validate)
    g.add_node("finalize", finalize)
    g.add_node("give_up", nodes.give_up)
    g.add_edge(START, "sample")
    g.add_edge("sample", "caption")
    g.add_edge("caption", "agent")
    g.add_conditional_edges(
        "agent", route_after_agent, {"tools": "tools", "agent": "agent", "answer": "answer"}
    )
    g.add_conditional_edges("tools", route_after_tools, {"agent": "agent", "answer": "answer"})
    g.add_edge("answer", "validate")
    g.add_conditional_edges(
        "validate",
        nodes.route_after_validate,
        {"finalize": "finalize", "answer": "answer", "give_up": "give_up"},
    )
    g.add_edge("finalize", END)
    g.add_edge("give_up", END)
    return g.compile(name="agentic")
