"""The LoRA VLM classifier recipe: training on the shared clips, the run-directory contract,
reload with bit-identical logits, `vara eval --strategy classifier`, resume, config errors."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_CLASSIFIER_OVERRIDES, vara, write_interval_manifest

from vara.cli import main as cli
from vara.errors import ConfigError, InputError
from vara.finetune import common, loop, rundir
from vara.finetune import data as data_module
from vara.finetune.config import TrainSpec, load_config
from vara.finetune.data import cache_frames, split_by_video
from vara.finetune.lora_classifier import LoraConfig
from vara.finetune.recipes import run_config
from vara.prompts.loader import load_labelset
from vara.tools.classifier import load_classifier, read_info
from vara.tools.classifier_model import MeanPool, VideoClassifier
from vara.tools.datasets import load_dataset
from vara.types import Clip, SamplerSpec

KINETICS = load_labelset("kinetics-sample")


def _val_frames(run: Path) -> list[np.ndarray]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())["data"]
    ds = load_dataset(run / "val.jsonl", KINETICS)
    sampler = SamplerSpec(n_frames=cfg["n_frames"], max_side=cfg["max_side"])
    return [np.load(p) for p in cache_frames(ds.clips, sampler, run / "frames", progress=False)]


def test_training_lowers_the_loss(tiny_classifier_run):
    card = json.loads((tiny_classifier_run / "run_card.json").read_text())
    first, last = card["epochs"][0]["train_losses"], card["epochs"][-1]["train_losses"]
    assert np.mean(last) < 0.8 * np.mean(first), (np.mean(first), np.mean(last))
    assert card["data"]["n_train"] > 0 and card["data"]["n_val"] > 0
    assert card["trainable_parameters"] < card["total_parameters"]
    assert {"torch", "peft", "transformers"} <= set(card["meta_info"]["packages"])


def test_run_directory_contract(tiny_classifier_run):
    run = tiny_classifier_run
    for name in (
        "classifier.json",
        "label_map.json",
        "thresholds.json",
        "config.yaml",
        "run_card.json",
        "split.json",
        "val.jsonl",
        "head.safetensors",
        "adapter/adapter_config.json",
    ):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.pt").exists()  # removed once the run finished
    info = read_info(run)
    assert info.kind == "vlm-lora" and info.labels == KINETICS.names and not info.multi_label
    assert json.loads((run / "label_map.json").read_text()) == {
        lab: i for i, lab in enumerate(KINETICS.names)
    }
    assert info.instruction.startswith("These 4 frames")


def test_split_is_by_video(tiny_classifier_run):
    split = json.loads((tiny_classifier_run / "split.json").read_text())
    train, val = set(split["train_videos"]), set(split["val_videos"])
    assert train and val and train.isdisjoint(val)
    assert len(train | val) == 7  # every shared clip is on exactly one side
    in_val_jsonl = {
        json.loads(line)["video"] for line in (tiny_classifier_run / "val.jsonl").open()
    }
    assert in_val_jsonl == val


def test_reload_gives_bit_identical_logits(tiny_classifier_run):
    clf = load_classifier(tiny_classifier_run, batch_size=8)
    got = clf.logits(_val_frames(tiny_classifier_run))
    want = np.load(tiny_classifier_run / "val_logits.npy")
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def test_eval_with_the_classifier_strategy(tiny_classifier_run, tmp_path):
    run = tiny_classifier_run
    r = vara(
        "eval",
        str(run / "val.jsonl"),
        "--labels",
        "kinetics-sample",
        "--strategy",
        "classifier",
        "--set",
        f"scorer.run_dir={run}",
        "--set",
        "sampler.n_frames=4",
        "--set",
        "sampler.max_side=112",
        "--out",
        str(tmp_path / "eval"),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    # --no-progress silences transformers' weight-loading bar too; loading prints no table.
    assert "it/s" not in r.stderr and "LOAD REPORT" not in r.stderr, r.stderr
    results = json.loads((tmp_path / "eval" / "classifier" / "results.json").read_text())
    n_val = json.loads((run / "split.json").read_text())["n_val"]
    assert results["metrics"]["n"] == n_val and results["metrics"]["coverage"] == 1.0
    assert results["metrics"]["hallucination_rate"] is None  # no language model answered
    assert r.stdout.splitlines()[1].split()[-2] == "-"  # the summary's halluc. column
    preds = [json.loads(x) for x in (tmp_path / "eval" / "classifier" / "predictions.jsonl").open()]
    clf_id = load_classifier(run).model_id
    # The same windows, frames and weights as training's final validation pass.
    want = np.load(run / "val_logits.npy")
    probs = np.exp(want - want.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    val = [json.loads(line) for line in (run / "val.jsonl").open()]
    order = {(v["video"], v["start_s"]): i for i, v in enumerate(val)}
    for p in preds:
        assert p["models"] == {"scorer": clf_id}
        assert p["evidence"][0]["source"] == "classifier"
        row = probs[order[(p["video"], p["start_s"])]]
        assert p["scores"]["probs"] == pytest.approx(row.tolist(), abs=2e-6)
        assert p["labels"] == [KINETICS.names[int(np.argmax(row))]]


def test_bf16_run_is_scored_as_it_was_validated(tiny_vlm_dir, shared_videos, tmp_path, caplog):
    """train.precision=bf16 (what auto picks on GPUs): classifier.json records it, the tuned
    thresholds come from bf16 validation scores, and the classifier reproduces those scores
    bit for bit under bf16; fp32 scoring (auto on CPU) differs, and says so in the log."""
    manifest = write_interval_manifest(tmp_path / "intervals.csv", shared_videos)
    overrides = [
        f"data.manifest={manifest}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={tmp_path / 'run'}",
        *TINY_CLASSIFIER_OVERRIDES,
        "train.epochs=1",
        "train.precision=bf16",
    ]
    run = run_config("lora_classifier", overrides, progress=False)
    assert read_info(run).precision == "bf16"
    frames, want = _val_frames(run), np.load(run / "val_logits.npy")
    bf16 = load_classifier(run, device="cpu", batch_size=8, precision="bf16")
    assert np.array_equal(bf16.logits(frames), want)
    with caplog.at_level("INFO", logger="vara.tools.classifier"):
        fp32 = load_classifier(run, device="cpu", batch_size=8)  # auto on CPU = fp32
    assert fp32.precision == "fp32" and "tuned under bf16" in caplog.text
    got = fp32.logits(frames)
    assert not np.array_equal(got, want) and np.allclose(got, want, atol=0.5)


def test_classifier_precision_choice(tiny_classifier_run, monkeypatch):
    from vara.tools.classifier import _precision

    info = read_info(tiny_classifier_run)
    assert info.precision == "fp32"  # trained on CPU: auto = fp32
    bf16_run = dataclasses.replace(info, precision="bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert _precision("auto", bf16_run, "cuda") == "bf16"
    assert _precision("auto", bf16_run, "cuda:1") == "bf16"
    assert _precision("auto", bf16_run, "cpu") == "fp32"
    assert _precision("auto", info, "cuda") == "fp32"
    assert _precision("bf16", info, "cpu") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert _precision("auto", bf16_run, "cuda") == "fp32"
    with pytest.raises(InputError, match="scorer.precision must be auto, fp32 or bf16"):
        _precision("fp16", info, "cpu")


def test_a_crash_in_epoch_2_resumes_to_the_same_model(
    tiny_vlm_dir, tiny_classifier_run, shared_videos, tmp_path, monkeypatch
):
    """Killed during epoch 2's validation, the re-run trains only epoch 2 again, re-uses the
    decoded frames, and ends with exactly the uninterrupted run's model."""
    manifest = write_interval_manifest(tmp_path / "m.csv", shared_videos)
    overrides = [
        f"data.manifest={manifest}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={tmp_path / 'run'}",
        *TINY_CLASSIFIER_OVERRIDES,  # the same training as the session's tiny_classifier_run
    ]
    real_validate = loop.validate
    calls = []

    def crash_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(loop, "validate", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_config("lora_classifier", overrides, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert any((tmp_path / "run" / "frames").iterdir())  # kept for the resume
    decoded = []
    real_decode = data_module.frame_batches.iter_frame_batches
    monkeypatch.setattr(
        data_module.frame_batches,
        "iter_frame_batches",
        lambda *a, **k: decoded.append(1) or real_decode(*a, **k),
    )
    steps = []
    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1) or real_step(self, *a, **k)
    )
    run = run_config("lora_classifier", overrides, progress=False)
    card = json.loads((run / "run_card.json").read_text())
    assert len(steps) == card["epochs"][1]["steps"] > 0  # epoch 2 only
    first, second = (e["wall_s"] for e in card["epochs"])  # epoch 1 ran in the crashed session
    assert first > 0 and second > 0 and card["epochs_wall_s"] == round(first + second, 3)
    assert decoded == []  # every window's frames came from the interrupted run's cache
    assert not (run / "frames").exists()  # the run's own frame cache goes when it finishes
    assert np.array_equal(
        np.load(run / "val_logits.npy"), np.load(tiny_classifier_run / "val_logits.npy")
    )
    assert not (run / "checkpoint.pt").exists()
    from vara.finetune import lora_classifier

    def no_model(*_a, **_k):
        raise AssertionError("the backbone loaded before the finished run was refused")

    monkeypatch.setattr(lora_classifier, "load_backbone", no_model)
    with pytest.raises(ConfigError, match="finished run"):
        run_config("lora_classifier", overrides, progress=False)


