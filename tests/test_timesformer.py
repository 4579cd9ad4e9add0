"""The TimeSformer baseline recipe: `vara finetune timesformer` on the shared clips (a tiny
random-init model), the run-directory contract, reload with bit-identical logits, the split,
`vara eval --strategy classifier` on the held-out windows, starting from a checkpoint, and
config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import write_interval_manifest

from vara.cli import main as cli
from vara.errors import ConfigError, VaraError
from vara.finetune.data import cache_frames
from vara.finetune.recipes import run_config
from vara.prompts.loader import load_labelset
from vara.tools.classifier import load_classifier, read_info
from vara.tools.datasets import load_dataset
from vara.types import SamplerSpec

KINETICS = load_labelset("kinetics-sample")
STRATEGY = Path(__file__).resolve().parents[1] / "agents" / "strategies" / "classifier.yaml"

# A random-init TimeSformer of ~53 k parameters: 2x2 patches of 16 px, 4 frames.
TINY = (
    "data.labels=kinetics-sample",
    "data.n_frames=4",
    "data.max_side=64",
    "model.checkpoint=null",
    "model.image_size=32",
    "model.patch_size=16",
    "model.hidden_size=32",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "train.epochs=2",
    "train.batch_size=8",
    "train.lr=1.0e-3",
    "train.head_lr=1.0e-3",
)


@pytest.fixture(scope="module")
def manifest(shared_videos, tmp_path_factory):
    return write_interval_manifest(tmp_path_factory.mktemp("tsf") / "intervals.csv", shared_videos)


@pytest.fixture(scope="module")
def tiny_run(manifest):
    """`vara finetune timesformer` through the CLI, once per module (~3 s)."""
    out = manifest.parent / "run"
    code = cli(
        [
            "finetune",
            "timesformer",
            f"data.manifest={manifest}",
            f"out={out}",
            *TINY,
            f"data.frames_dir={manifest.parent / 'frames'}",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def _val_frames(run: Path) -> tuple[list[np.ndarray], list[Path]]:
    """The held-out windows' frames as `vara eval` would read val.jsonl, from the cache."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())["data"]
    ds = load_dataset(run / "val.jsonl", KINETICS)
    sampler = SamplerSpec(n_frames=cfg["n_frames"], max_side=cfg["max_side"])
    root = Path(cfg["frames_dir"] or run / "frames")  # the run's own cache is gone: re-decode
    paths = cache_frames(ds.clips, sampler, root, progress=False)
    return [np.load(p) for p in paths], paths


def test_training_lowers_the_loss(tiny_run):
    card = json.loads((tiny_run / "run_card.json").read_text())
    assert card["recipe"] == "timesformer" and len(card["epochs"]) == 2
    first, last = card["epochs"][0]["train_losses"], card["epochs"][-1]["train_losses"]
    assert np.mean(last) < 0.9 * np.mean(first), (np.mean(first), np.mean(last))
    assert card["trainable_parameters"] == card["total_parameters"]  # full fine-tune
    assert card["init"] == "random" and card["model_num_frames"] == 4
    assert card["image_mean"] == [0.45] * 3 and card["image_std"] == [0.225] * 3


def test_run_directory_contract(tiny_run):
    for name in (
        "classifier.json",
        "label_map.json",
        "thresholds.json",
        "config.yaml",
        "run_card.json",
        "split.json",
        "val.jsonl",
        "val_logits.npy",
        "model/config.json",
        "model/model.safetensors",
        "model/preprocessor_config.json",
    ):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / "checkpoint.pt").exists()
    info = read_info(tiny_run)
    assert info.kind == "timesformer" and info.backbone == "from-config"
    assert info.labels == KINETICS.names and not info.multi_label and info.n_frames == 4
    assert info.labelset == "kinetics-sample" and info.max_side == 64
    hf = json.loads((tiny_run / "model" / "config.json").read_text())
    assert hf["id2label"] == {str(i): lab for i, lab in enumerate(KINETICS.names)}
    assert hf["problem_type"] == "single_label_classification" and hf["num_frames"] == 4
    assert json.loads((tiny_run / "thresholds.json").read_text()) == {}  # single-label


def test_split_is_by_video_and_matches_split_json(tiny_run, manifest):
    split = json.loads((tiny_run / "split.json").read_text())
    val = [json.loads(line) for line in (tiny_run / "val.jsonl").open()]
    assert {v["video"] for v in val} == set(split["val_videos"]) and split["val_videos"]
    assert split["n_val"] == len(val) == len(np.load(tiny_run / "val_logits.npy"))
    everything = load_dataset(manifest, KINETICS).clips  # the same 2-s, 50 % windows
    assert split["n_train"] + split["n_val"] == len(everything)
    held = [c for c in everything if c.video in split["val_videos"]]
    assert [(c.video, c.start_s, c.end_s) for c in held] == [
        (v["video"], v["start_s"], v["end_s"]) for v in val
    ]
    card = json.loads((tiny_run / "run_card.json").read_text())
    assert card["data"]["val_videos"] == split["val_videos"]
    assert (card["data"]["n_train"], card["data"]["n_val"]) == (split["n_train"], split["n_val"])


