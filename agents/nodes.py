"""Node functions of the window graphs: plain functions returning partial state updates.

sample -> [caption] -> answer -> validate -> (finalize | answer again | give_up).
``answer`` sends the model the first request plus, after a rejected answer, that answer and
the re-ask prompt carrying the validator's message; ``validate`` decides the next step so the
retry cap lives in one place (``strategy.max_reasks``), not in LangGraph's recursion limit.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.state import Step, WindowState
from vara.errors import StructuredOutputError
from vara.tools.chat import ChatModel, Message
from vara.tools.reason import (
    AnswerInvalid,
    answer_schema,
    caption_items,
    caption_ref,
    parse_answer,
    time_ref,
)
from vara.types import Caption, Prediction

__all__ = [
    "sample",
    "caption",
    "answer_from_captions",
    "answer_from_frames",
    "validate",
    "route_after_validate",
    "finalize",
    "give_up",
]

# A caption of N tokens is roughly 0.6 N English words; asking for fewer words than the
# token cap keeps captions from being cut mid-sentence.
_WORDS_PER_TOKEN = 0.6


def _messages(system: str, user: str, images=()) -> list[Message]:
    head = [Message("system", system)] if system else []
    return [*head, Message("user", user, images=tuple(images))]


def sample(state: WindowState, runtime: Runtime[Context]) -> dict:
    batch = runtime.context.frames.get(state["clip"])
    return {"frame_idx": batch.frame_idx, "timestamps_s": batch.timestamps_s}


def caption(state: WindowState, runtime: Runtime[Context]) -> dict:
    """One VLM caption per group of ``frames_per_caption`` frames (default: all frames)."""
    ctx = runtime.context
    clip = state["clip"]
    batch = ctx.frames.get(clip)
    prompt = ctx.prompts["caption"]
    gen = ctx.strategy.generation
    n = len(batch.frame_idx)
    step = ctx.strategy.frames_per_caption or n
    captions: list[Caption] = []
    for lo in range(0, n, step):
        ts = batch.timestamps_s[lo : lo + step]
        rendered = prompt.render(
            domain=ctx.labelset.description,
            n_frames=len(ts),
            start_s=clip.start_s,
            end_s=clip.end_s,
            timestamps=list(ts),
            max_words=max(10, int(gen.caption_max_tokens * _WORDS_PER_TOKEN)),
        )
        done = ctx.vlm.complete(
            _messages(rendered.system, rendered.user, batch.frames[lo : lo + step]),
            max_tokens=gen.caption_max_tokens,
            temperature=gen.temperature,
        )
        captions.append(
            Caption(
                clip_id=clip.clip_id,
                text=done.text.strip(),
                frame_idx=batch.frame_idx[lo : lo + step],
                timestamps_s=ts,
                model=done.model,
                prompt_id=f"{prompt.id}.v{prompt.version}",
                prompt_hash=prompt.sha256,
                latency_s=done.latency_s,
            )
        )
    return {"captions": captions}


def _ask(
    state: WindowState,
    ctx: Context,
    model: ChatModel,
    first: list[Message],
    refs: tuple[str, ...],
) -> dict:
    """Send the first request plus every rejected answer with its re-ask, get a new answer."""
    messages = list(first)
    reask = ctx.prompts["reask"]
    for raw, error in zip(state.get("raws", []), state.get("errors", []), strict=True):
        messages.append(Message("assistant", raw))
        messages.append(Message("user", reask.render(error=error).user))
    schema = answer_schema(ctx.prompts["answer"].schema, ctx.labelset, refs)
    gen = ctx.strategy.generation
    done = model.complete(
        messages, json_schema=schema, max_tokens=gen.answer_max_tokens, temperature=gen.temperature
    )
    return {
        "refs": refs,
        "raws": [*state.get("raws", []), done.text],
        "model_latency_s": state.get("model_latency_s", 0.0) + done.latency_s,
    }


def answer_from_captions(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    captions = state["captions"]
    rendered = ctx.prompts["answer"].render(
        labelset=ctx.labelset,
        captions=caption_items(captions),
        start_s=clip.start_s,
        end_s=clip.end_s,
    )
    refs = tuple(caption_ref(i) for i in range(1, len(captions) + 1))
    return _ask(state, ctx, ctx.llm, _messages(rendered.system, rendered.user), refs)


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
    refs = tuple(time_ref(t) for t in batch.timestamps_s)
    first = _messages(rendered.system, rendered.user, batch.frames)
    return _ask(state, ctx, ctx.vlm, first, refs)


def validate(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    schema = answer_schema(ctx.prompts["answer"].schema, ctx.labelset, state["refs"])
    try:
        parsed = parse_answer(state["raws"][-1], schema, ctx.labelset)
    except AnswerInvalid as exc:
        errors = [*state.get("errors", []), str(exc)]
        retry = len(state["raws"]) <= ctx.strategy.max_reasks
        return {"answer": None, "errors": errors, "next": "answer" if retry else "give_up"}
    return {"answer": parsed, "next": "finalize"}


def route_after_validate(state: WindowState) -> Step:
    return state["next"]


def finalize(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    parsed = state["answer"]
    captions = tuple(state.get("captions", ()))
    models = {"vlm": ctx.vlm.model_id}
    if captions:
        models["llm"] = ctx.llm.model_id
    latency = state.get("model_latency_s", 0.0) + sum(c.latency_s for c in captions)
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
        raw=state["raws"][-1],
        attempts=len(state["raws"]),
        reask_errors=tuple(state.get("errors", ())),
        captions=captions,
        latency_s=round(latency, 4),
    )
    return {"prediction": prediction}


def give_up(state: WindowState, runtime: Runtime[Context]) -> dict:
    """Fail loudly with every answer kept; never substitute a default label."""
    clip = state["clip"]
    n = len(state["raws"])
    raise StructuredOutputError(
        f"window {clip.clip_id}: {n} answer(s) failed validation; last: {state['errors'][-1]}",
        raw=tuple(state["raws"]),
    )
