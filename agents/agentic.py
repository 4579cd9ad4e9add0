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

import dataclasses
import logging
from typing import Annotated, Literal, NamedTuple

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import START
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from vara.agents import nodes, vision
from vara.agents.agent_tools import TOOL_SOURCE, TOOLS, Finding, tool_error, tool_ref, tool_specs
from vara.agents.classify import CLASSIFIER_REF, score_text
from vara.agents.context import Context
from vara.agents.state import WindowInput, WindowState
from vara.agents.steps import StepGraph
from vara.tools.chat import Message, ToolCall
from vara.tools.evidence import sources_of
from vara.tools.reason import caption_items
from vara.types import Evidence

__all__ = ["AgentState", "build_agentic", "tool_results"]

log = logging.getLogger(__name__)


class AgentState(WindowState, total=False):
    messages: Annotated[list[AnyMessage], add_messages]  # the tool loop's conversation
    steps: int  # LLM turns taken in the tool loop
    last_turn: bool  # the latest turn was the last one allowed (agent.max_steps)


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
    sources = sources_of(items)  # captions and tool results
    first = nodes.chat_turns(rendered.system, rendered.user)
    return nodes.ask_answer(state, ctx, ctx.llm, first, sources)


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
    g = StepGraph(AgentState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("caption", vision.caption)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode(TOOLS, handle_tool_errors=tool_error))
    g.add_node("answer", answer)
    g.add_edge(START, "sample")
    g.add_edge("sample", "caption")
    g.add_edge("caption", "agent")
    g.add_conditional_edges(
        "agent", route_after_agent, {"tools": "tools", "agent": "agent", "answer": "answer"}
    )
    g.add_conditional_edges("tools", route_after_tools, {"agent": "agent", "answer": "answer"})
    nodes.add_answer_loop(g, finalize)
    return g.compile(name="agentic")
