"""What the training recipes share: data set-up, the training loop, and writing the run
directory (configs: ``finetune/config.py``). A recipe (``lora_classifier.py``,
``timesformer.py``) builds its model and calls these in order; each piece is small enough to
read in one sitting."""

from __future__ import annotations

import logging
import os
import platform
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

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
from vara.metrics import compute_metrics, tune_thresholds
from vara.prompts.loader import load_labelset
from vara.provenance import meta_info
from vara.records import write_json_atomic
from vara.tools.classifier import ClassifierInfo
from vara.tools.classifier_model import precision_autocast
from vara.tools.datasets import Dataset, load_dataset
from vara.tools.scorer import decide
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
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device!r} but no CUDA device is available; use cpu")
    return device


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
    """Manifest -> windows -> split by video -> decoded frames (cached, see frames_root)."""
    d = cfg.data
    dataset = load_dataset(
        d.manifest,
        labelset,
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


# ---- train ------------------------------------------------------------------------------


def resolve_precision(device: str, precision: str) -> str:
    """``train.precision`` -> "bf16" | "fp32": auto = bf16 autocast on CUDA GPUs that
    support it, else fp32. The run records it (classifier.json ``precision``): validation,
    the tuned thresholds and later inference all use it."""
    if precision != "auto":
        return precision
    cuda = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return "bf16" if cuda else "fp32"


def autocast(device: str, precision: str):
    return precision_autocast(device, resolve_precision(device, precision))


def _loader(
    ds: WindowFrames, collate: Collate, batch_size: int, *, shuffle: bool, seed: int, workers: int
) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=False,
    )


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _resume(
    path: Path, model: nn.Module, optimizer, data: TrainData
) -> tuple[int, list[dict[str, Any]]]:
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("data") != data.fingerprint:
        raise ConfigError(
            f"checkpoint {path} was trained on other data (manifest or split changed: "
            f"{state.get('data')} vs {data.fingerprint}); resuming would mix them and could "
            "leak validation videos into training: use a new out=DIR"
        )
    missing = set(_trainable(model)) - set(state["weights"])
    if missing:
        raise ConfigError(f"checkpoint {path} does not fit this model; use a new out=DIR")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state["weights"].items():
            params[n].copy_(v)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    log.info("resuming after epoch %d from %s", state["epoch"], path)
    return state["epoch"], state["history"]


