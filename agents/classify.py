"""Strategies around a scorer (``scorer.kind``, e.g. a ``vara finetune`` run directory),
which they see only through the ``tools.scorer.Scorer`` protocol.

``classifier``: sample -> classify -> decide -> finalize. Labels are the classes whose score
reaches its threshold (tuned on the validation videos, for a trained classifier) in a
multi-label set, or the top class in a single-label one; the scores ride along in
``Prediction.scores`` for threshold tuning and reports.

``classifier-explain``: sample -> classify -> caption (VLM) -> explain -> finalize. The labels
stay the scorer's; an LLM writes a schema-constrained explanation from the captions and
the scores, citing captions or the classifier (validated, re-asked once, then a loud error).
"""

from __future__ import annotations

import json

from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.nodes import ask_until_valid, quotes_final
from vara.agents.state import WindowState
from vara.tools.evidence import check_evidence, sources_of
from vara.tools.reason import (
    Answer,
    caption_items,
    explain_schema,
    validate_json,
)
from vara.tools.scorer import labels_for
from vara.tools.turns import chat_turns
from vara.types import ClassScores, Evidence

__all__ = ["classify", "from_scores", "explain", "score_text", "CLASSIFIER_REF"]

CLASSIFIER_REF = "classifier"


def score_text(scores: ClassScores, multi_label: bool) -> str:
    """``Ventilation=0.91 (>=0.42), ...``: what a prediction's classifier evidence says."""
    parts = []
    for label, p, t in zip(scores.labels, scores.probs, scores.thresholds, strict=True):
        parts.append(f"{label}={p:.3f}" + (f" (>={t:.2f})" if multi_label else ""))
    return ", ".join(parts)


def classify(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    if ctx.scorer is None:  # check_strategy refuses this; a direct invoke may not
        raise RuntimeError("no scorer loaded: set scorer.kind and its model")
    scores = ctx.scorer.predict([ctx.frames.get(state["clip"])])[0]
    return {"scores": scores}


def _classifier_evidence(ctx: Context, scores: ClassScores) -> Evidence:
    text = score_text(scores, ctx.labelset.multi_label)
    return Evidence(source="classifier", ref=CLASSIFIER_REF, text=text)


def from_scores(state: WindowState, runtime: Runtime[Context]) -> dict:
    """The scorer's decision as the window's answer (no language model involved)."""
    ctx = runtime.context
    scores = state["scores"]
    labels = labels_for(scores, ctx.labelset.multi_label)
    what = ", ".join(labels) if labels else "none"
    if ctx.labelset.multi_label:
        explanation = f"Classes whose classifier score reaches its tuned threshold: {what}."
    else:
        explanation = f"The class with the top classifier score: {what}."
    answer = Answer(
        labels=labels, evidence=(_classifier_evidence(ctx, scores),), explanation=explanation
    )
    return {"answer": answer, "raw": json.dumps(scores.to_dict())}


def explain(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    scores = state["scores"]
    labels = labels_for(scores, ctx.labelset.multi_label)
    items = caption_items(state["captions"])
    prompt = ctx.prompts["explain"]
    rendered = prompt.render(
        labelset=ctx.labelset,
        captions=items,
        scores=[
            {"label": lab, "prob": p, "threshold": t}
            for lab, p, t in zip(scores.labels, scores.probs, scores.thresholds, strict=True)
        ],
        predicted=list(labels),
        start_s=clip.start_s,
        end_s=clip.end_s,
    )
    sources = sources_of(items)
    # The scores as explain.v1 shows them under [classifier]: what a quote of them must match.
    shown = ", ".join(f"{lab}={p:.2f}" for lab, p in zip(scores.labels, scores.probs, strict=True))
    sources[CLASSIFIER_REF] = f"scores: {shown}"
    schema = explain_schema(prompt.schema, list(sources))

    def parse(text: str) -> tuple[tuple[Evidence, ...], str]:
        data = validate_json(text, schema)
        cited = tuple(
            Evidence(
                source="classifier" if e["ref"] == CLASSIFIER_REF else "caption",
                ref=e["ref"],
                text=e["text"],
            )
            for e in data["evidence"]
        )
        return cited, data["explanation"]

    def verify(parsed: tuple[tuple[Evidence, ...], str], final: bool):
        cited, explanation = parsed
        return check_evidence(cited, sources, final=quotes_final(ctx, final)), explanation

    (cited, explanation), raws, errors, latency = ask_until_valid(
        ctx,
        ctx.llm,
        chat_turns(rendered.system, rendered.user),
        schema,
        parse,
        what=f"window {clip.clip_id}, explanation",
        max_tokens=ctx.strategy.generation.answer_max_tokens,
        verify=verify,
    )
    evidence = (_classifier_evidence(ctx, scores), *cited)
    return {
        "answer": Answer(labels=labels, evidence=evidence, explanation=explanation),
        "raw": raws[-1],
        "step_errors": errors,
        "model_latency_s": state.get("model_latency_s", 0.0) + latency,
    }
