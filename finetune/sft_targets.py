"""What ``vara finetune lvlm_sft`` teaches the model to answer: one answer JSON per window,
the same object every strategy produces (evidence, labels, explanation).

The labels are the window's TRUE labels. The evidence and the explanation are never made
up here. They come from one of two places:

- an ``explanation`` column of the manifest (clip manifests, CSV or JSONL). The target then
  cites the window's middle ref, with the explanation's first sentence-run as its note.
- a teacher: a served LLM (``teacher.llm_url``) writes them under the answer schema. Its
  labels are constrained to the truth and its refs to the window's
  (``prompts/teacher.v1.yaml``). An answer that fails validation is asked again once. A
  window whose answer fails twice is listed in ``teacher_failures.jsonl`` and dropped from
  training, never filled in. The answers are saved in ``teacher.jsonl`` with the prompt's
  hash, so a resumed or repeated run asks no teacher again.

Every target is validated against the answer schema before training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import ConfigError, InputError
from vara.prompts.loader import load_prompt
from vara.records import read_jsonl, write_jsonl_atomic
from vara.tools.manifest_file import read_records
from vara.tools.reason import AnswerInvalid, answer_schema, parse_answer, validate_json
from vara.tools.turns import chat_turns
from vara.types import Clip, LabelSet

__all__ = [
    "Target",
    "answer_text",
    "column_values",
    "from_column",
    "from_teacher",
    "teacher_schema",
]

log = logging.getLogger(__name__)

_RUN = 100  # the answer schema's longest run of free text


@dataclass(frozen=True)
class Target:
    clip_id: str
    answer: str  # compact JSON, schema-valid
    source: str  # "column" | "teacher"


def answer_text(
    labels: Sequence[str], evidence: Sequence[Mapping[str, str]], explanation: str
) -> str:
    """Compact JSON in the schema's key order (what constrained decoding emits)."""
    data = {"evidence": list(evidence), "labels": list(labels), "explanation": explanation}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _runs(text: str) -> str:
    """Free text fitted to the schema: at most three runs of <= 100 characters."""
    words, runs, cur = " ".join(text.split()).split(" "), [], ""
    for word in words:
        if len(cur) + len(word) + 1 > _RUN and cur:
            runs.append(cur)
            cur = ""
        cur = f"{cur} {word}".strip()[:_RUN]
    return " ".join([*runs, cur][:3])


def _read_column(manifest: Path, name: str) -> dict[tuple[str, float | None, float | None], Any]:
    """(resolved video, start, end) -> the row's ``name`` value; {} without that column."""
    columns, records = read_records(manifest, manifest.read_bytes())
    if name not in columns:
        return {}
    base = manifest.resolve().parent
    out = {}
    for _, rec in records:
        video = str(rec.get("video") or rec.get("path") or "")
        key = (str((base / video).resolve()), _time(rec.get("start_s")), _time(rec.get("end_s")))
        out[key] = rec.get(name)
    return out


def column_values(manifest: str | None, clips: Sequence[Clip], name: str) -> dict[str, Any]:
    """clip id -> the manifest row's ``name`` value (a clip's own row, else its video's
    whole-video row), for the clips that have one; {} for ucf101:/kinetics: sources."""
    if not manifest or ":" in manifest.split("/")[0] or not Path(manifest).is_file():
        return {}
    column = _read_column(Path(manifest), name)
    out = {}
    for clip in clips:
        value = column.get((clip.video, round(clip.start_s, 3), round(clip.end_s, 3)))
        value = value if value not in (None, "") else column.get((clip.video, None, None))
        if value not in (None, ""):
            out[clip.clip_id] = value
    return out


def _time(value: Any) -> float | None:
    return None if value in (None, "") else round(float(value), 3)


