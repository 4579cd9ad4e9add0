"""VLM steps over a window's frames, with the caption cache in front of the model.

``describe`` renders nothing itself: it takes a rendered prompt and a slice of the window's
frames, answers from the cache when the same frames, model, prompt and settings were seen
before, and otherwise asks the VLM and stores the answer. The ``caption`` node (one caption
per ``frames_per_caption`` frames) and the semantic-tokens node both use it, so editing a
reasoning prompt or swapping the LLM never re-captions a video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.nodes import ask_until_valid, chat_turns
from vara.agents.state import WindowState
from vara.prompts.loader import PromptTemplate, RenderedPrompt
from vara.tools.cache import CachedCaption
from vara.tools.reason import AnswerInvalid, parse_tokens, tokens_schema
from vara.types import Caption, FrameBatch

__all__ = ["describe", "caption", "tokens", "frame_groups"]

# A caption of N tokens is roughly 0.6 N English words; asking for fewer words than the
# token cap keeps captions from being cut mid-sentence.
_WORDS_PER_TOKEN = 0.6


def frame_groups(n_frames: int, per_group: int | None) -> list[slice]:
    step = per_group or n_frames
    return [slice(lo, min(lo + step, n_frames)) for lo in range(0, n_frames, step)]


def describe(
    ctx: Context,
    batch: FrameBatch,
    part: slice,
    prompt: PromptTemplate,
    rendered: RenderedPrompt,
    *,
    max_tokens: int,
    json_schema: dict[str, Any] | None = None,
) -> Caption:
    """The VLM's answer about ``batch.frames[part]``, from the cache when possible."""
    gen = {"max_tokens": max_tokens, "temperature": ctx.strategy.generation.temperature}
    if json_schema is not None:
        schema_text = json.dumps(json_schema, sort_keys=True)
        gen["schema_sha256"] = hashlib.sha256(schema_text.encode()).hexdigest()
    key = None
    if ctx.cache is not None:
        key = ctx.cache.key(
            video=batch.clip.video,
            frame_idx=batch.frame_idx[part],
            max_side=batch.sampler.max_side,
            model=ctx.vlm.model_id,
            prompt_sha256=prompt.sha256,
            rendered=rendered.system + "\n\n" + rendered.user,
            generation=gen,
        )
        hit = ctx.cache.get(key)
        if hit is not None:
            ctx.stats.add(caption_cache_hits=1)
            return _caption(batch, part, prompt, hit.text, hit.model, hit.latency_s, True)
    done = ctx.vlm.complete(
        chat_turns(rendered.system, rendered.user, batch.frames[part]),
        json_schema=json_schema,
        max_tokens=max_tokens,
        temperature=gen["temperature"],
    )
    ctx.stats.add(caption_requests=1)
    if key is not None:
        ctx.cache.put(key, CachedCaption(done.text, done.model, done.latency_s))
    return _caption(batch, part, prompt, done.text, done.model, done.latency_s, False)


def _caption(batch, part, prompt, text, model, latency_s, cached) -> Caption:
    return Caption(
        clip_id=batch.clip.clip_id,
        text=text.strip(),
        frame_idx=batch.frame_idx[part],
        timestamps_s=batch.timestamps_s[part],
        model=model,
        prompt_id=f"{prompt.id}.v{prompt.version}",
        prompt_hash=prompt.sha256,
        latency_s=latency_s,
        cached=cached,
    )


def caption(state: WindowState, runtime: Runtime[Context]) -> dict:
    """One VLM caption per group of ``frames_per_caption`` frames (default: all frames)."""
    ctx = runtime.context
    clip = state["clip"]
    batch = ctx.frames.get(clip)
    prompt = ctx.prompts["caption"]
    gen = ctx.strategy.generation
    captions = []
    for part in frame_groups(len(batch.frame_idx), ctx.strategy.frames_per_caption):
        ts = batch.timestamps_s[part]
        rendered = prompt.render(
            domain=ctx.labelset.description,
            n_frames=len(ts),
            start_s=clip.start_s,
            end_s=clip.end_s,
            timestamps=list(ts),
            max_words=max(10, int(gen.caption_max_tokens * _WORDS_PER_TOKEN)),
        )
        captions.append(
            describe(ctx, batch, part, prompt, rendered, max_tokens=gen.caption_max_tokens)
        )
    return {"captions": captions}


def tokens(state: WindowState, runtime: Runtime[Context]) -> dict:
    """Per-frame semantic tokens (actors, actions, objects, body parts, tools, motion).

    The first answer may come from the cache; if it fails validation the VLM is re-asked
    (with the frames again) up to ``max_reasks`` times, then the window fails loudly.
    """
    ctx = runtime.context
    clip = state["clip"]
    batch = ctx.frames.get(clip)
    prompt = ctx.prompts["tokens"]
    n = len(batch.frame_idx)
    schema = tokens_schema(prompt.schema, n)
    rendered = prompt.render(
        domain=ctx.labelset.description,
        n_frames=n,
        start_s=clip.start_s,
        end_s=clip.end_s,
        timestamps=list(batch.timestamps_s),
    )
    max_tokens = ctx.strategy.generation.tokens_max_tokens
    first = describe(
        ctx, batch, slice(0, n), prompt, rendered, max_tokens=max_tokens, json_schema=schema
    )
    parse = partial(parse_tokens, schema=schema)
    reask_latency_s = 0.0
    try:
        tags, errors, text = parse(first.text), [], first.text
    except AnswerInvalid as exc:
        turns = chat_turns(rendered.system, rendered.user, batch.frames)
        tags, raws, errors, reask_latency_s = ask_until_valid(
            ctx, ctx.vlm, turns, schema, parse, what=f"window {clip.clip_id}, semantic tokens",
            max_tokens=max_tokens, raws=[first.text], errors=[str(exc)],
        )  # fmt: skip
        ctx.stats.add(caption_requests=len(raws) - 1)  # re-asks send the frames too
        text = raws[-1]
    record = dataclasses.replace(first, text=text)  # provenance: the tokens as accepted
    return {
        "captions": [record],
        "tags": list(tags),
        "step_errors": errors,
        "model_latency_s": state.get("model_latency_s", 0.0) + reask_latency_s,
    }
