"""caption-judge: one schema-constrained yes/no judgement per class from a window's captions.

The newborn study's caption -> LLM-judge design, without its regex parsing and its silent
"no" on an unparseable answer: each judgement is constrained to {evidence, answer: yes|no,
confidence 0-100, reason}, validated, re-asked once, and a second failure fails the window.

From the judgements: ``scores`` = P(present) per class (confidence/100 for "yes", 1 - that
for "no"), usable for per-class threshold tuning. Multi-label: the classes judged "yes"; when
two exclusive classes are both "yes", the lower-scored one is dropped and the explanation
says so. Single-label: the class judged "yes" with the highest score; when no class is
judged "yes", the class with the highest score, and the explanation says so (ties:
label-set order, said in the explanation). The answers decide before the confidences, as in
multi-label: a "yes" at 30% is chosen over a "no" at 10% (P(present) 0.9), whose numbers
contradict its answer.
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial

from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.nodes import ask_until_valid, quotes_final
from vara.agents.state import WindowState
from vara.tools.evidence import check_evidence, sources_of
from vara.tools.reason import (
    Answer,
    Judgement,
    caption_items,
    caption_ref,
    judge_schema,
    parse_judgement,
)
from vara.tools.turns import chat_turns
from vara.types import ClassScores, LabelSet

__all__ = ["judge", "decide"]

DEFAULT_THRESHOLD = 0.5


def judge(state: WindowState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    clip = state["clip"]
    captions = state["captions"]
    prompt = ctx.prompts["judge"]
    schema = judge_schema(prompt.schema, [caption_ref(i) for i in range(1, len(captions) + 1)])
    items = caption_items(captions)
    sources = sources_of(items)

    def verify(j: Judgement, final: bool) -> Judgement:
        checked = check_evidence(j.evidence, sources, final=quotes_final(ctx, final))
        return dataclasses.replace(j, evidence=checked)

    judgements: dict[str, Judgement] = {}
    accepted: dict[str, str] = {}
    raws: list[str] = []
    errors: list[str] = []
    latency = 0.0
    for label in ctx.labelset.labels:
        rendered = prompt.render(
            labelset=ctx.labelset,
            label=label,
            captions=items,
            start_s=clip.start_s,
            end_s=clip.end_s,
        )
        j, r, e, lat = ask_until_valid(
            ctx,
            ctx.llm,
            chat_turns(rendered.system, rendered.user),
            schema,
            partial(parse_judgement, schema=schema),
            what=f"window {clip.clip_id}, judging {label.name!r}",
            max_tokens=ctx.strategy.generation.answer_max_tokens,
            verify=verify,
        )
        judgements[label.name], accepted[label.name] = j, r[-1]
        raws += r
        errors += e
        latency += lat
    answer, scores = decide(ctx.labelset, judgements)
    return {
        "answer": answer,
        "scores": scores,
        "raws": raws,
        "errors": errors,
        "raw": json.dumps(accepted, ensure_ascii=False),
        "model_latency_s": latency,
    }


def decide(labelset: LabelSet, judgements: dict[str, Judgement]) -> tuple[Answer, ClassScores]:
    """Labels, evidence and explanation from per-class judgements (see the module docstring)."""
    names = labelset.names
    scores = ClassScores(
        labels=names,
        probs=tuple(judgements[n].score for n in names),
        thresholds=(DEFAULT_THRESHOLD,) * len(names),
    )
    notes: list[str] = []
    if labelset.multi_label:
        chosen = [n for n in names if judgements[n].present]
        for group in labelset.exclusive:
            clash = [n for n in group if n in chosen]
            if len(clash) > 1:
                keep = max(clash, key=lambda n: judgements[n].score)
                dropped = [n for n in clash if n != keep]
                chosen = [n for n in chosen if n not in dropped]
                tie = len({judgements[n].score for n in clash}) == 1
                why = "same score: the first in the label set's order" if tie else "higher score"
                notes.append(f"{', '.join(dropped)} dropped: exclusive with {keep} ({why})")
    else:
        candidates = [n for n in names if judgements[n].present]
        if not candidates:
            candidates = list(names)
            notes.append("no activity judged yes: the one with the highest score chosen")
        chosen = [max(candidates, key=lambda n: judgements[n].score)]
        top = judgements[chosen[0]].score
        tied = [n for n in candidates if judgements[n].score == top]
        if len(tied) > 1:  # said, not hidden: the scores cannot tell these apart
            notes.append(
                f"{', '.join(tied)} tied at {top:.2f}: {chosen[0]} chosen, the first in the "
                "label set's order"
            )
    cited = [n for n in names if n in chosen] or list(names)
    evidence = tuple(dict.fromkeys(e for n in cited for e in judgements[n].evidence))
    lines = [
        f"{n}: {'yes' if judgements[n].present else 'no'} ({judgements[n].confidence}%), "
        f"{judgements[n].reason}"
        for n in names
    ]
    answer = Answer(labels=tuple(chosen), evidence=evidence, explanation="; ".join(lines + notes))
    return answer, scores