def test_reload_gives_bit_identical_logits(tiny_run):
    root = tiny_run.parent / "frames"  # data.frames_dir: kept after the run
    before = sorted(root.iterdir())
    frames, paths = _val_frames(tiny_run)
    assert sorted(root.iterdir()) == before  # cache hits: training's frames
    assert set(paths) <= set(before)
    clf = load_classifier(tiny_run, device="cpu", batch_size=8)  # = train.eval_batch_size
    got = clf.logits(frames)
    want = np.load(tiny_run / "val_logits.npy")
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.skipif(not STRATEGY.is_file(), reason="the classifier strategy is not in the tree")
def test_eval_with_the_classifier_strategy(tiny_run, tmp_path, capsys):
    run = tiny_run
    code = cli(
        [
            "eval",
            str(run / "val.jsonl"),
            "--labels",
            "kinetics-sample",
            "--strategy",
            "classifier",
            "--set",
            f"scorer.run_dir={run}",
            "--frames",
            "4",
            "--max-side",
            "64",
            "--out",
            str(tmp_path / "eval"),
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr()
    results = json.loads((tmp_path / "eval" / "classifier" / "results.json").read_text())
    n_val = json.loads((run / "split.json").read_text())["n_val"]
    assert results["metrics"]["n"] == n_val and results["metrics"]["coverage"] == 1.0
    assert 0.0 <= results["metrics"]["macro_f1"] <= 1.0
    # The same windows, frames and weights as training's last validation pass.
    want = np.load(run / "val_logits.npy")
    val = [json.loads(line) for line in (run / "val.jsonl").open()]
    order = {(v["video"], v["start_s"]): i for i, v in enumerate(val)}
    preds = [json.loads(x) for x in (tmp_path / "eval" / "classifier" / "predictions.jsonl").open()]
    assert len(preds) == n_val
    clf_id = load_classifier(run).model_id
    for p in preds:
        assert p["models"] == {"scorer": clf_id} and clf_id.startswith("timesformer:")
        row = want[order[(p["video"], p["start_s"])]]
        assert p["labels"] == [KINETICS.names[int(np.argmax(row))]]


def test_training_from_a_checkpoint_keeps_its_weights(manifest, tmp_path):
    """model.checkpoint: a saved TimeSformer with another label count and frame count (no
    processor saved) -> a new classification layer, the body as saved, its time embeddings
    resampled to data.n_frames; with train.lr=0 the body leaves training unchanged."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(1)
    ckpt = tmp_path / "ckpt"
    TimesformerForVideoClassification(
        TimesformerConfig(
            image_size=32,
            patch_size=16,
            num_frames=2,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=3,
        )
    ).save_pretrained(str(ckpt))
    run = run_config(
        "timesformer",
        [
            f"data.manifest={manifest}",
            f"out={tmp_path / 'run'}",
            f"model.checkpoint={ckpt}",
            "data.labels=kinetics-sample",
            "data.n_frames=4",
            "data.max_side=64",
            "train.epochs=1",
            "train.max_steps=2",
            "train.batch_size=8",
            "train.lr=0.0",
            "train.weight_decay=0.0",
        ],
        progress=False,
    )
    from safetensors.torch import load_file

    before = load_file(str(ckpt / "model.safetensors"))
    after = load_file(str(run / "model" / "model.safetensors"))
    body = [k for k in before if not k.startswith("classifier.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)
    assert after["classifier.weight"].shape == (len(KINETICS.names), 32)
    card = json.loads((run / "run_card.json").read_text())
    assert card["init"] == "pretrained" and card["head"] == "new" and card["model_num_frames"] == 2
    assert card["image_size"] == 32  # processor built from the checkpoint's image size
    assert read_info(run).backbone == str(ckpt)
    frames, _ = _val_frames(run)
    got = load_classifier(run, device="cpu").logits(frames)
    assert np.array_equal(got, np.load(run / "val_logits.npy"))


def test_a_checkpoint_with_these_labels_keeps_its_head(tiny_run, manifest, tmp_path):
    """Continuing from a finished run's model/: same labels -> its classification layer is
    kept (not re-initialised, no prior bias); with zero learning rates nothing moves."""
    from safetensors.torch import load_file

    run = run_config(
        "timesformer",
        [
            f"data.manifest={manifest}",
            f"out={tmp_path / 'run'}",
            f"model.checkpoint={tiny_run / 'model'}",
            *TINY[:3],
            "train.epochs=1",
            "train.max_steps=1",
            "train.lr=0.0",
            "train.head_lr=0.0",
            "train.weight_decay=0.0",
        ],
        progress=False,
    )
    before = load_file(str(tiny_run / "model" / "model.safetensors"))
    after = load_file(str(run / "model" / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    card = json.loads((run / "run_card.json").read_text())
    assert card["head"] == "kept" and card["image_mean"] == [0.45] * 3  # processor from model/


def test_config_errors_name_the_fix(manifest, tmp_path):
    base = [f"data.manifest={manifest}", f"out={tmp_path / 'run'}"]
    with pytest.raises(ConfigError, match="attention_type must be one of"):
        run_config("timesformer", [*base, "model.attention_type=sideways"])
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        run_config("timesformer", [*base, "model.checkpoint=null", "model.image_size=30"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['backbone'\] in model"):
        run_config("timesformer", [*base, "model.backbone=x"])
    with pytest.raises(VaraError, match="hub is unreachable"):  # HF_HUB_OFFLINE=1 (conftest)
        run_config("timesformer", [*base, "data.labels=kinetics-sample", "data.max_side=64"])
