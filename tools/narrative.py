"""The narrative of a window's per-frame semantic tokens: what an answer prompt reads of them.

``merge_spans`` merges consecutive frames with identical tags into one span with its times,
the shape of the narrative ("0.00-1.50 s: adult | squeeze bag | bag-valve mask | ...");
``span_text`` and ``tags_text`` are the text a span or a frame shows (and a quote cites);
``narrative_items`` gives a prompt both views (``frames`` for narrative.v1, ``spans`` for
narrative.v2). The semantic-tokens graph (``agents.nodes``) and the tokens mode of
``vara finetune lvlm_sft`` both render from here, so training reads what inference sends.
The closed vocabulary the tags are drawn from is ``tools.vocab``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vara.tools.reason import TAG_FIELDS, time_ref

__all__ = ["Span", "merge_spans", "narrative_items", "span_text", "tags_text"]


@dataclass(frozen=True)
class Span:
    """Consecutive frames ``first_idx..last_idx`` (positions in the window) with equal tags."""

    start_s: float
    end_s: float
    first_idx: int
    last_idx: int
    tags: dict[str, Any]


def merge_spans(timestamps_s: Sequence[float], tags: Sequence[Mapping[str, Any]]) -> list[Span]:
    """Frames in time order -> spans: a frame whose tags equal the previous one's extends its
    span (its end time becomes this frame's time)."""
    if len(timestamps_s) != len(tags):
        raise ValueError(f"merge_spans: {len(timestamps_s)} times for {len(tags)} tag sets")
    spans: list[Span] = []
    for i, (t, frame) in enumerate(zip(timestamps_s, tags, strict=True)):
        if spans and spans[-1].tags == dict(frame):
            last = spans[-1]
            spans[-1] = Span(last.start_s, float(t), last.first_idx, i, last.tags)
        else:
            spans.append(Span(float(t), float(t), i, i, dict(frame)))
    return spans


def span_text(tags: Mapping[str, Any]) -> str:
    """A span's tags in TAG_FIELDS order, ``|``-separated, ``-`` for an empty field."""
    parts = []
    for field in TAG_FIELDS:
        value = tags.get(field) or ""
        text = ", ".join(value) if isinstance(value, list | tuple) else str(value)
        parts.append(text or "-")
    return " | ".join(parts)


def tags_text(tags: Mapping[str, Any]) -> str:
    """One frame's semantic tokens as the narrative prompt shows them (what a quote cites)."""
    parts = []
    for field in TAG_FIELDS:
        value = tags.get(field) or ""
        parts.append(f"{field}: {', '.join(value) if isinstance(value, list) else value}")
    return "; ".join(parts)


def narrative_items(
    timestamps_s: Sequence[float], tags: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What an answer prompt reads of a window's tags: ``frames`` (narrative.v1: one item per
    frame, ``{ref, tags}``) and ``spans`` (narrative.v2: equal consecutive frames merged,
    cited by their first frame's ref). The semantic-tokens graph and the tokens mode of
    ``vara finetune lvlm_sft`` both render from these, so training reads what inference sends."""
    frames = [
        {"ref": time_ref(t), "tags": dict(g)} for t, g in zip(timestamps_s, tags, strict=True)
    ]
    spans = [
        {
            "ref": time_ref(s.start_s),
            "start_s": s.start_s,
            "end_s": s.end_s,
            "tags": s.tags,
            "text": span_text(s.tags),
        }
        for s in merge_spans(timestamps_s, tags)
    ]
    return frames, spans