def from_column(
    manifest: str | None,
    clips: Sequence[Clip],
    labelset: LabelSet,
    refs: Mapping[str, Sequence[str]],
    schema_template: dict[str, Any],
    quotes: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Target]:
    """Targets for the clips whose manifest row has a non-empty ``explanation``. The evidence
    cites the window's middle ref; its text is what that ref shows where ``quotes`` gives it
    (tokens mode: the frame's tags, so the quote checks out), else the explanation."""
    out = {}
    by_id = {c.clip_id: c for c in clips}
    for clip_id, text in column_values(manifest, clips, "explanation").items():
        clip = by_id[clip_id]
        window = refs[clip.clip_id]
        mid = window[len(window) // 2]
        note = _runs(str(text))
        quote = (quotes or {}).get(clip_id, {}).get(mid) or note
        answer = answer_text(clip.labels or (), [{"ref": mid, "text": quote[:_RUN]}], note)
        validate_json(answer, answer_schema(schema_template, labelset, window))
        out[clip.clip_id] = Target(clip.clip_id, answer, "column")
    return out


def teacher_schema(template: dict[str, Any], labelset: LabelSet, truth: Sequence[str], refs):
    """The answer schema with its labels fixed to the truth (every true label, once each)."""
    schema = answer_schema(template, labelset, refs)
    labels = schema["properties"]["labels"]
    labels["items"]["enum"] = list(truth) or list(labelset.names)
    labels["minItems"] = labels["maxItems"] = len(truth)
    return schema


def _ask(llm, clip: Clip, labelset: LabelSet, refs, narrative: str, max_tokens: int) -> str:
    prompt = load_prompt("teacher.v1")
    truth = tuple(clip.labels or ())
    rendered = prompt.render(
        labelset=labelset,
        truth=truth,
        start_s=clip.start_s,
        end_s=clip.end_s,
        refs=list(refs),
        narrative=narrative,
    )
    schema = teacher_schema(prompt.schema, labelset, truth, refs)
    errors = []
    for _ in range(2):  # one re-ask, as the graphs do
        reply = llm.complete(
            chat_turns(rendered.system, rendered.user), json_schema=schema, max_tokens=max_tokens
        )
        try:
            answer = parse_answer(
                reply.text, answer_schema(prompt.schema, labelset, refs), labelset
            )
        except AnswerInvalid as exc:
            errors.append(str(exc))
            continue
        if set(answer.labels) != set(truth):
            errors.append(f"labels {list(answer.labels)} are not the truth {list(truth)}")
            continue
        evidence = [{"ref": e.ref, "text": e.text} for e in answer.evidence]
        return answer_text(truth, evidence, answer.explanation)
    raise AnswerInvalid("; ".join(errors))


def from_teacher(
    llm,
    clips: Sequence[Clip],
    labelset: LabelSet,
    refs: Mapping[str, Sequence[str]],
    out: Path,
    *,
    narratives: Mapping[str, str] | None = None,
    max_tokens: int = 512,
) -> dict[str, Target]:
    """Teacher answers for ``clips`` (saved in ``out/teacher.jsonl``, reused on a re-run);
    failures go to ``out/teacher_failures.jsonl`` and are left out."""
    prompt = load_prompt("teacher.v1")
    saved_path = out / "teacher.jsonl"
    saved = {
        r["clip_id"]: r["answer"]
        for r in (read_jsonl(saved_path) if saved_path.exists() else [])
        if r.get("prompt_sha256") == prompt.sha256
    }
    records, failures = [], []
    for clip in clips:
        if clip.clip_id not in saved:
            try:
                saved[clip.clip_id] = _ask(
                    llm,
                    clip,
                    labelset,
                    refs[clip.clip_id],
                    (narratives or {}).get(clip.clip_id, ""),
                    max_tokens,
                )
            except AnswerInvalid as exc:
                failures.append({"clip_id": clip.clip_id, "video": clip.video, "error": str(exc)})
                continue
        records.append(
            {"clip_id": clip.clip_id, "answer": saved[clip.clip_id], "prompt_sha256": prompt.sha256}
        )
    write_jsonl_atomic(saved_path, records)
    write_jsonl_atomic(out / "teacher_failures.jsonl", failures)
    if failures:
        log.warning(
            "teacher: %d of %d window(s) got no valid answer twice; they are left out of "
            "training (listed in %s)",
            len(failures),
            len(clips),
            out / "teacher_failures.jsonl",
        )
    return {r["clip_id"]: Target(r["clip_id"], r["answer"], "teacher") for r in records}


def check_sources(
    missing: Sequence[Clip], n: int, teacher_url: str | None, manifest: str | None
) -> None:
    """Windows without an explanation need a teacher; none is never silently dropped."""
    if teacher_url:
        return
    if len(missing) == n:
        raise ConfigError(
            f"data.manifest {manifest!r} has no 'explanation' column and no teacher is set: "
            "add an explanation per clip, or set teacher.llm_url=URL (a served LLM writes "
            "them from the true labels); vara never makes explanations up"
        )
    first = ", ".join(c.clip_id for c in missing[:3])
    raise ConfigError(
        f"{len(missing)} of {n} windows have no explanation in {manifest!r} (first: {first}): "
        "fill them in, or set teacher.llm_url=URL to have a served LLM write the missing ones"
    )


def no_targets(n: int) -> InputError:
    return InputError(f"none of the {n} training windows has a target answer; see above")
