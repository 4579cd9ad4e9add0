"""The trained-classifier strategies end to end: `classifier-explain` against the real vLLM
server (labels stay the classifier's, the explanation is schema-valid and cites it), a
multi-label LoRA run (BCE, attention pooling, vision-tower LoRA, tuned thresholds) on
synthetic interval annotations, and the errors a misconfigured classifier strategy gives."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vara.agents.strategies import load_strategy
from vara.cli import main as cli
from vara.errors import ConfigError
from vara.finetune.loop import probabilities
from vara.finetune.recipes import run_config
from vara.prompts.loader import load_labelset
from vara.testing import write_test_video
from vara.tools.classifier import load_classifier
from vara.tools.scorer import check as check_scorer
from vara.tools.scorer import labels_for
from vara.types import Clip, FrameBatch, SamplerSpec

KINETICS = load_labelset("kinetics-sample")


@pytest.mark.server
def test_classifier_explain_keeps_the_classifier_labels(tiny_classifier_run, vllm_server, tmp_path):
    run = tiny_classifier_run
    args = [
        "eval",
        str(run / "val.jsonl"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "classifier",
        "--strategy",
        "classifier-explain",
        "--set",
        f"scorer.run_dir={run}",
        "--frames",
        "4",
        "--set",
        "sampler.max_side=112",
        "--set",
        "evidence.check=mark",  # the random model cannot quote: marked, not re-asked
        "--vlm-url",
        vllm_server.url,
        "--out",
        str(tmp_path / "eval"),
        "--no-progress",
    ]
    assert cli(args) == 0
    plain = {
        p["clip_id"]: p
        for p in map(json.loads, open(tmp_path / "eval/classifier/predictions.jsonl"))
    }
    explained = [
        json.loads(line) for line in open(tmp_path / "eval/classifier-explain/predictions.jsonl")
    ]
    assert len(explained) == len(plain) > 0
    clf_id = load_classifier(run).model_id
    for p in explained:
        same = plain[p["clip_id"]]
        # The same scores, up to float noise: windows in flight are batched differently.
        assert p["labels"] == same["labels"]
        assert p["scores"]["probs"] == pytest.approx(same["scores"]["probs"], abs=1e-5)
        assert p["scores"]["adapter_id"] == same["scores"]["adapter_id"] == clf_id
        assert p["models"]["scorer"] == clf_id and p["models"]["llm"] == "tiny-vlm"
        first = p["evidence"][0]  # the scores, first
        assert (first["source"], first["ref"]) == ("classifier", "classifier")
        assert first["text"].startswith(KINETICS.names[0] + "=")
        refs = {e["ref"] for e in p["evidence"][1:]}
        assert refs <= {"classifier", "caption:1"} and p["explanation"]
        assert len(p["captions"]) == 1
        assert {r["id"] for r in p["prompts"]} == {"caption", "explain", "reask"}


def _synthetic_intervals(tmp_path):
    """Three synthetic videos annotated with the newborn labels over chosen spans."""
    rows = [("video", "label", "start_s", "end_s")]
    spans = {
        "a.mp4": [("Ventilation", 0.0, 3.0), ("Stimulation", 2.0, 4.0)],
        "b.mp4": [("Suction", 1.0, 4.0)],
        "c.mp4": [("Ventilation", 0.0, 2.0), ("Suction", 2.0, 4.0)],
    }
    for seed, (name, items) in enumerate(spans.items()):
        write_test_video(tmp_path / name, n_frames=100, fps=25.0, seed=seed)
        rows += [(name, *item) for item in items]
    with open(tmp_path / "intervals.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return tmp_path / "intervals.csv"


def test_multi_label_run_with_attention_pooling_and_vision_lora(tiny_vlm_dir, tmp_path):
    manifest = _synthetic_intervals(tmp_path)
    out = run_config(
        "lora_classifier",
        [
            f"data.manifest={manifest}",
            f"model.backbone={tiny_vlm_dir}",
            f"out={tmp_path / 'run'}",
            "data.n_frames=2",
            "data.max_side=64",
            "train.epochs=1",
            "train.batch_size=2",
            "model.pooling=attention",
            "lora.vision_tower=true",
            "lora.r=2",
            "split.val_videos=[c.mp4]",
        ],
        progress=False,
    )
    newborn = load_labelset("newborn-resuscitation")
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert list(thresholds) == list(newborn.names)
    adapter = json.loads((out / "adapter/adapter_config.json").read_text())
    targets = adapter["target_modules"]
    assert any("vision_model" in t for t in targets) and any("text_model" in t for t in targets)
    clf = load_classifier(out)
    assert clf.info.multi_label and clf.info.pooling == "attention"
    assert clf.thresholds == tuple(thresholds[name] for name in newborn.names)
    frames = np.zeros((2, 48, 64, 3), np.uint8)
    logits = clf.logits([frames, frames[:1]])  # a 1-frame window is resampled to 2
    assert logits.shape == (2, 3) and np.array_equal(logits[0], logits[1])
    # vara eval with the classifier strategy makes exactly the tuned decisions on val.jsonl:
    # every class whose probability reaches its threshold (tuned thresholds often sit exactly
    # on a validation score, so any rounding of the scores would flip decisions).
    args = [
        "eval",
        str(out / "val.jsonl"),
        "--labels",
        "newborn-resuscitation",
        "--strategy",
        "classifier",
        "--set",
        f"scorer.run_dir={out}",
        "--frames",
        "2",
        "--max-side",
        "64",
        "--out",
        str(tmp_path / "eval"),
        "--no-progress",
    ]
    assert cli(args) in (0, 1)
    preds = {
        (p["video"], p["start_s"]): p
        for p in map(json.loads, open(tmp_path / "eval/classifier/predictions.jsonl"))
    }
    val = [json.loads(line) for line in open(out / "val.jsonl")]
    probs = 1 / (1 + np.exp(-np.load(out / "val_logits.npy").astype(np.float64)))
    cut = np.array([thresholds[name] for name in newborn.names])
    assert len(preds) == len(val) == len(probs)
    # val_logits came from batches of 8, the strategy scores one window at a time: float
    # noise of ~1e-7 may differ, so a score that close to its threshold (a class without
    # validation positives gets a threshold one ulp above its top score) is not compared.
    clear = 0
    for window, p_row in zip(val, probs, strict=True):
        got = preds[(window["video"], window["start_s"])]
        assert np.array(got["scores"]["probs"]) == pytest.approx(p_row, abs=1e-6)
        for name, p, t in zip(newborn.names, p_row, cut, strict=True):
            if abs(p - t) > 1e-6:
                assert (name in got["labels"]) == (p >= t), (window, name, p, t)
                clear += 1
    assert clear >= len(val)  # most decisions were compared


def test_classifier_strategy_errors_name_the_fix(tiny_classifier_run, tmp_path, capsys):
    manifest = tiny_classifier_run / "val.jsonl"
    args = ["eval", str(manifest), "--labels", "kinetics-sample", "--strategy", "classifier"]
    assert cli([*args, "--out", str(tmp_path / "e")]) == 2
    assert "set scorer.run_dir=RUN_DIR" in capsys.readouterr().err
    # A classifier trained on another label set is refused before its weights load.
    strategy = load_strategy("classifier", [f"scorer.run_dir={tiny_classifier_run}"])
    with pytest.raises(ConfigError, match="trained on labels .* pass --labels kinetics-sample"):
        check_scorer(strategy.scorer, load_labelset("newborn-resuscitation"), strategy.sampler)


def test_decisions_use_full_precision_scores(tiny_vlm_dir, tmp_path):
    """A threshold exactly on a score keeps the class, one ulp above drops it: the scores a
    Prediction carries must be the ones compared (tuned thresholds do sit on scores)."""
    out = run_config(
        "lora_classifier",
        [
            f"data.manifest={_synthetic_intervals(tmp_path)}",
            f"model.backbone={tiny_vlm_dir}",
            f"out={tmp_path / 'run'}",
            "data.n_frames=2",
            "data.max_side=64",
            "train.epochs=1",
            "train.max_steps=1",
            "split.val_videos=[c.mp4]",
        ],
        progress=False,
    )
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)
    batch = FrameBatch(Clip("w", "w.mp4", 0.0, 2.0), frames, (0, 1), (0.0, 1.0), SamplerSpec(2))
    names = load_labelset("newborn-resuscitation").names
    # The probabilities training tunes thresholds on (finetune.common), from the raw logits.
    tuned_on = probabilities(load_classifier(out).logits([frames]), True)[0]
    for nudge, expected in ((False, names), (True, ())):
        cut = [float(np.nextafter(p, np.inf) if nudge else p) for p in tuned_on]
        (out / "thresholds.json").write_text(json.dumps(dict(zip(names, cut, strict=True))))
        clf = load_classifier(out)
        assert labels_for(clf.predict([batch])[0], multi_label=True) == tuple(expected)


def test_weights_hash_reads_unchanged_weights_once(tmp_path):
    import os

    from vara.tools.classifier import _hash_files, _weights_hash

    (tmp_path / "adapter").mkdir()
    weights = tmp_path / "adapter" / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    first = _weights_hash(tmp_path)
    misses = _hash_files.cache_info().misses
    assert _weights_hash(tmp_path) == first and _hash_files.cache_info().misses == misses
    weights.write_bytes(b"b" * 4096)  # retrained in place: same size, new bytes and mtime
    os.utime(weights, ns=(1, 1))
    assert _weights_hash(tmp_path) != first


def test_a_refused_out_dir_is_refused_before_the_classifier_loads(
    tiny_classifier_run, tmp_path, monkeypatch
):
    from vara.agents.runner import run_clips
    from vara.agents.strategies import load_strategy
    from vara.errors import ConfigError
    from vara.prompts.loader import load_labelset
    from vara.records import write_json_atomic
    from vara.tools import classifier as classifier_module
    from vara.tools.classifier import classifier_id, load_classifier

    assert classifier_id(tiny_classifier_run) == load_classifier(tiny_classifier_run).model_id
    out = tmp_path / "out"
    out.mkdir()
    write_json_atomic(out / "run.json", {"run_info": {"fingerprint": {"models": {}}}})

    def no_load(*_a, **_k):
        raise AssertionError("the classifier loaded before the out dir was refused")

    monkeypatch.setattr(classifier_module, "Classifier", no_load)
    strategy = load_strategy("classifier", [f"scorer.run_dir={tiny_classifier_run}"])
    with pytest.raises(ConfigError, match="settings differ: .*models.scorer"):
        run_clips([], strategy, load_labelset("kinetics-sample"), out, progress=False)
