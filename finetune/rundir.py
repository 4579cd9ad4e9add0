"""The end of a training run: validation scores and tuned thresholds, and the files of the
run-directory contract (docs/finetune.md) that ``tools.classifier`` loads."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vara.finetune.common import CHECKPOINT, Collate, TrainData
from vara.finetune.config import Config
from vara.finetune.loop import predict_logits, probabilities, resolve_precision
from vara.metrics import compute_metrics, tune_thresholds
from vara.provenance import meta_info
from vara.records import write_json_atomic
from vara.tools.classifier import ClassifierInfo
from vara.tools.scorer import decide
from vara.types import Clip, LabelSet


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
    scores = {
        "thresholds": thresholds,
        # macro-F1 on the validation windows at the tuned thresholds: in-sample (they were
        # tuned there), so optimistic; evaluate on held-out videos for an unbiased figure.
        "val_macro_f1_tuned_in_sample": _tuned_f1(data, thresholds, val_logits),
    }
    card = run_card(
        cfg, data, history, wall_s=wall_s, device=device, extra={**scores, **(extra or {})}
    )
    finish(out, cfg, card)


def run_card(
    cfg: Config,
    data: TrainData,
    history: list[dict[str, Any]],
    *,
    wall_s: float,
    device: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """run_card.json of any recipe: the data, every epoch, the times, ``extra``, the
    hardware and package versions."""
    return {
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
        "wall_s": round(wall_s, 3),  # this session's, from set-up to the run card
        # every epoch's training + validation, over all sessions of a resumed run
        "epochs_wall_s": round(sum(h.get("wall_s", 0.0) for h in history), 3),
        **(extra or {}),
        "hardware": hardware(device),
        "meta_info": meta_info(),
    }


def finish(out: Path, cfg: Config, card: dict[str, Any]) -> None:
    """Write the run card (last: its presence means the run finished), then drop the
    checkpoint and the run's own frame cache (a named ``data.frames_dir`` stays)."""
    write_json_atomic(out / "run_card.json", card)
    (out / CHECKPOINT).unlink(missing_ok=True)  # after the card: a crash between keeps it
    if not cfg.data.frames_dir:  # the run's own frame cache served resuming; a named one stays
        shutil.rmtree(out / "frames", ignore_errors=True)
