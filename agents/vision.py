"""VLM steps over a window's frames, with the caption cache in front of the model.

``describe`` renders nothing itself: it takes a rendered prompt and a slice of the window's
frames, answers from the cache when the same frames, model, prompt and settings were seen
before, and otherwise asks the VLM and stores the answer. The ``caption`` node (one caption
per ``frames_per_caption`` frames) and the semantic-tokens node both use it, so editing a
reasoning prompt or swapping the LLM never re-captions a video. Keys need only the window's
FramePlan (indices, times, and the pixel steps the frames go through: other pixels, other
captions); pixels are fetched on a miss. ``captions_cached`` and
``tokens_cached`` tell the runner ahead of time that a window needs no pixels at all, so a
re-run after a prompt edit does not even decode the video. With ``tokens.vocab`` the tag
schema's fields are enums of the vocabulary (``vara.tools.vocab``) and its sha256 joins the
tokens' cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.nodes import ask_until_valid
from vara.agents.state import WindowState
from vara.prompts.loader import PromptTemplate, RenderedPrompt
from vara.tools.cache import CachedCaption
from vara.tools.reason import AnswerInvalid, parse_tokens, tokens_schema
from vara.tools.turns import chat_turns
from vara.tools.vocab import load_vocabulary, vocab_schema
from vara.types import Caption, FramePlan

__all__ = ["describe", "caption", "captions_cached", "tokens", "tokens_cached", "frame_groups"]

# A caption of N tokens is roughly 0.6 N English words; asking for fewer words than the
# token cap keeps captions from being cut mid-sentence.
_WORDS_PER_TOKEN = 0.6


def frame_groups(n_frames: int, per_group: int | None) -> list[slice]:
    step = per_group or n_frames
    return [slice(lo, min(lo + step, n_frames)) for lo in range(0, n_frames, step)]


def describe(
    ctx: Context,
    plan: FramePlan,
    part: slice,
    prompt: PromptTemplate,
    rendered: RenderedPrompt,
    *,
    max_tokens: int,
    json_schema: dict[str, Any] | None = None,
    vocab_sha256: str | None = None,
) -> Caption:
    """The VLM's answer about frames ``plan.frame_idx[part]``, from the cache when possible.

    The frames are decoded (through the run's FrameStore) only when the cache misses.
    """
    gen = _generation(ctx, max_tokens, json_schema, vocab_sha256)
    key = _cache_key(ctx, plan, part, prompt, rendered, gen)

    def ask() -> CachedCaption:
        done = ctx.vlm.complete(
            chat_turns(rendered.system, rendered.user, ctx.frames.get(plan.clip).frames[part]),
            json_schema=json_schema,
            max_tokens=max_tokens,
            temperature=gen["temperature"],
        )
        ctx.stats.add(caption_requests=1)
        return CachedCaption(done.text, done.model, done.latency_s)

    if key is None:
        answer, cached = ask(), False
    else:  # overlapping windows in flight together ask for shared frames once
        answer, cached = ctx.cache.get_or_make(key, ask)
        if cached:
            ctx.stats.add(caption_cache_hits=1)
    return _caption(plan, part, prompt, answer.text, answer.model, answer.latency_s, cached)


def _generation(
    ctx: Context, max_tokens: int, json_schema: dict[str, Any] | None, vocab_sha256: str | None
) -> dict:
    gen: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": ctx.strategy.generation.temperature,
    }
    if json_schema is not None:
        schema_text = json.dumps(json_schema, sort_keys=True)
        gen["schema_sha256"] = hashlib.sha256(schema_text.encode()).hexdigest()
    if vocab_sha256 is not None:  # tags under another vocabulary are other tags
        gen["vocab_sha256"] = vocab_sha256
    return gen


def _cache_key(ctx, plan, part, prompt, rendered, gen) -> str | None:
    if ctx.cache is None:
        return None
    return ctx.cache.key(
        video=plan.clip.video,
        frame_idx=plan.frame_idx[part],
        pixels=plan.pixels.canonical,
        model=ctx.vlm.cache_identity,
        prompt_sha256=prompt.sha256,
        rendered=rendered.system + "\n\n" + rendered.user,
        generation=gen,
    )


def _cached(
    ctx, plan, part, prompt, rendered, *, max_tokens, json_schema=None, vocab_sha256=None
) -> bool:
    gen = _generation(ctx, max_tokens, json_schema, vocab_sha256)
    key = _cache_key(ctx, plan, part, prompt, rendered, gen)
    return key is not None and ctx.cache.get(key) is not None


def _caption(plan, part, prompt, text, model, latency_s, cached) -> Caption:
    return Caption(
        clip_id=plan.clip.clip_id,
        text=text.strip(),
        frame_idx=plan.frame_idx[part],
        timestamps_s=plan.timestamps_s[part],
        model=model,
        prompt_id=f"{prompt.id}.v{prompt.version}",
        prompt_hash=prompt.sha256,
        latency_s=latency_s,
        cached=cached,
    )


def _caption_requests(ctx: Context, plan: FramePlan) -> list[tuple[slice, RenderedPrompt]]:
    """One (frames, rendered caption prompt) per group of ``frames_per_caption`` frames."""
    clip, prompt = plan.clip, ctx.prompts["caption"]
    max_words = max(10, int(ctx.strategy.generation.caption_max_tokens * _WORDS_PER_TOKEN))
    out = []
    groups = frame_groups(len(plan.frame_idx), ctx.strategy.frames_per_caption)
    for part in groups:
        ts = plan.timestamps_s[part]
        # A group of frames names its own span, not the window's: the same frames in the
        # next (overlapping) window then render the same prompt and hit the cache.
        span = (clip.start_s, clip.end_s) if len(groups) == 1 else (ts[0], ts[-1])
        rendered = prompt.render(
            domain=ctx.labelset.description,
            n_frames=len(ts),
            start_s=span[0],
            end_s=span[1],
            timestamps=list(ts),
            max_words=max_words,
        )
        out.append((part, rendered))
    return out


def captions_cached(ctx: Context, plan: FramePlan) -> bool:
    """Whether every caption ``caption`` would ask for is in the cache (no pixels needed)."""
    prompt, max_tokens = ctx.prompts["caption"], ctx.strategy.generation.caption_max_tokens
    return all(
        _cached(ctx, plan, part, prompt, rendered, max_tokens=max_tokens)
        for part, rendered in _caption_requests(ctx, plan)
    )


def caption(state: WindowState, runtime: Runtime[Context]) -> dict:
    """One VLM caption per group of ``frames_per_caption`` frames (default: all frames)."""
    ctx = runtime.context
    plan = ctx.frames.plan(state["clip"])
    prompt, max_tokens = ctx.prompts["caption"], ctx.strategy.generation.caption_max_tokens
    captions = [
        describe(ctx, plan, part, prompt, rendered, max_tokens=max_tokens)
        for part, rendered in _caption_requests(ctx, plan)
    ]
    return {"captions": captions}


@dataclass(frozen=True)
class _TokensRequest:
    schema: dict[str, Any]  # one entry per frame; enums of the vocabulary when one is set
    rendered: RenderedPrompt
    vocab_sha256: str | None


def _tokens_request(ctx: Context, plan: FramePlan) -> _TokensRequest:
    """The semantic-tokens schema for this window's frame count (with ``tokens.vocab``, each
    tag field an enum of the vocabulary) and its rendered prompt."""
    clip, prompt = plan.clip, ctx.prompts["tokens"]
    template, vocab_sha256 = prompt.schema, None
    if ctx.strategy.tokens.vocab:
        vocab = load_vocabulary(ctx.strategy.tokens.vocab)
        template, vocab_sha256 = vocab_schema(template, vocab), vocab.sha256
    rendered = prompt.render(
        domain=ctx.labelset.description,
        n_frames=len(plan.frame_idx),
        start_s=clip.start_s,
        end_s=clip.end_s,
        timestamps=list(plan.timestamps_s),
    )
    return _TokensRequest(tokens_schema(template, len(plan.frame_idx)), rendered, vocab_sha256)


def tokens_cached(ctx: Context, plan: FramePlan) -> bool:
    """Whether the window's semantic tokens are in the cache (no pixels needed)."""
    req = _tokens_request(ctx, plan)
    every = slice(0, len(plan.frame_idx))
    max_tokens = ctx.strategy.generation.tokens_max_tokens
    return _cached(
        ctx,
        plan,
        every,
        ctx.prompts["tokens"],
        req.rendered,
        max_tokens=max_tokens,
        json_schema=req.schema,
        vocab_sha256=req.vocab_sha256,
    )


