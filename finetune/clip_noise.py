"""Recipe: learned class-specific noise against a frozen CLIP (the CLIP-under-masking study).

    vara finetune clip_noise data.manifest=labels.csv model.checkpoint=openai/clip-vit-base-patch32

A reconstruction from the study's abstract (docs/robustness.md says what was chosen where the
abstract is silent). CLIP stays frozen; one additive pixel-space perturbation per class is
learned (``tools/clip_noise.py``: ``noise.mode`` full with an L-infinity bound ``noise.eps``,
or a ``border`` prompt of ``noise.border`` pixels). The loss is the contrastive
cross-entropy over classes: the window's true class's noised similarity against every other
class's noised similarity (``common.loss_for``: cross-entropy for single-label sets, BCE
with pos_weight for multi-label ones). ``robust.masks`` (pixel steps such as
``mask:frac=0.3``) occlude training windows with probability ``robust.p`` so the noise learns
to hold up under occlusion; validation windows are never masked.

Same manifests, windows, video split, frame cache, training loop, checkpoints and run
directory as the other recipes (``common``, ``loop``, ``rundir``), so the run loads as scorer
kind ``clip-noise`` (``--strategy clip-noise --set scorer.run_dir=OUT``) and compares with
zero-shot ``clip`` in one ``vara eval``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from vara.finetune import common, loop, rundir
from vara.finetune.config import Config, load_config
from vara.prompts.loader import load_prompt
from vara.tools.classifier import ClassifierInfo
from vara.tools.clip_noise import MODES, WEIGHTS, NoisedClip, PixelEncoder, noise_region
from vara.tools.clip_zero_shot import class_embeddings, ensemble_texts, load_clip_model
from vara.tools.pixel_steps import Where
from vara.tools.pixels import pixel_spec, process
from vara.types import LabelSet

__all__ = ["ClipNoiseConfig", "ModelSpec", "NoiseSpec", "RobustSpec", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    checkpoint: str = "openai/clip-vit-base-patch32"  # CLIP / SigLIP: hub id or local path
    prompt: str = "clip.v1"  # the template ensemble behind the class text embeddings


@dataclass(frozen=True)
class NoiseSpec:
    mode: str = "full"  # full (whole frame, |delta| <= eps) | border (a frame of P pixels)
    eps: float = 0.0627  # bound in [0, 1] pixel units (16/255); border prompts: try 1.0
    border: int = 16  # border mode: width in pixels of the model's input (224 for ViT-B)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"noise.mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.eps <= 1:
            raise ValueError(f"noise.eps must be in (0, 1] (pixel units), got {self.eps!r}")


@dataclass(frozen=True)
class RobustSpec:
    masks: tuple[str, ...] = ()  # pixel steps occluding training windows, e.g. mask:frac=0.3
    p: float = 0.5  # share of training windows that get one of them (picked at random)

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"robust.p must be in [0, 1], got {self.p!r}")
        pixel_spec(None, self.masks)  # an unknown step or parameter fails here, named


@dataclass(frozen=True)
class ClipNoiseConfig(Config):
    model: ModelSpec = field(default_factory=ModelSpec)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    robust: RobustSpec = field(default_factory=RobustSpec)

    SECTIONS: ClassVar[dict[str, type]] = {
        **Config.SECTIONS,
        "model": ModelSpec,
        "noise": NoiseSpec,
        "robust": RobustSpec,
    }


class MaskedEncode:
    """Training windows through one of ``robust.masks`` (with probability ``p``), then the
    encoder. Mask placement is seeded per window, so a run repeats exactly."""

    def __init__(self, encode: PixelEncoder, spec: RobustSpec, seed: int):
        self.encode = encode
        self.specs = [pixel_spec(None, (m,)) for m in spec.masks]
        self.p = spec.p
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def __call__(self, windows: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        out = []
        for frames in windows:
            if self.specs and self.rng.random() < self.p:
                spec = self.specs[int(self.rng.integers(len(self.specs)))]
                self.n += 1
                where = [Where(f"train-window-{self.n}", i) for i in range(len(frames))]
                frames = np.stack([process(spec, f, w) for f, w in zip(frames, where, strict=True)])
            out.append(frames)
        return self.encode(out)


def build_model(
    cfg: ClipNoiseConfig, labelset: LabelSet, device: str
) -> tuple[NoisedClip, PixelEncoder]:
    """The frozen CLIP with zero noise per class (= zero-shot CLIP) and its pixel encoder."""
    net, processor = load_clip_model(cfg.model.checkpoint)
    texts = ensemble_texts(load_prompt(cfg.model.prompt), labelset)
    text = class_embeddings(net, processor, texts)
    side = int(net.config.vision_config.image_size)
    region = noise_region(cfg.noise.mode, side, cfg.noise.border)
    encoder = PixelEncoder(processor)
    model = NoisedClip(net, text, region, cfg.noise.eps, encoder.mean, encoder.std)
    return model.to(device), encoder


def run(cfg: ClipNoiseConfig, *, progress: bool = True) -> Path:
    """Train per ``cfg`` and write the run directory; returns its path."""
    # ---- setup --------------------------------------------------------------------------
    t0 = time.perf_counter()
    device, labelset, model, encoder, out, data = common.setup(cfg, build_model, progress=progress)
    optimizer = torch.optim.Adam([model.w], lr=cfg.train.lr)
    loss_fn = common.loss_for(cfg.train, labelset, data.train_y, device)
    collate = common.Collate(encoder)
    train_collate = common.Collate(MaskedEncode(encoder, cfg.robust, cfg.seed))
    log.info("trainable parameters: %d (the noise; CLIP is frozen)", model.w.numel())

    # ---- train --------------------------------------------------------------------------
    history = loop.train_loop(
        cfg,
        model,
        optimizer,
        loss_fn,
        collate,
        data,
        out,
        device=device,
        progress=progress,
        train_collate=train_collate,
    )

    # ---- save ---------------------------------------------------------------------------
    val_logits, thresholds, precision = rundir.final_scores(
        cfg, model, collate, data, labelset, device
    )
    rundir.save_safetensors(model.noise_state(), out / WEIGHTS)
    prompt = load_prompt(cfg.model.prompt)
    info = ClassifierInfo(
        kind="clip-noise",
        backbone=cfg.model.checkpoint,
        labels=labelset.names,
        multi_label=labelset.multi_label,
        n_frames=cfg.data.n_frames,
        labelset=labelset.name,
        max_side=cfg.data.max_side,
        instruction=f"{prompt.id}.v{prompt.version}",
        precision=precision,
    )
    noise = model.noise().detach()
    extra = {
        "trainable_parameters": model.w.numel(),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "noise": {**cfg.to_dict()["noise"], "max_abs": float(noise.abs().max())},
        "robust": cfg.to_dict()["robust"],
        "prompt_sha256": prompt.sha256,
    }
    rundir.write_run(
        out,
        cfg,
        info,
        data,
        thresholds,
        val_logits,
        history,
        wall_s=time.perf_counter() - t0,
        device=device,
        extra=extra,
    )
    return out


def main(config: str, overrides: list[str], *, progress: bool = True) -> Path:
    return run(load_config(ClipNoiseConfig, config, overrides), progress=progress)
