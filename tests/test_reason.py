"""The answer schema built from a label set, and validation of answer texts."""

from __future__ import annotations

import json

import jsonschema
import pytest

from vara.prompts.loader import load_labelset, load_prompt
from vara.tools.reason import (
    AnswerInvalid,
    answer_schema,
    caption_items,
    explain_schema,
    judge_schema,
    parse_answer,
    parse_judgement,
    parse_tokens,
    time_ref,
    tokens_schema,
)
from vara.types import Caption

NEWBORN = load_labelset("newborn-resuscitation")
KINETICS = load_labelset("kinetics-sample")
TEMPLATE = load_prompt("reason.v1").schema
REFS = ("caption:1", "caption:2")


def _text(labels, refs=("caption:1",), explanation="Both captions mention a mask."):
    return json.dumps(
        {
            "evidence": [{"ref": r, "text": "a mask"} for r in refs],
            "labels": labels,
            "explanation": explanation,
        }
    )


def test_schema_is_a_valid_json_schema_with_enums_filled():
    schema = answer_schema(TEMPLATE, NEWBORN, REFS)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["labels"]["items"]["enum"] == list(NEWBORN.names)
    assert schema["properties"]["labels"]["maxItems"] == 3
    assert "minItems" not in schema["properties"]["labels"]  # "no activity" is an answer
    assert schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"] == list(REFS)
    assert TEMPLATE["properties"]["labels"]["items"]["enum"] == []  # template untouched
    single = answer_schema(TEMPLATE, KINETICS, REFS)["properties"]["labels"]
    assert single["minItems"] == single["maxItems"] == 1


def test_schema_needs_a_ref():
    with pytest.raises(ValueError, match="at least one citable ref"):
        answer_schema(TEMPLATE, NEWBORN, ())


def test_valid_answers_parse():
    schema = answer_schema(TEMPLATE, NEWBORN, REFS)
    a = parse_answer(_text(["Ventilation", "Stimulation"], REFS), schema, NEWBORN)
    assert a.labels == ("Ventilation", "Stimulation")
    assert [e.source for e in a.evidence] == ["caption", "caption"]
    assert parse_answer(_text([]), schema, NEWBORN).labels == ()
    repeated = parse_answer(_text(["Suction", "Stimulation", "Suction"]), schema, NEWBORN)
    assert repeated.labels == ("Suction", "Stimulation")  # a set, first-mention order


@pytest.mark.parametrize(
    "text, message",
    [
        ("Ventilation", "not valid JSON"),
        ('{"labels": ["Ventilation"]', "not valid JSON"),
        (_text(["Breathing"]), "at labels/0: 'Breathing' is not one of"),
        (_text(["Suction"], refs=("caption:9",)), "at evidence/0/ref"),
        (_text(["Suction"], refs=()), "at evidence"),
        (_text(["Suction"], explanation="line one\nline two"), "at explanation"),
        (_text(["Ventilation", "Suction"]), "cannot be present together"),
        ('{"labels": []}', "required property"),
    ],
)
def test_invalid_answers_say_why(text, message):
    schema = answer_schema(TEMPLATE, NEWBORN, REFS)
    with pytest.raises(AnswerInvalid, match=message):
        parse_answer(text, schema, NEWBORN)


def test_single_label_set_rejects_two_labels():
    schema = answer_schema(TEMPLATE, KINETICS, ("t=0.25s",))
    with pytest.raises(AnswerInvalid, match="too long|is not valid under"):
        parse_answer(_text(["tai chi", "yoga"], refs=("t=0.25s",)), schema, KINETICS)


def test_caption_items_and_refs():
    caps = [Caption("c", " a  hand\nmoves ", (3, 9), (0.12, 0.36), "m", "caption.v1", "h", 0.1)]
    assert caption_items(caps) == [
        {"ref": "caption:1", "start_s": 0.12, "end_s": 0.36, "text": "a hand moves"}
    ]
    assert time_ref(1.0) == "t=1.00s"


def _filled(template, labelset):
    """A schema as a request would send it, whichever kind of prompt it belongs to."""
    props = template["properties"]
    refs = ("caption:1", "t=0.25s")
    if "labels" in props:
        return answer_schema(template, labelset, refs)
    if "answer" in props:
        return judge_schema(template, refs)
    if "explanation" in props:
        return explain_schema(template, (*refs, "classifier"))
    return tokens_schema(template, 8)


def test_packaged_schemas_compile_in_xgrammar_as_vllm_runs_it(tiny_vlm_dir):
    """vLLM compiles with xgrammar's cache on; xgrammar 0.2.8 then rejects a repetition bound
    above 128 (e.g. {1,160}) with an internal error, which the server returns as HTTP 500."""
    import xgrammar as xgr
    from transformers import AutoTokenizer

    from vara.prompts.loader import list_prompts
    from vara.tools.vlm import decoding_schema

    tok = AutoTokenizer.from_pretrained(tiny_vlm_dir, local_files_only=True)
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok), cache_enabled=True)
    compiled = set()
    for pid, version in list_prompts():
        template = load_prompt(f"{pid}.v{version}").schema
        if template is None:
            continue
        for labelset in (NEWBORN, KINETICS):
            schema = decoding_schema(_filled(template, labelset))
            jsonschema.Draft202012Validator.check_schema(schema)
            compiler.compile_json_schema(json.dumps(schema))
            compiled.add(pid)
    assert {"reason", "direct", "judge", "tokens", "narrative", "explain"} <= compiled


