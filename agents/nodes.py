"""Node functions of the window graphs: plain functions returning partial state updates.

sample -> [caption] -> answer -> validate -> (finalize | answer again | give_up).
``answer`` sends the model the first request plus, after a rejected answer, that answer and
the re-ask prompt carrying the validator's message; ``validate`` decides the next step so the
retry cap lives in one place (``strategy.max_reasks``), not in LangGraph's recursion limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from langgraph.graph import END, StateGraph
from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.state import Step, WindowState
from vara.errors import StructuredOutputError
from vara.prompts.loader import PromptTemplate
from vara.tools.chat import ChatModel, Message
from vara.tools.evidence import check_evidence, sources_of
from vara.tools.narrative import narrative_items, tags_text
from vara.tools.reason import (
    AnswerInvalid,
    answer_schema,
    caption_items,
    parse_answer,
    time_ref,
)
from vara.tools.turns import chat_turns
from vara.types import Clip, Prediction

T = TypeVar("T")

__all__ = [
    "chat_turns",
    "with_reasks",
    "ask_until_valid",
    "ask_answer",
    "validation_failed",
    "sample",
    "answer_from_captions",
    "answer_from_frames",
    "answer_from_tokens",
    "validate",
    "tags_text",
    "quotes_final",
    "route_after_validate",
    "finalize",
    "give_up",
    "add_answer_loop",
]


def sample(state: WindowState, runtime: Runtime[Context]) -> dict:
    clip = state["clip"]
    update = {}
    if isinstance(clip, dict):  # JSON input (LangGraph Studio, the HTTP API): a Clip from now on
        clip = update["clip"] = Clip.from_dict(clip)
    plan = runtime.context.frames.plan(clip)
    return {**update, "frame_idx": plan.frame_idx, "timestamps_s": plan.timestamps_s}


def with_reasks(
    first: list[Message], raws: Sequence[str], errors: Sequence[str], reask: PromptTemplate
) -> list[Message]:
    """The first request, then each rejected answer and the re-ask naming what was wrong."""
    out = list(first)
    for raw, error in zip(raws, errors, strict=True):
        out.append(Message("assistant", raw))
        out.append(Message("user", reask.render(error=error).user))
    return out


def validation_failed(
    what: str, raws: Sequence[str], errors: Sequence[str]
) -> StructuredOutputError:
    """The loud end of a re-ask loop: every answer kept, the last validator message shown."""
    return StructuredOutputError(
        f"{what}: {len(raws)} answer(s) failed validation; last: {errors[-1]}", raw=tuple(raws)
    )


def ask_until_valid(
    ctx: Context,
    model: ChatModel,
    first: list[Message],
    schema: dict[str, Any],
    parse: Callable[[str], T],
    *,
    what: str,
    max_tokens: int,
    raws: Sequence[str] = (),
    errors: Sequence[str] = (),
    verify: Callable[[T, bool], T] | None = None,
) -> tuple[T, list[str], list[str], float]:
    """One structured request with up to ``max_reasks`` re-asks, for steps that ask several
    questions per window (judge, tokens); returns (parsed, raws, errors, model latency).
    ``raws``/``errors`` continue from answers already rejected (e.g. a cached one).
    ``verify(parsed, final)`` checks what parsing cannot (evidence quotes): it raises
    AnswerInvalid to re-ask, or, on the last allowed answer (``final``), marks what failed."""
    raws = list(raws)
    errors = list(errors)
    latency = 0.0
    gen = ctx.strategy.generation
    while len(raws) <= ctx.strategy.max_reasks:
        turns = with_reasks(first, raws, errors, ctx.prompts["reask"])
        done = model.complete(
            turns, json_schema=schema, max_tokens=max_tokens, temperature=gen.temperature
        )
        raws.append(done.text)
        latency += done.latency_s
        try:
            parsed = parse(done.text)
            final = len(raws) > ctx.strategy.max_reasks
            return (verify(parsed, final) if verify else parsed), raws, errors, latency
        except AnswerInvalid as exc:
            errors.append(str(exc))
    raise validation_failed(what, raws, errors)


def ask_answer(
    state: WindowState,
    ctx: Context,
    model: ChatModel,
    first: list[Message],
    sources: dict[str, str | None],
) -> dict:
    """Send the first request plus every rejected answer with its re-ask, get a new answer.
    ``sources``: ref -> the text its evidence must quote (None: not text, e.g. a frame)."""
    raws = state.get("raws", [])
    turns = with_reasks(first, raws, state.get("errors", []), ctx.prompts["reask"])
    schema = answer_schema(ctx.prompts["answer"].schema, ctx.labelset, tuple(sources))
    gen = ctx.strategy.generation
    done = model.complete(
        turns, json_schema=schema, max_tokens=gen.answer_max_tokens, temperature=gen.temperature
    )
    return {
        "sources": sources,
        "raws": [*raws, done.text],
        "model_latency_s": state.get("model_latency_s", 0.0) + done.latency_s,
    }


def answer_from_captions(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    items = caption_items(state["captions"])
    rendered = ctx.prompts["answer"].render(
        labelset=ctx.labelset, captions=items, start_s=clip.start_s, end_s=clip.end_s
    )
    first = chat_turns(rendered.system, rendered.user)
    return ask_answer(state, ctx, ctx.llm, first, sources_of(items))


def answer_from_frames(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    batch = ctx.frames.get(clip)
    rendered = ctx.prompts["answer"].render(
        labelset=ctx.labelset,
        n_frames=len(batch.frame_idx),
        start_s=clip.start_s,
        end_s=clip.end_s,
        timestamps=list(batch.timestamps_s),
    )
    sources = {time_ref(t): None for t in batch.timestamps_s}  # frames: nothing to quote
    first = chat_turns(rendered.system, rendered.user, batch.frames)
    return ask_answer(state, ctx, ctx.vlm, first, sources)


def answer_from_tokens(state: WindowState, runtime: Runtime[Context]) -> dict:
    """The LLM labels the window from its action narrative (the per-frame tokens in order).

    A prompt that reads ``spans`` (narrative.v2) sees consecutive frames with equal tags
    merged into one span with its times, cited by its first frame's ref; one that reads
    ``frames`` (narrative.v1) sees every frame."""
    ctx = runtime.context
    clip = state["clip"]
    frames, spans = narrative_items(state["timestamps_s"], state["tags"])
    prompt = ctx.prompts["answer"]
    rendered = prompt.render(
        labelset=ctx.labelset, frames=frames, spans=spans, start_s=clip.start_s, end_s=clip.end_s
    )
    shown = spans if "spans" in prompt.variables else frames
    sources = {f["ref"]: tags_text(f["tags"]) for f in shown}  # what the prompt shows, quotable
    return ask_answer(state, ctx, ctx.llm, chat_turns(rendered.system, rendered.user), sources)


def validate(state: WindowState, runtime: Runtime[Context]) -> dict:
    """The schema, the label set's rules, then the evidence quotes (tools.evidence): on the
    last allowed answer, quotes not found are kept and marked unverified."""
    ctx = runtime.context
    sources = state["sources"]
    schema = answer_schema(ctx.prompts["answer"].schema, ctx.labelset, tuple(sources))
    retry = len(state["raws"]) <= ctx.strategy.max_reasks
    try:
        parsed = parse_answer(state["raws"][-1], schema, ctx.labelset)
        evidence = check_evidence(parsed.evidence, sources, final=quotes_final(ctx, not retry))
    except AnswerInvalid as exc:
        errors = [*state.get("errors", []), str(exc)]
        return {"answer": None, "errors": errors, "next": "answer" if retry else "give_up"}
    answer = dataclasses.replace(parsed, evidence=evidence)
    return {"answer": answer, "raw": state["raws"][-1], "next": "finalize"}


def quotes_final(ctx: Context, final: bool) -> bool:
    """Whether a quote not found is kept (marked unverified) rather than re-asked: on the last
    allowed answer, or always under ``evidence.check: mark``."""
    return final or ctx.strategy.evidence.check == "mark"


def route_after_validate(state: WindowState) -> Step:
    return state["next"]


def finalize(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    parsed = state["answer"]
    captions = tuple(state.get("captions", ()))
    # The models this window's answer rests on (a direct answer never asks the LLM).
    models = {"vlm": ctx.vlm.model_id} if ctx.vlm is not None else {}
    if captions and ctx.llm is not None:
        models["llm"] = ctx.llm.model_id
    if state.get("scores") is not None and ctx.scorer is not None:
        models["scorer"] = ctx.scorer.model_id
    latency = state.get("model_latency_s", 0.0) + sum(c.latency_s for c in captions)
    rejected = (*state.get("step_errors", ()), *state.get("errors", ()))
    prediction = Prediction(
        clip_id=clip.clip_id,
        video=clip.video,
        start_s=clip.start_s,
        end_s=clip.end_s,
        labels=parsed.labels,
        evidence=parsed.evidence,
        explanation=parsed.explanation,
        strategy=ctx.strategy.name,
        prompts=ctx.prompt_refs,
        models=models,
        raw=state["raw"],
        attempts=1 + len(rejected),
        reask_errors=rejected,
        scores=state.get("scores"),
        captions=captions,
        latency_s=round(latency, 4),
        pixels=ctx.frames.pixels.sha256,
    )
    return {"prediction": prediction}


def give_up(state: WindowState, runtime: Runtime[Context]) -> dict:
    """Fail loudly with every answer kept; never substitute a default label."""
    raise validation_failed(f"window {state['clip'].clip_id}", state["raws"], state["errors"])


def add_answer_loop(g: StateGraph, finalize_node: Callable[..., dict] = finalize) -> None:
    """Wire answer -> validate -> finalize | answer (re-ask) | give_up into ``g``, whose
    ``answer`` node the caller adds and enters; ``finalize_node`` may extend ``finalize``."""
    g.add_node("validate", validate)
    g.add_node("finalize", finalize_node)
    g.add_node("give_up", give_up)
    g.add_edge("answer", "validate")
    g.add_conditional_edges(
        "validate",
        route_after_validate,
        {"finalize": "finalize", "answer": "answer", "give_up": "give_up"},
    )
    g.add_edge("finalize", END)
    g.add_edge("give_up", END)