def tokens(state: WindowState, runtime: Runtime[Context]) -> dict:
    """Per-frame semantic tokens (actors, actions, objects, body parts, tools, motion).

    The first answer may come from the cache; if it fails validation the VLM is re-asked
    (with the frames again) up to ``max_reasks`` times, then the window fails loudly.
    """
    ctx = runtime.context
    clip = state["clip"]
    plan = ctx.frames.plan(clip)
    prompt = ctx.prompts["tokens"]
    n = len(plan.frame_idx)
    req = _tokens_request(ctx, plan)
    schema, rendered = req.schema, req.rendered
    max_tokens = ctx.strategy.generation.tokens_max_tokens
    first = describe(
        ctx,
        plan,
        slice(0, n),
        prompt,
        rendered,
        max_tokens=max_tokens,
        json_schema=schema,
        vocab_sha256=req.vocab_sha256,
    )
    parse = partial(parse_tokens, schema=schema)
    reask_latency_s = 0.0
    try:
        tags, errors, text = parse(first.text), [], first.text
    except AnswerInvalid as exc:
        turns = chat_turns(rendered.system, rendered.user, ctx.frames.get(clip).frames)
        tags, raws, errors, reask_latency_s = ask_until_valid(
            ctx,
            ctx.vlm,
            turns,
            schema,
            parse,
            what=f"window {clip.clip_id}, semantic tokens",
            max_tokens=max_tokens,
            raws=[first.text],
            errors=[str(exc)],
        )
        ctx.stats.add(caption_requests=len(raws) - 1)  # re-asks send the frames too
        text = raws[-1]
    record = dataclasses.replace(first, text=text)  # provenance: the tokens as accepted
    return {
        "captions": [record],
        "tags": list(tags),
        "step_errors": errors,
        "model_latency_s": state.get("model_latency_s", 0.0) + reask_latency_s,
    }
