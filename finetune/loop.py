"""The training loop the recipes share: epochs of optimiser steps (accumulation, clipping,
autocast), a validation pass and a checkpoint after each, resuming from the last one."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vara.errors import ConfigError
from vara.finetune.common import CHECKPOINT, Collate, TrainData, resolve_workers
from vara.finetune.config import Config, TrainSpec
from vara.finetune.data import WindowFrames
from vara.metrics import compute_metrics
from vara.tools.classifier_model import precision_autocast
from vara.tools.scorer import decide

log = logging.getLogger(__name__)


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
    train_collate: Collate | None = None,
    validate_fn=None,
) -> list[dict[str, Any]]:
    """Epochs of AdamW steps (accumulation, clipping, autocast) with a validation pass after
    each; checkpoints the trainable weights after every epoch. Returns per-epoch metrics.
    ``train_collate``: the training batches' own (augmenting) collation; validation always
    uses ``collate``. ``validate_fn``: the per-epoch validation (default ``validate``: loss
    and macro-F1 of a classifier's logits), same arguments."""
    t = cfg.train
    ckpt = out / CHECKPOINT
    start, history = _resume(ckpt, model, optimizer, data)
    step = sum(h["steps"] for h in history)
    for epoch in range(start, t.epochs):
        if t.max_steps is not None and step >= t.max_steps:
            break
        t_epoch = time.perf_counter()
        epoch_run = _Epoch(cfg, model, optimizer, loss_fn, device, step)
        losses, steps = epoch_run.train(train_collate or collate, data, epoch, progress)
        step += steps
        record = {
            "epoch": epoch + 1,
            "steps": steps,
            "train_loss": float(np.mean(losses)),
            "train_losses": [round(x, 6) for x in losses],
            **(validate_fn or validate)(model, collate, data, loss_fn, device, t),
        }
        record["wall_s"] = round(time.perf_counter() - t_epoch, 3)  # training + validation
        history.append(record)
        log.info(
            "epoch %d: train loss %.4f, val %s",
            epoch + 1,
            record["train_loss"],
            {k: record.get(k) for k in ("val_loss", "val_macro_f1")},
        )
        _checkpoint(ckpt, epoch + 1, model, optimizer, history, data)
    return history


class _Epoch:
    """One epoch's optimiser steps; ``step`` counts steps over the whole run (max_steps)."""

    def __init__(self, cfg: Config, model, optimizer, loss_fn, device: str, step: int):
        self.cfg, self.model, self.optimizer, self.loss_fn = cfg, model, optimizer, loss_fn
        self.device, self.step = device, step

    def train(self, collate: Collate, data: TrainData, epoch: int, progress: bool):
        t, device, optimizer = self.cfg.train, self.device, self.optimizer
        self.model.train()
        workers = resolve_workers(t.num_workers, device)
        seed = self.cfg.seed + epoch
        loader = _loader(
            data.train, collate, t.batch_size, shuffle=True, seed=seed, workers=workers
        )
        losses, steps = [], 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch", disable=not progress)
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            losses.append(self._backward(batch, i, len(loader)))
            if (i + 1) % t.grad_accum == 0 or i + 1 == len(loader):
                self._optimizer_step()
                steps += 1
                self.step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", refresh=False)
                if t.max_steps is not None and self.step >= t.max_steps:
                    break
        bar.close()
        return losses, steps

    def _backward(self, batch: dict[str, Any], i: int, n_batches: int) -> float:
        t, device = self.cfg.train, self.device
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        with autocast(device, t.precision):
            logits = self.model(inputs)
        loss = self.loss_fn(logits.float(), batch["y"].to(device))
        # Mean over the micro-batches of this optimiser step (the last group of an epoch may
        # be shorter than grad_accum).
        group = min(t.grad_accum, n_batches - (i // t.grad_accum) * t.grad_accum)
        (loss / group).backward()
        return loss.item()

    def _optimizer_step(self) -> None:
        t, optimizer = self.cfg.train, self.optimizer
        if t.max_grad_norm > 0:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _checkpoint(ckpt: Path, epoch: int, model, optimizer, history, data: TrainData) -> None:
    """The trainable weights, optimiser and RNG after ``epoch``, written atomically."""
    state = {
        "epoch": epoch,
        "weights": _trainable(model),
        "history": history,
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "data": data.fingerprint,
    }
    torch.save(state, ckpt.with_suffix(".tmp"))
    os.replace(ckpt.with_suffix(".tmp"), ckpt)


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
