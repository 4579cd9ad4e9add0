"""What the training recipes share: the run directory's set-up, the data, the loss and the
batch collation (configs: ``finetune/config.py``). A recipe (``lora_classifier.py``,
``timesformer.py``) builds its model and calls these, then ``loop.train_loop`` and
``rundir.write_run``; each piece is small enough to read in one sitting."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from vara.errors import ConfigError
from vara.finetune.config import Config, TrainSpec
from vara.finetune.data import (
    Split,
    WindowFrames,
    cache_frames,
    split_by_video,
    targets,
    write_split,
)
from vara.prompts.loader import load_labelset
from vara.tools import devices
from vara.tools.dataset_sources import open_dataset
from vara.tools.datasets import Dataset
from vara.types import Clip, LabelSet, SamplerSpec

log = logging.getLogger(__name__)


# ---- set-up -----------------------------------------------------------------------------


def check_out(cfg: Config) -> Path:
    """Refuse a run directory holding a finished run, or an interrupted run (a checkpoint)
    made with another config; writes nothing, so it runs before the model loads. A directory
    without a checkpoint starts afresh (its cached frames are keyed by window and sampler,
    so they are safe to re-use)."""
    out = Path(cfg.out)
    frames = cfg.data.frames_dir
    if frames and Path(frames).exists() and not Path(frames).is_dir():
        raise ConfigError(f"data.frames_dir '{frames}' is a file; name a directory for the frames")
    if (out / "run_card.json").exists():
        raise ConfigError(f"'{out}' holds a finished run (run_card.json); use a new out=DIR")
    previous = out / "config.yaml"
    if (out / CHECKPOINT).exists() and previous.exists() and previous.read_text() != _text(cfg):
        raise ConfigError(
            f"'{out}' holds an interrupted run with a different config; use a new out=DIR "
            "(or the same config to resume it)"
        )
    return out


def _text(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def prepare_out(cfg: Config) -> Path:
    """Create the run directory (after ``check_out``) and write its config.yaml."""
    out = check_out(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(_text(cfg))
    return out


def setup(cfg: Config, build_model, *, progress: bool = True):
    """Seed, then (device, label set, run-dir check, model + encoder, run dir, data) in the
    order that makes everything that can fail on a typo fail before the run directory is
    written or any frame is decoded, and a refused run dir before the model loads.
    ``build_model(cfg, labelset, device)``."""
    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    labelset = load_labelset(cfg.data.labels)
    check_out(cfg)
    model, encoder = build_model(cfg, labelset, device)
    out = prepare_out(cfg)
    data = load_data(cfg, out, labelset, progress=progress)
    return device, labelset, model, encoder, out, data


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CHECKPOINT = "checkpoint.pt"


def resolve_workers(workers: int | str, device: str) -> int:
    """``train.num_workers``: auto = 4 DataLoader workers on CUDA (one core left to the main
    process), 0 on CPU. Measured on an H100 with a 3B-size backbone, 16 frames per window:
    0 / 4 / 8 workers gave 3.99 / 5.13 / 4.89 samples/s (README, finetune_throughput)."""
    if workers != "auto":
        return int(workers)
    if not device.startswith("cuda"):
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def resolve_device(device: str) -> str:
    return devices.resolve_device(device, "train.device")


@dataclass(frozen=True)
class TrainData:
    labelset: LabelSet
    dataset: Dataset
    split: Split
    train: WindowFrames
    val: WindowFrames
    train_y: np.ndarray

    @property
    def val_clips(self) -> tuple[Clip, ...]:
        return self.split.val

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must have been trained on to be resumed."""
        return {
            "manifest_sha256": self.dataset.sha256,
            "val_videos": list(self.split.val_videos),
            "n_train": len(self.split.train),
        }


def frames_root(cfg: Config, out: Path) -> Path:
    """Where decoded frames are cached: ``data.frames_dir``, else ``out/frames``."""
    return Path(cfg.data.frames_dir) if cfg.data.frames_dir else out / "frames"


def load_data(cfg: Config, out: Path, labelset: LabelSet, *, progress: bool = True) -> TrainData:
    """Manifest -> windows -> split by video (and group) -> decoded frames (cached, see
    frames_root). ``ucf101:ROOT`` with ``data.split=N`` trains on split N's train list."""
    d = cfg.data
    dataset = open_dataset(
        d.manifest,
        labelset,
        split=d.split,
        subset=d.subset or ("train" if d.split is not None else None),
        video_root=d.video_root,
        window_s=d.window_s,
        overlap=d.overlap,
        min_overlap=d.min_overlap,
        format=d.format,
    )
    split = split_by_video(
        dataset.clips,
        val_fraction=cfg.split.val_fraction,
        seed=cfg.seed,
        val_videos=cfg.split.val_videos,
    )
    write_split(out, dataset, split)
    _warn_missing_classes(labelset, split)
    sampler = SamplerSpec(n_frames=d.n_frames, max_side=d.max_side)
    paths = cache_frames(
        [*split.train, *split.val], sampler, frames_root(cfg, out), progress=progress
    )
    n = len(split.train)
    train_y, val_y = targets(split.train, labelset), targets(split.val, labelset)
    log.info("%d train / %d val windows; val videos %s", n, len(split.val), split.val_videos)
    return TrainData(
        labelset,
        dataset,
        split,
        WindowFrames(paths[:n], train_y),
        WindowFrames(paths[n:], val_y),
        train_y,
    )


def _warn_missing_classes(labelset: LabelSet, split: Split) -> None:
    for side, clips in (("training", split.train), ("validation", split.val)):
        seen = {lab for c in clips for lab in c.labels}
        missing = [name for name in labelset.names if name not in seen]
        if missing:
            if side == "training":
                why = "the model cannot learn them"
            elif labelset.multi_label:
                why = "their tuned thresholds and validation F1 mean nothing (set split.val_videos)"
            else:
                why = "their validation F1 means nothing (set split.val_videos)"
            log.warning("classes %s have no %s windows: %s", missing, side, why)


def class_prior(y: np.ndarray, labelset: LabelSet) -> list[float]:
    """Share of training windows per class: the head's starting bias."""
    if labelset.multi_label:
        return [float(v) for v in y.mean(0)]
    counts = np.bincount(y, minlength=len(labelset.labels)).astype(float)
    return [float(v) for v in counts / counts.sum()]


def loss_for(spec: TrainSpec, labelset: LabelSet, y: np.ndarray, device: str) -> nn.Module:
    kind = spec.loss if spec.loss != "auto" else ("bce" if labelset.multi_label else "ce")
    if kind == "bce":
        if not labelset.multi_label:
            raise ConfigError("train.loss=bce needs a multi-label label set; use ce or auto")
        pos = y.sum(0)
        # neg/pos per class (rare classes weigh more); a class with no positives gets 1.
        weight = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
        return nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(weight, dtype=torch.float32, device=device)
        )
    if labelset.multi_label:
        raise ConfigError("train.loss=ce needs a single-label label set; use bce or auto")
    return nn.CrossEntropyLoss()


class Collate:
    """(frames, target) items -> {"inputs": model inputs, "y": targets} (runs in workers)."""

    def __init__(self, encode):
        self.encode = encode

    def __call__(self, items: Sequence[tuple[np.ndarray, Any]]) -> dict[str, Any]:
        frames = [f for f, _ in items]
        return {
            "inputs": self.encode(frames),
            "y": torch.as_tensor(np.stack([t for _, t in items])),
        }
