"""Structured answers: the JSON schema a model must follow, and the checks applied to its text.

The schema comes from a prompt's schema file with the label set's names filled in as an
``enum`` and the window's citable refs (``caption:1``, ``t=0.25s``) as another ``enum``, so a
constrained decoder can only emit known labels and real citations. Every answer is still
parsed and validated here (jsonschema, then the label set's exclusivity rules): a server
without constrained decoding, or a bug in one, must not slip a bad label through.
A failed check raises ``AnswerInvalid`` whose message is written to be sent back to the model
in the single re-ask; the agents turn a second failure into ``StructuredOutputError``.
Nothing here picks a default label.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from vara.types import Caption, Evidence, LabelSet

__all__ = [
    "Answer",
    "AnswerInvalid",
    "Judgement",
    "TAG_FIELDS",
    "answer_schema",
    "judge_schema",
    "explain_schema",
    "tokens_schema",
    "validate_json",
    "parse_answer",
    "parse_judgement",
    "parse_tokens",
    "caption_ref",
    "time_ref",
    "caption_items",
]


class AnswerInvalid(ValueError):
    """The model's text is not an acceptable answer; the message says why, for a re-ask."""


@dataclass(frozen=True)
class Answer:
    labels: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    explanation: str


def caption_ref(i: int) -> str:
    """Ref of the i-th caption of a window, 1-based as a prompt shows it."""
    return f"caption:{i}"


def time_ref(t_s: float) -> str:
    return f"t={t_s:.2f}s"


def caption_items(captions: Sequence[Caption]) -> list[dict[str, Any]]:
    """Captions as the reasoning prompt shows them: ref, time span, text."""
    return [
        {
            "ref": caption_ref(i),
            "start_s": min(c.timestamps_s),
            "end_s": max(c.timestamps_s),
            "text": " ".join(c.text.split()),
        }
        for i, c in enumerate(captions, start=1)
    ]


def answer_schema(template: dict[str, Any], labelset: LabelSet, refs: Sequence[str]) -> dict:
    """Fill a prompt's answer schema with the label set's names and the window's refs."""
    if not refs:
        raise ValueError("answer_schema: a window must offer at least one citable ref")
    schema = copy.deepcopy(template)
    props = schema["properties"]
    labels = props["labels"]
    labels["items"]["enum"] = list(labelset.names)
    if labelset.multi_label:
        labels["maxItems"] = len(labelset.names)
    else:
        labels["minItems"] = labels["maxItems"] = 1
    props["evidence"]["items"]["properties"]["ref"]["enum"] = list(dict.fromkeys(refs))
    return schema


def explain_schema(template: dict[str, Any], refs: Sequence[str]) -> dict:
    """Fill an explanation schema (labels fixed elsewhere) with the refs it may cite."""
    if not refs:
        raise ValueError("explain_schema: a window must offer at least one citable ref")
    schema = copy.deepcopy(template)
    schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"] = list(
        dict.fromkeys(refs)
    )
    return schema


def _source(ref: str) -> str:
    return "caption" if ref.startswith("caption:") else "frame"


def _schema_error(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"at {where}: {error.message}"


def validate_json(text: str, schema: dict[str, Any]) -> Any:
    """Parse ``text`` as JSON and validate it; AnswerInvalid says what is wrong, for a re-ask."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text[:80].replace("\n", " ")
        raise AnswerInvalid(
            f"the reply is not valid JSON ({exc.msg} at character {exc.pos}); it began {snippet!r}"
        ) from None
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(data),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise AnswerInvalid(f"the JSON does not match the schema {_schema_error(errors[0])}{more}")
    return data


def _evidence(items: list[dict[str, str]]) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(source=_source(e["ref"]), ref=e["ref"], text=e["text"])  # type: ignore[arg-type]
        for e in items
    )


def parse_answer(text: str, schema: dict[str, Any], labelset: LabelSet) -> Answer:
    """Parse and validate a model's answer text; raise AnswerInvalid with a re-ask message."""
    data = validate_json(text, schema)
    # Labels are a set; a repeat adds no claim (a constrained decoder cannot forbid one).
    labels = tuple(dict.fromkeys(data["labels"]))
    for group in labelset.exclusive:
        both = [lab for lab in group if lab in labels]
        if len(both) > 1:
            raise AnswerInvalid(
                f"labels {both} cannot be present together in one clip "
                f"(rule: {' and '.join(group)} are never done at the same time)"
            )
    return Answer(
        labels=labels, evidence=_evidence(data["evidence"]), explanation=data["explanation"]
    )


@dataclass(frozen=True)
class Judgement:
    """One class's yes/no; ``score`` is P(present) as the judge states it: c/100 or 1 - c/100."""

    present: bool
    confidence: int
    evidence: tuple[Evidence, ...]
    reason: str

    @property
    def score(self) -> float:
        c = self.confidence / 100
        return c if self.present else 1.0 - c


def judge_schema(template: dict[str, Any], refs: Sequence[str]) -> dict:
    if not refs:
        raise ValueError("judge_schema: a window must offer at least one citable ref")
    schema = copy.deepcopy(template)
    schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"] = list(
        dict.fromkeys(refs)
    )
    return schema


def parse_judgement(text: str, schema: dict[str, Any]) -> Judgement:
    data = validate_json(text, schema)
    return Judgement(
        present=data["answer"] == "yes",
        confidence=int(data["confidence"]),
        evidence=_evidence(data["evidence"]),
        reason=data["reason"],
    )


TAG_FIELDS = ("actors", "actions", "objects", "body_parts", "tools", "motion")


def tokens_schema(template: dict[str, Any], n_frames: int) -> dict:
    """The tokens schema with exactly one entry per frame."""
    schema = copy.deepcopy(template)
    frames = schema["properties"]["frames"]
    frames["minItems"] = frames["maxItems"] = n_frames
    return schema


def parse_tokens(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Per-frame tag dicts (keys TAG_FIELDS), in frame order."""
    return tuple(validate_json(text, schema)["frames"])