def train_loop(
    cfg: Config,
    model: nn.Module,
    optimizer,
    loss_fn: nn.Module,
    collate: Collate,
    data: TrainData,
    out: Path,
    *,
    device: str,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Epochs of AdamW steps (accumulation, clipping, autocast) with a validation pass after
    each; checkpoints the trainable weights after every epoch. Returns per-epoch metrics."""
    t = cfg.train
    ckpt = out / CHECKPOINT
    start, history = _resume(ckpt, model, optimizer, data)
    step = sum(h["steps"] for h in history)
    for epoch in range(start, t.epochs):
        if t.max_steps is not None and step >= t.max_steps:
            break
        model.train()
        t_epoch = time.perf_counter()
        loader = _loader(
            data.train,
            collate,
            t.batch_size,
            shuffle=True,
            seed=cfg.seed + epoch,
            workers=resolve_workers(t.num_workers, device),
        )
        losses, steps = [], 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch", disable=not progress)
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
            with autocast(device, t.precision):
                logits = model(inputs)
            loss = loss_fn(logits.float(), batch["y"].to(device))
            # Mean over the micro-batches of this optimiser step (the last group of an
            # epoch may be shorter than grad_accum).
            group = min(t.grad_accum, len(loader) - (i // t.grad_accum) * t.grad_accum)
            (loss / group).backward()
            losses.append(loss.item())
            if (i + 1) % t.grad_accum == 0 or i + 1 == len(loader):
                if t.max_grad_norm > 0:
                    params = [p for g in optimizer.param_groups for p in g["params"]]
                    nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", refresh=False)
                if t.max_steps is not None and step >= t.max_steps:
                    break
        bar.close()
        record = {
            "epoch": epoch + 1,
            "steps": steps,
            "train_loss": float(np.mean(losses)),
            "train_losses": [round(x, 6) for x in losses],
            **validate(model, collate, data, loss_fn, device, t),
        }
        record["wall_s"] = round(time.perf_counter() - t_epoch, 3)  # training + validation
        history.append(record)
        log.info(
            "epoch %d: train loss %.4f, val %s",
            epoch + 1,
            record["train_loss"],
            {k: record[k] for k in ("val_loss", "val_macro_f1")},
        )
        state = {
            "epoch": epoch + 1,
            "weights": _trainable(model),
            "history": history,
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "data": data.fingerprint,
        }
        torch.save(state, ckpt.with_suffix(".tmp"))
        os.replace(ckpt.with_suffix(".tmp"), ckpt)
    return history


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    collate: Collate,
    ds: WindowFrames,
    device: str,
    batch_size: int,
    precision: str,
) -> np.ndarray:
    """Logits of ``ds`` under ``train.precision`` (resolved), as ``tools.classifier`` scores."""
    model.eval()
    out = []
    for i in range(0, len(ds), batch_size):
        batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        with autocast(device, precision):
            out.append(model(inputs).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def validate(model, collate, data: TrainData, loss_fn, device: str, t: TrainSpec) -> dict[str, Any]:
    logits = predict_logits(model, collate, data.val, device, t.eval_batch_size, t.precision)
    loss = float(
        loss_fn(torch.as_tensor(logits).to(device), torch.as_tensor(data.val.y).to(device))
    )
    ls = data.labelset
    probs = probabilities(logits, ls.multi_label)
    half = [0.5] * len(ls.labels)
    predicted = [decide(ls.names, p, half, ls.multi_label) for p in probs]
    truth = [c.labels for c in data.val_clips]
    m = compute_metrics(ls, truth, predicted, reasked=[False] * len(truth), n_boot=0)
    return {
        "val_loss": loss,
        "val_macro_f1": m["macro_f1"],
        "val_per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()},
    }


def tune(labelset: LabelSet, clips: Sequence[Clip], logits: np.ndarray) -> dict[str, float]:
    """Per-class thresholds maximising F1 on the validation windows (multi-label only)."""
    if not labelset.multi_label:
        return {}
    probs = probabilities(logits, True)
    tuned = tune_thresholds(labelset, [c.labels for c in clips], [tuple(p) for p in probs])
    return dict(zip(labelset.names, tuned["tuned"], strict=True))


def final_scores(
    cfg: Config,
    model: nn.Module,
    collate: Collate,
    data: TrainData,
    labelset: LabelSet,
    device: str,
) -> tuple[np.ndarray, dict[str, float], str]:
    """The trained model's validation logits, the thresholds tuned on them, and the resolved
    precision they were computed under (classifier.json records it; scoring reuses it)."""
    t = cfg.train
    logits = predict_logits(model, collate, data.val, device, t.eval_batch_size, t.precision)
    return logits, tune(labelset, data.val_clips, logits), resolve_precision(device, t.precision)


# ---- save -------------------------------------------------------------------------------


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(state, str(path))


def hardware(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_peak_mem_gib"] = round(torch.cuda.max_memory_allocated(index) / 2**30, 3)
    return info


def _tuned_f1(data: TrainData, thresholds: dict[str, float], logits: np.ndarray) -> float | None:
    ls = data.labelset
    if not thresholds or not len(logits):
        return None
    cut = [thresholds[name] for name in ls.names]
    predicted = [decide(ls.names, p, cut, True) for p in probabilities(logits, True)]
    truth = [c.labels for c in data.val_clips]
    return compute_metrics(ls, truth, predicted, reasked=[False] * len(truth), n_boot=0)["macro_f1"]


def write_run(
    out: Path,
    cfg: Config,
    info: ClassifierInfo,
    data: TrainData,
    thresholds: dict[str, float],
    val_logits: np.ndarray,
    history: list[dict[str, Any]],
    *,
    wall_s: float,
    device: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """The files of the run-directory contract (docs/finetune.md); run_card.json last, so
    its presence means the run finished."""
    write_json_atomic(out / "classifier.json", info.to_dict())
    write_json_atomic(out / "label_map.json", {lab: i for i, lab in enumerate(info.labels)})
    write_json_atomic(out / "thresholds.json", thresholds)
    np.save(out / "val_logits.npy", val_logits)
    card = {
        "recipe": cfg.recipe,
        "data": {
            "manifest": data.dataset.path,
            "manifest_sha256": data.dataset.sha256,
            "labelset": data.labelset.name,
            "n_train": len(data.split.train),
            "n_val": len(data.split.val),
            "val_videos": list(data.split.val_videos),
        },
        "epochs": history,
        "final": history[-1] if history else None,
        "thresholds": thresholds,
        # macro-F1 on the validation windows at the tuned thresholds: in-sample (they were
        # tuned there), so optimistic; evaluate on held-out videos for an unbiased figure.
        "val_macro_f1_tuned_in_sample": _tuned_f1(data, thresholds, val_logits),
        "wall_s": round(wall_s, 3),  # this session's, from set-up to the run card
        # every epoch's training + validation, over all sessions of a resumed run
        "epochs_wall_s": round(sum(h.get("wall_s", 0.0) for h in history), 3),
        **(extra or {}),
        "hardware": hardware(device),
        "meta_info": meta_info(),
    }
    write_json_atomic(out / "run_card.json", card)
    (out / CHECKPOINT).unlink(missing_ok=True)  # after the card: a crash between keeps it
    if not cfg.data.frames_dir:  # the run's own frame cache served resuming; a named one stays
        shutil.rmtree(out / "frames", ignore_errors=True)