def test_judgement_scores_and_validation():
    schema = judge_schema(load_prompt("judge.v1").schema, ("caption:1",))
    ok = json.dumps(
        {
            "evidence": [{"ref": "caption:1", "text": "a mask"}],
            "answer": "yes",
            "confidence": 80,
            "reason": "mask on face",
        }
    )
    j = parse_judgement(ok, schema)
    assert j.present and j.score == pytest.approx(0.8)
    no = parse_judgement(ok.replace('"yes"', '"no"'), schema)
    assert not no.present and no.score == pytest.approx(0.2)
    with pytest.raises(AnswerInvalid, match="at answer"):
        parse_judgement(ok.replace('"yes"', '"maybe"'), schema)
    with pytest.raises(AnswerInvalid, match="at confidence"):
        parse_judgement(ok.replace("80", "180"), schema)


def _judgements(labelset, verdicts):
    from vara.tools.reason import Judgement
    from vara.types import Evidence

    cite = (Evidence("caption", "caption:1", "seen"),)
    return {
        n: Judgement(present=v[0] == "yes", confidence=v[1], evidence=cite, reason=f"{n} why")
        for n, v in zip(labelset.names, verdicts, strict=False)
    } | {n: Judgement(False, 99, cite, "absent") for n in labelset.names[len(verdicts) :]}


def test_judge_decisions_follow_the_answers():
    from vara.agents.judge import decide

    # Single-label: a "yes" at 30% beats a "no" at 10% (P(present) 0.9, against its answer).
    answer, scores = decide(KINETICS, _judgements(KINETICS, [("no", 10), ("yes", 30)]))
    assert answer.labels == (KINETICS.names[1],)
    assert scores.probs[:2] == pytest.approx((0.9, 0.3))
    # Two "yes": the higher score; none: the highest score, said in the explanation.
    answer, _ = decide(KINETICS, _judgements(KINETICS, [("yes", 60), ("no", 5), ("yes", 90)]))
    assert answer.labels == (KINETICS.names[2],) and "no activity judged yes" not in (
        answer.explanation
    )
    answer, _ = decide(KINETICS, _judgements(KINETICS, [("no", 80), ("no", 40)]))
    assert answer.labels == (KINETICS.names[1],)
    assert "no activity judged yes" in answer.explanation
    # Multi-label: every "yes"; of an exclusive pair both "yes", the higher score stays.
    assert NEWBORN.exclusive, "the newborn set has an exclusive group"
    group = NEWBORN.exclusive[0]
    verdicts = [
        ("yes", 90 if n == group[0] else 70) if n in group else ("no", 90) for n in NEWBORN.names
    ]
    answer, _ = decide(NEWBORN, _judgements(NEWBORN, verdicts))
    assert answer.labels == (group[0],)
    assert f"{group[1]} dropped: exclusive with {group[0]} (higher score)" in answer.explanation


def test_judge_ties_are_broken_by_label_order_and_say_so():
    from vara.agents.judge import decide

    # six classes judged yes at 79%: the first in the label set's order, and the reader is told
    answer, _ = decide(KINETICS, _judgements(KINETICS, [("yes", 79)] * 6))
    names = KINETICS.names
    assert answer.labels == (names[0],)
    assert f"{', '.join(names[:6])} tied at 0.79: {names[0]} chosen, the first" in (
        answer.explanation
    )
    group = NEWBORN.exclusive[0]
    verdicts = [("yes", 80) if n in group else ("no", 90) for n in NEWBORN.names]
    answer, _ = decide(NEWBORN, _judgements(NEWBORN, verdicts))
    assert "(same score: the first in the label set's order)" in answer.explanation


def test_tokens_need_one_entry_per_frame():
    schema = tokens_schema(load_prompt("tokens.v1").schema, 2)
    frame = {
        "actors": ["nurse"],
        "actions": ["holds mask"],
        "objects": [],
        "body_parts": ["face"],
        "tools": ["bag"],
        "motion": "squeezing",
    }
    assert parse_tokens(json.dumps({"frames": [frame, frame]}), schema)[1]["tools"] == ["bag"]
    with pytest.raises(AnswerInvalid, match="at frames"):
        parse_tokens(json.dumps({"frames": [frame]}), schema)
    with pytest.raises(AnswerInvalid, match="at frames/0/actors"):
        parse_tokens(json.dumps({"frames": [dict(frame, actors=["a", "b", "c"])] * 2}), schema)