def test_resume_refuses_changed_data(tiny_vlm_dir, shared_videos, tmp_path, monkeypatch):
    manifest = write_interval_manifest(tmp_path / "m.csv", shared_videos)
    overrides = [
        f"data.manifest={manifest}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={tmp_path / 'run'}",
        *TINY_CLASSIFIER_OVERRIDES,
        "train.epochs=2",
        "train.max_steps=2",
    ]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "write_run", crash)
    with pytest.raises(KeyboardInterrupt):
        run_config("lora_classifier", overrides, progress=False)
    monkeypatch.undo()
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:-1]) + "\n")  # one video fewer: another split
    with pytest.raises(ConfigError, match="trained on other data"):
        run_config("lora_classifier", overrides, progress=False)


class _Toy(torch.nn.Module):
    """Logits = a linear map of each window's mean pixel: the loop's math without a VLM."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, inputs):
        return self.linear(inputs["x"])


def _toy_run(tmp_path, n: int, batch_size: int, grad_accum: int) -> torch.Tensor:
    """One epoch of loop.train_loop with plain SGD on n tiny windows; the final weights."""
    from vara.finetune.common import Collate, TrainData
    from vara.finetune.config import Config, TrainSpec
    from vara.finetune.data import Split, WindowFrames
    from vara.finetune.loop import train_loop
    from vara.tools.datasets import Dataset
    from vara.types import LabelSet

    labelset = LabelSet.from_dict(
        {
            "name": "toy",
            "description": "",
            "multi_label": False,
            "labels": [{"name": "a", "description": ""}, {"name": "b", "description": ""}],
        }
    )
    tmp_path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n + 1):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], rng.integers(0, 255, (2, 4, 4, 3), dtype=np.uint8))
    y = np.array([i % 2 for i in range(n + 1)], np.int64)
    clips = [Clip(f"v{i}", f"v{i}.mp4", 0.0, 2.0, ("ab"[i % 2],)) for i in range(n + 1)]
    data = TrainData(
        labelset,
        Dataset("toy", "toy.csv", "0", tuple(clips)),
        Split(tuple(clips[:n]), tuple(clips[n:]), ("vn.mp4",)),
        WindowFrames(paths[:n], y[:n]),
        WindowFrames(paths[n:], y[n:]),
        y[:n],
    )
    train = TrainSpec(epochs=1, batch_size=batch_size, grad_accum=grad_accum, max_grad_norm=0)
    cfg = Config(recipe="toy", out=str(tmp_path), train=train)
    model = _Toy()
    encode = lambda frames: {"x": torch.tensor(np.stack(frames) / 255.0).float().mean((1, 2, 3))}  # noqa: E731
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    train_loop(
        cfg,
        model,
        sgd,
        torch.nn.CrossEntropyLoss(),
        Collate(encode),
        data,
        tmp_path,
        device="cpu",
        progress=False,
    )
    return model.linear.weight.detach().clone()


def test_gradient_accumulation_averages_over_each_step(tmp_path):
    """SGD (scale-sensitive, unlike Adam): 2 micro-batches of 2 = one batch of 4, and a short
    last group is averaged over its own size (6 windows, batch 2, accum 2: groups 4 + 2)."""
    big = _toy_run(tmp_path / "a", n=4, batch_size=4, grad_accum=1)
    accumulated = _toy_run(tmp_path / "b", n=4, batch_size=2, grad_accum=2)
    torch.testing.assert_close(big, accumulated)
    assert not torch.equal(big, _toy_run(tmp_path / "c", n=4, batch_size=2, grad_accum=1))
    short_last = _toy_run(tmp_path / "d", n=6, batch_size=2, grad_accum=2)
    # The same two steps taken as batches of 4 and 2.
    torch.testing.assert_close(
        short_last, _toy_run(tmp_path / "e", n=6, batch_size=4, grad_accum=1)
    )


def test_config_errors_name_the_fix(tmp_path, tiny_vlm_dir):
    with pytest.raises(ConfigError, match="data.manifest is not set"):
        run_config("lora_classifier", [])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr'\] in lora"):
        run_config("lora_classifier", ["data.manifest=x.csv", "lora.lr=1"])
    with pytest.raises(ConfigError, match=r"'lora.r': expected key.sub=value, e.g. train.epochs="):
        run_config("lora_classifier", ["data.manifest=x.csv", "lora.r"])
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"data.frames_dir '.*a-file' is a file; name a dir"):
        run_config("lora_classifier", ["data.manifest=x.csv", f"data.frames_dir={a_file}"])
    with pytest.raises(InputError, match=r"frame cache '.*a-file/sub' cannot be made \("):
        cache_frames([], SamplerSpec(n_frames=2), a_file / "sub", progress=False)
    with pytest.raises(ConfigError, match=r"\['epoch'\] in train \(did you mean 'epochs'\?\)"):
        run_config("lora_classifier", ["data.manifest=x.csv", "train.epoch=1"])
    with pytest.raises(ConfigError, match="not found; packaged"):
        run_config("no-such-recipe", [])
    # A value of the wrong type names the key, what it takes and the default.
    with pytest.raises(
        ConfigError,
        match=r"overrides: train.epochs must be int, got 'two' "
        r"\(default: train.epochs=5\)",
    ):
        run_config("lora_classifier", ["data.manifest=x.csv", "train.epochs=two"])
    with pytest.raises(ConfigError, match="lora.r must be int, got 1.5"):
        run_config("lora_classifier", ["data.manifest=x.csv", "lora.r=1.5"])
    with pytest.raises(InputError, match="no classifier.json"):
        load_classifier(tmp_path)
    (tmp_path / "c.yaml").write_text("recipe: lora_classifier\ndata: {manifest: m.csv}\n")
    cfg = load_config(LoraConfig, tmp_path / "c.yaml", ["train.lr=1e-3", "seed=3"])
    assert cfg.train.lr == 1e-3 and cfg.seed == 3  # YAML 1.1 reads 1e-3 as a string


def test_num_workers_auto_is_4_on_cuda_and_0_on_cpu(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("recipe: lora_classifier\ndata: {manifest: m.csv}\n")
    assert load_config(LoraConfig, tmp_path / "c.yaml").train.num_workers == "auto"
    monkeypatch.setattr(common.os, "cpu_count", lambda: 16)
    assert common.resolve_workers("auto", "cuda") == 4
    assert common.resolve_workers("auto", "cuda:1") == 4
    assert common.resolve_workers("auto", "cpu") == 0
    assert common.resolve_workers(3, "cpu") == 3
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)  # one core stays with training
    assert common.resolve_workers("auto", "cuda") == 1
    cfg = load_config(LoraConfig, tmp_path / "c.yaml", ["train.num_workers=2"])
    assert cfg.train.num_workers == 2
    for bad, message in (
        ("-1", "auto or an integer >= 0"),
        ("many", "auto or an integer >= 0"),
        ("true", r"int \| str, got True"),
    ):
        with pytest.raises(ConfigError, match=f"num_workers must be {message}"):
            load_config(LoraConfig, tmp_path / "c.yaml", [f"train.num_workers={bad}"])


def test_split_by_video_rules():
    clips = [
        Clip(f"{v}:{i}", v, i, i + 2.0, ("a",))
        for v in ("x.mp4", "y.mp4", "z.mp4")
        for i in range(3)
    ]
    s = split_by_video(clips, val_fraction=0.34, seed=1)
    assert {c.video for c in s.train}.isdisjoint({c.video for c in s.val})
    assert len(s.val) == 3 and len(s.train) == 6
    assert split_by_video(clips, val_videos=["y.mp4"]).val_videos == ("y.mp4",)
    with pytest.raises(InputError, match="not videos of the manifest"):
        split_by_video(clips, val_videos=["nope.mp4"])
    with pytest.raises(InputError, match="at least 2"):
        split_by_video(clips[:3])


def test_head_bias_starts_at_the_prior_and_pos_weight_favours_rare_classes():
    model = VideoClassifier(torch.nn.Identity(), hidden_size=8, n_classes=3, image_token_id=1)
    model.init_bias([0.5, 0.1, 0.9], multi_label=True)
    want = [math.log(p / (1 - p)) for p in (0.5, 0.1, 0.9)]
    assert model.head[-1].bias.tolist() == pytest.approx(want, rel=1e-5)
    assert isinstance(model.pool, MeanPool)
    newborn = load_labelset("newborn-resuscitation")
    y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    loss = common.loss_for(TrainSpec(), newborn, y, "cpu")
    assert loss.pos_weight.tolist() == pytest.approx([1 / 3, 3.0, 1.0])


def test_cli_trains_and_prints_a_working_eval_command(
    tiny_vlm_dir, shared_videos, tmp_path, capsys, caplog
):
    manifest = write_interval_manifest(tmp_path / "m.csv", shared_videos)
    args = [
        "finetune",
        "lora_classifier",
        f"data.manifest={manifest}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={tmp_path / 'run'}",
        *TINY_CLASSIFIER_OVERRIDES,
        "train.epochs=1",
        "train.max_steps=3",
        "--quiet",
    ]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert f"run directory {tmp_path / 'run'}" in printed
    assert "optimistic" not in printed  # kinetics-sample is single-label: nothing is tuned
    command = printed.split("evaluate it: vara ", 1)[1].split()
    assert command[command.index("--out") + 1] == f"{tmp_path / 'run'}-eval"  # beside the run
    command[command.index("--out") + 1] = str(tmp_path / "eval")
    assert cli([*command, "--no-progress"]) == 0
    results = json.loads((tmp_path / "eval" / "classifier" / "results.json").read_text())
    card = json.loads((tmp_path / "run" / "run_card.json").read_text())
    assert card["epochs"][0]["steps"] == 3
    assert results["metrics"]["n"] == card["data"]["n_val"]
    assert "was trained on" not in caplog.text  # the printed command matches training
    command[command.index("--frames") + 1] = "2"
    command[command.index("--out") + 1] = str(tmp_path / "eval-2-frames")
    assert cli([*command, "--no-progress"]) == 0
    assert "pass --frames 4 --max-side 112" in caplog.text


def test_concurrent_windows_are_batched_and_a_bad_one_fails_alone(tiny_classifier_run):
    from concurrent.futures import ThreadPoolExecutor

    clf = load_classifier(tiny_classifier_run, batch_size=8)
    frames = _val_frames(tiny_classifier_run)
    alone = [clf.logits([f])[0] for f in frames]
    passes = []
    forward = clf._forward
    clf._forward = lambda windows: passes.append(len(windows)) or forward(windows)
    pool = ThreadPoolExecutor(len(frames) + 1)
    with clf._batcher._model_lock:  # hold the model so every caller queues up behind it
        futures = [pool.submit(clf.logits, [f]) for f in frames]
        bad = pool.submit(clf.logits, [np.zeros((4, 8, 8, 3), np.float64)])  # not uint8
        while len(clf._batcher._queue) < len(frames) + 1:
            time.sleep(0.01)
    got = [f.result()[0] for f in futures]
    pool.shutdown()
    assert passes[0] == len(frames) + 1  # one batched pass for everyone waiting
    for g, a in zip(got, alone, strict=True):
        np.testing.assert_allclose(g, a, atol=1e-5)
    with pytest.raises(TypeError, match="Cannot handle this data type"):  # PIL, for that frame
        bad.result()


def test_backbone_load_is_quiet_but_names_weights_that_start_random(tiny_vlm_dir, tmp_path, caplog):
    """The LM head the base model drops is no news; a weight missing from the checkpoint is."""
    import logging
    import shutil

    from safetensors.torch import load_file, save_file

    from vara.tools.classifier_model import load_backbone

    transformers_log = logging.getLogger("transformers")
    transformers_log.addHandler(caplog.handler)  # transformers' loggers do not propagate
    try:
        with caplog.at_level(logging.INFO):
            load_backbone(str(tiny_vlm_dir))
        assert "LOAD REPORT" not in caplog.text, caplog.text
        assert "start random" not in caplog.text
        caplog.clear()
        broken = tmp_path / "no-norm"
        shutil.copytree(tiny_vlm_dir, broken)
        weights = load_file(broken / "model.safetensors")
        gone = next(k for k in weights if k.endswith("text_model.norm.weight"))
        del weights[gone]
        save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
        with caplog.at_level(logging.INFO):
            load_backbone(str(broken))
    finally:
        transformers_log.removeHandler(caplog.handler)
    warned = [r.getMessage() for r in caplog.records if r.name == "vara.tools.classifier_model"]
    assert len(warned) == 1 and "1 weight(s) are not in the checkpoint" in warned[0], warned
    assert "text_model.norm.weight" in warned[0] and "LOAD REPORT" not in caplog.text


def test_a_named_frames_dir_is_shared_by_runs(shared_videos, tmp_path, monkeypatch):
    """Two runs on the same windows and sampler decode each video once between them."""
    manifest = write_interval_manifest(tmp_path / "m.csv", shared_videos)
    decoded = []
    real_decode = data_module.frame_batches.iter_frame_batches
    monkeypatch.setattr(
        data_module.frame_batches,
        "iter_frame_batches",
        lambda src, *a, **k: decoded.append(src) or real_decode(src, *a, **k),
    )
    (tmp_path / "c.yaml").write_text("recipe: lora_classifier\n")
    for name in ("a", "b"):
        cfg = load_config(
            LoraConfig,
            tmp_path / "c.yaml",
            [
                f"data.manifest={manifest}",
                "data.labels=kinetics-sample",
                "data.n_frames=2",
                "data.max_side=64",
                f"data.frames_dir={tmp_path / 'frames'}",
                f"out={tmp_path / name}",
            ],
        )
        (tmp_path / name).mkdir()
        common.load_data(cfg, tmp_path / name, KINETICS, progress=False)
        assert not (tmp_path / name / "frames").exists()
    n_videos = len({c.video for c in load_dataset(manifest, KINETICS).clips})
    assert len(decoded) == len(set(decoded)) == n_videos > 0
