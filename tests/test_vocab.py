"""The semantic-token vocabulary: normalisation, top-K, nearest/other mapping, the versioned
hashed file, the enum tag schema, span merging in the narrative, and a constrained
semantic-tokens run against the real vLLM server that emits only vocabulary tokens."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.registry import build_graph
from vara.agents.strategies import load_strategy
from vara.cli import main
from vara.errors import InputError
from vara.prompts.loader import load_labelset, load_prompt
from vara.records import read_jsonl
from vara.testing import ScriptedChatModel, write_test_video
from vara.tools.narrative import merge_spans, span_text
from vara.tools.reason import TAG_FIELDS, AnswerInvalid, parse_tokens, tokens_schema
from vara.tools.vocab import (
    OTHER,
    build_vocabulary,
    load_vocabulary,
    normalise,
    vocab_schema,
    with_vocabulary,
    write_vocabulary,
)
from vara.types import Clip, FrameBatch, Label, LabelSet

EMPTY = {field: [] for field in TAG_FIELDS} | {"motion": ""}


def tag(**fields) -> dict:
    return {**EMPTY, **fields}


# Hand-written tag outputs, as a VLM spells them: one thing many ways.
FRAMES = [
    *[tag(actors=["Nurse"], actions=["squeezes bag"], tools=["Bag-valve mask"])] * 3,
    *[tag(actors=["nurses"], actions=["Squeezes the bag"], tools=["bag-valve masks"])] * 2,
    *[tag(actors=["an adult"], actions=["holds mask"], motion="up and down")] * 3,
    tag(actors=["The Adults"], actions=["PPV"], motion="Up and down"),
    tag(actors=["nurse2"], actions=["rubs back"], objects=["Babies"]),
    tag(actors=["doctor"], body_parts=["baby's chest"]),
]
NEWBORN_LIKE = LabelSet(
    name="mini",
    labels=(Label("Ventilation", "bag-mask ventilation", synonyms=("PPV", "bagging")),),
    multi_label=True,
)


@pytest.mark.parametrize(
    "raw, form",
    [
        ("The Nurses", "nurse"),
        ("a Bag-Valve Mask", "bag-valve mask"),
        ("bag - valve mask", "bag-valve mask"),
        ("babies", "baby"),
        ("Holds the masks!", "hold mask"),
        ("boxes", "box"),
        ("glasses", "glasses"),
        ("baby's chest", "baby chest"),
        ("  ", ""),
        ("!!!", ""),
    ],
)
def test_normalise_case_articles_plurals_punctuation(raw, form):
    assert normalise(raw) == form


def test_top_k_nearest_and_other_mappings_are_all_recorded():
    vocab = build_vocabulary(FRAMES, top_k=2, min_similarity=0.8, labelset=NEWBORN_LIKE)
    actors = vocab.fields["actors"]
    # nurse 5 + adult 4 kept; nurse2 is close to nurse (ratio 10/11); doctor is close to none.
    assert actors.tokens == ("nurse", "adult")
    by_form = {m.form: m for m in actors.mappings}
    assert by_form["nurse"].count == 5 and by_form["nurse"].how == "kept"
    assert set(by_form["nurse"].seen_as) == {"Nurse", "nurses"}
    assert by_form["nurse2"].token == "nurse" and by_form["nurse2"].how == "nearest"
    assert by_form["nurse2"].similarity == pytest.approx(10 / 11, abs=1e-4)
    assert by_form["doctor"].token == OTHER and by_form["doctor"].how == "other"
    assert sum(m.count for m in actors.mappings) == len(FRAMES)
    # The label set's synonym PPV becomes its label's name.
    assert "ventilation" in {m.form for m in vocab.fields["actions"].mappings}
    assert vocab.fields["actions"].tokens == ("squeeze bag", "hold mask")
    assert vocab.fields["tools"].tokens == ("bag-valve mask",)
    assert vocab.fields["motion"].tokens == ("up and down",)
    # Mapping a new raw tag: normalised, then kept / nearest / other.
    assert vocab.map("actors", "The NURSES") == "nurse"
    assert vocab.map("actors", "Nurse 2") == "nurse"
    assert vocab.map("actors", "zebra") == OTHER
    assert vocab.map("actors", "!!") is None
    assert vocab.map("actions", "bagging") == OTHER  # -> ventilation, not kept, not close


def test_the_file_is_versioned_and_hashed_by_content_not_by_where_it_came_from(tmp_path):
    vocab = build_vocabulary(FRAMES, top_k=2)
    a = write_vocabulary(vocab, tmp_path / "a.json", [{"path": "/x/predictions.jsonl"}])
    b = write_vocabulary(vocab, tmp_path / "b.json", [{"path": "/elsewhere.jsonl"}])
    doc = json.loads(a.read_text())
    assert doc["format"] == "vara-vocab" and doc["version"] == 1
    assert doc["sha256"] == json.loads(b.read_text())["sha256"] == vocab.sha256
    loaded = load_vocabulary(a)
    assert loaded.sha256 == vocab.sha256 and loaded.fields == vocab.fields
    assert build_vocabulary(FRAMES, top_k=3).sha256 != vocab.sha256
    doc["fields"]["actors"]["tokens"].append("child")  # a hand edit is a new vocabulary
    a.write_text(json.dumps(doc))
    assert load_vocabulary(a).sha256 != vocab.sha256
    with pytest.raises(InputError, match="vara tokens vocab"):
        load_vocabulary(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a vara-vocab v1 file"):
        load_vocabulary(tmp_path / "bad.json")


def test_the_tag_schema_becomes_enums_of_the_vocabulary():
    vocab = build_vocabulary(FRAMES, top_k=2)
    template = load_prompt("tokens.v1").schema
    schema = vocab_schema(template, vocab)
    assert vocab_schema(schema, vocab) == schema  # applying it twice changes nothing
    item = schema["properties"]["frames"]["items"]["properties"]
    assert item["actors"]["items"]["enum"] == ["nurse", "adult", OTHER]
    assert item["actors"]["maxItems"] == 2
    assert item["motion"]["enum"] == ["", "up and down", OTHER]
    assert item["objects"]["items"]["enum"] == ["baby", OTHER]
    jsonschema.Draft202012Validator.check_schema(schema)
    full = tokens_schema(schema, 2)
    good = {"frames": [tag(actors=["nurse"], motion="up and down"), tag(tools=[OTHER])]}
    assert parse_tokens(json.dumps(good), full)[0]["actors"] == ["nurse"]
    with pytest.raises(AnswerInvalid):
        parse_tokens(json.dumps({"frames": [tag(actors=["Nurse"]), tag()]}), full)


def test_a_prompt_under_a_vocabulary_names_it_in_its_hash():
    prompt = load_prompt("tokens.v1")
    small, large = build_vocabulary(FRAMES, top_k=2), build_vocabulary(FRAMES, top_k=3)
    a, b = with_vocabulary(prompt, small), with_vocabulary(prompt, large)
    assert len({prompt.ref.sha256, a.ref.sha256, b.ref.sha256}) == 3
    assert a.ref.id == "tokens" and a.schema == vocab_schema(prompt.schema, small)
    assert with_vocabulary(prompt, small).sha256 == a.sha256


def test_consecutive_equal_frames_merge_into_one_span_with_its_times():
    a = tag(actors=["adult"], actions=["squeeze"], objects=["bag-valve mask"])
    b = tag(actors=["adult"], actions=["hold mask"])
    spans = merge_spans([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], [a, a, a, a, b, a])
    assert [(s.start_s, s.end_s, s.first_idx, s.last_idx) for s in spans] == [
        (0.0, 1.5, 0, 3),
        (2.0, 2.0, 4, 4),
        (2.5, 2.5, 5, 5),
    ]
    assert span_text(spans[0].tags) == "adult | squeeze | bag-valve mask | - | - | -"
    with pytest.raises(ValueError):
        merge_spans([0.0], [a, b])


def _scripted_context(tmp_path, vlm, llm, *overrides) -> tuple[Context, Clip]:
    strategy = load_strategy("semantic-tokens", list(overrides))
    clip = Clip(clip_id="v.mp4:0.00-2.00", video="v.mp4", start_s=0.0, end_s=2.0)
    frames = FrameStore(strategy.sampler)
    ts = (0.25, 0.75, 1.25, 1.75)
    batch = FrameBatch(
        clip, np.zeros((4, 8, 8, 3), np.uint8), (6, 18, 31, 43), ts, strategy.sampler
    )
    frames.put(batch)
    prompts = {role: load_prompt(ref) for role, ref in strategy.prompts.items()}
    labelset = load_labelset("newborn-resuscitation")
    return Context(strategy, labelset, prompts, vlm, llm, frames), clip


def test_a_vocabulary_run_sends_enums_and_the_narrative_shows_spans(tmp_path):
    path = write_vocabulary(build_vocabulary(FRAMES, top_k=2), tmp_path / "v.json", [])
    squeeze = tag(actors=["nurse"], actions=["squeeze bag"], tools=["bag-valve mask"])
    hold = tag(actors=["adult"], actions=["hold mask"], motion="up and down")
    vlm = ScriptedChatModel([json.dumps({"frames": [squeeze, squeeze, squeeze, hold]})])
    answer = {
        "evidence": [{"ref": "t=1.75s", "text": "hold mask"}],
        "labels": ["Ventilation"],
        "explanation": "A nurse squeezes the bag.",
    }
    llm = ScriptedChatModel([json.dumps(answer)])
    vocab_set = (f"tokens.vocab={path}", "prompts.answer=narrative.v2", "evidence.check=mark")
    ctx, clip = _scripted_context(tmp_path, vlm, llm, *vocab_set)
    pred = build_graph("semantic-tokens").invoke({"clip": clip}, context=ctx)["prediction"]
    assert pred.labels == ("Ventilation",)
    sent = vlm.requests[0]["json_schema"]["properties"]["frames"]["items"]["properties"]
    assert sent["actions"]["items"]["enum"] == ["squeeze bag", "hold mask", OTHER]
    narrative = llm.requests[0]["messages"][-1].text
    assert "[t=0.25s] 0.25-1.25 s: nurse | squeeze bag | - | - | bag-valve mask | -" in narrative
    assert "[t=1.75s] 1.75-1.75 s: adult | hold mask | - | - | - | up and down" in narrative
    refs = llm.requests[0]["json_schema"]["properties"]["evidence"]["items"]["properties"]
    assert refs["ref"]["enum"] == ["t=0.25s", "t=1.75s"]  # the spans are what it may cite


def _handwritten_run(dst) -> None:
    """A predictions.jsonl as a semantic-tokens run writes it (the tokens answer in captions)."""
    dst.mkdir()
    record = {"clip_id": "x", "captions": [{"text": json.dumps({"frames": FRAMES})}]}
    other = {"clip_id": "y", "captions": [{"text": "a caption, not tags"}]}
    (dst / "predictions.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")


@pytest.mark.server
def test_a_constrained_run_on_the_server_emits_only_vocabulary_tokens(vllm_server, tmp_path):
    video = write_test_video(tmp_path / "v.mp4", n_frames=75, fps=25.0)  # 3 s: 2 windows
    common = ["--labels", "kinetics-sample", "--strategy", "semantic-tokens", "--frames", "4"]
    common += ["--vlm-url", vllm_server.url, "--no-progress", "--set", "evidence.check=mark"]
    free = tmp_path / "free"
    assert main(["run", str(video), *common, "--out", str(free)]) == 0
    _handwritten_run(tmp_path / "hand")
    vocab_path = tmp_path / "vocab.json"
    args = ["tokens", "vocab", str(free), str(tmp_path / "hand"), "--out", str(vocab_path)]
    assert main([*args, "--top-k", "4"]) == 0
    vocab = load_vocabulary(vocab_path)
    assert "nurse" in vocab.fields["actors"].tokens
    sources = json.loads(vocab_path.read_text())["sources"]
    assert [s["n_frames"] for s in sources][-1] == len(FRAMES)
    assert sources[0]["n_frames"] >= 4  # the free run's windows, 4 frames each

    constrained = tmp_path / "constrained"
    vocab_set = ["--set", f"tokens.vocab={vocab_path}", "--set", "prompts.answer=narrative.v2"]
    assert main(["run", str(video), *common, *vocab_set, "--out", str(constrained)]) == 0
    preds = read_jsonl(constrained / "predictions.jsonl")
    assert preds
    for p in preds:
        frames = json.loads(p["captions"][0]["text"])["frames"]
        assert len(frames) == 4
        for frame in frames:
            for field in TAG_FIELDS:
                allowed = set(vocab.fields[field].choices) | ({""} if field == "motion" else set())
                values = frame[field] if isinstance(frame[field], list) else [frame[field]]
                assert set(values) <= allowed, (field, values)


def test_the_strategy_loader_puts_the_vocabulary_into_the_prompt_hash(tmp_path):
    from vara.agents.strategies import load_strategy, strategy_prompts

    small = write_vocabulary(build_vocabulary(FRAMES, top_k=2), tmp_path / "s.json", [])
    large = write_vocabulary(build_vocabulary(FRAMES, top_k=3), tmp_path / "l.json", [])
    plain = strategy_prompts(load_strategy("semantic-tokens"))["tokens"]
    got = {
        path: strategy_prompts(load_strategy("semantic-tokens", [f"tokens.vocab={path}"]))
        for path in (small, large)
    }
    hashes = {plain.sha256, *(p["tokens"].sha256 for p in got.values())}
    assert len(hashes) == 3  # provenance and the resume fingerprint tell all three apart
    fields = got[small]["tokens"].schema["properties"]["frames"]["items"]["properties"]
    assert any("enum" in str(spec) for spec in fields.values())
