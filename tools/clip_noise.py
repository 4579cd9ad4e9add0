"""Learned class-specific noise on a frozen CLIP: the model behind ``vara finetune clip_noise``
and the ``clip-noise`` scorer (a run directory, loaded by ``tools.classifier``).

One additive pixel-space perturbation per class, ``delta_c = eps * tanh(w_c) * region``:
``region`` is all ones (``full``: an L-infinity bound ``eps`` over the whole frame) or ones
on a border of P pixels (``border``: a visual prompt framing the image). The score of class
c for a window is the similarity of its frames *with class c's noise added* to class c's
text embedding::

    x_c    = clamp(frame + delta_c, 0, 1)          # in pixel space, before normalisation
    v_c    = normalise(mean_t normalise(E_img(x_c)))   # the window: mean of its frames
    logit_c = logit_scale * <v_c, text_c> (+ logit_bias for SigLIP)

so every frame is encoded once per class (K forward passes of the vision tower per frame:
the method's cost; 101 classes on UCF-101 make scoring ~100x zero-shot CLIP's). CLIP stays
frozen; only ``w`` trains. ``tanh`` keeps the bound without a projection step, and ``w = 0``
(the start) is zero noise, i.e. zero-shot CLIP exactly.

Frames enter as the CLIP image processor resizes and crops them, *without* its
normalisation (``PixelEncoder``): the noise lives in [0, 1] pixel space, where a bound of
8/255 means what it says; the model normalises after adding it.

Run-directory files (besides the common contract, docs/finetune.md): ``noise.safetensors``
holds ``w``, ``region``, ``eps`` and the class text embeddings ``text`` (the prompt's
ensemble at training time, so a later edit of the prompt file does not change a trained run).
``classifier.json``: kind ``clip-noise``, backbone = the CLIP checkpoint, instruction = the
prompt id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vara.tools.clip_zero_shot import features, is_sigmoid, load_clip_model

__all__ = ["MODES", "NoisedClip", "PixelEncoder", "load_clip_noise", "noise_region"]

MODES = ("full", "border")
WEIGHTS = "noise.safetensors"


def noise_region(mode: str, side: int, border: int) -> torch.Tensor:
    """(3, side, side) ones where the noise may act: everywhere (full) or on a frame of
    ``border`` pixels (border)."""
    if mode not in MODES:
        raise ValueError(f"noise mode must be one of {MODES}, got {mode!r}")
    if mode == "full":
        return torch.ones(3, side, side)
    if not 0 < border < side / 2:
        raise ValueError(f"border must be in (0, {side / 2}) pixels of the {side}px input")
    region = torch.ones(3, side, side)
    region[:, border:-border, border:-border] = 0
    return region


class PixelEncoder:
    """(T, H, W, 3) uint8 windows -> {"pixel_values": (B, T, 3, S, S) float in [0, 1]}: the
    CLIP processor's resize and crop, not its normalisation (the noise is added first)."""

    def __init__(self, processor: Any):
        self.processor = processor
        images = processor.image_processor
        self.mean = tuple(float(v) for v in images.image_mean)
        self.std = tuple(float(v) for v in images.image_std)

    def __call__(self, windows: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        frames = [f for w in windows for f in w]
        pixels = self.processor.image_processor(
            images=frames, do_normalize=False, return_tensors="pt"
        )["pixel_values"]
        return {"pixel_values": pixels.reshape(len(windows), -1, *pixels.shape[1:])}


class NoisedClip(nn.Module):
    """A frozen CLIP-family model plus one learnable noise per class: ``model(inputs)`` ->
    (B, K) logits (see the module docstring). The CLIP is held as ``net`` (never ``config``:
    peft and transformers treat a module with a ``config`` attribute as their own)."""

    def __init__(
        self,
        net: nn.Module,
        text: torch.Tensor,
        region: torch.Tensor,
        eps: float,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.net = net.requires_grad_(False)
        self.w = nn.Parameter(torch.zeros(text.shape[0], *region.shape))
        self.register_buffer("text", text.detach().clone())
        self.register_buffer("region", region.clone())
        self.register_buffer("eps", torch.tensor(float(eps)))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.sigmoid = is_sigmoid(net)

    def noise(self) -> torch.Tensor:
        """(K, 3, S, S) additive noise, within +-eps on its region."""
        return self.eps * torch.tanh(self.w) * self.region

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = inputs["pixel_values"]  # (B, T, 3, S, S) in [0, 1]
        b, t = x.shape[:2]
        k = self.text.shape[0]
        noised = (x[:, :, None] + self.noise()[None, None]).clamp(0, 1)  # (B, T, K, 3, S, S)
        flat = (noised.flatten(0, 2) - self.mean) / self.std
        emb = features(self.net.get_image_features(pixel_values=flat)).view(b, t, k, -1)
        window = emb.mean(dim=1)
        window = window / window.norm(dim=-1, keepdim=True)  # (B, K, D)
        logits = self.net.logit_scale.exp() * (window * self.text[None]).sum(-1)
        if self.sigmoid:
            logits = logits + self.net.logit_bias
        return logits

    def noise_state(self) -> dict[str, torch.Tensor]:
        """What ``noise.safetensors`` holds."""
        return {
            k: v.detach().cpu().contiguous()
            for k, v in (("w", self.w), ("region", self.region), ("eps", self.eps))
        } | {"text": self.text.detach().cpu().contiguous()}


def load_clip_noise(run: Path, info) -> tuple[NoisedClip, PixelEncoder]:
    """A finished ``clip_noise`` run: its CLIP (``info.backbone``) and noise."""
    from safetensors.torch import load_file

    net, processor = load_clip_model(info.backbone)
    state = load_file(str(run / WEIGHTS))
    encoder = PixelEncoder(processor)
    model = NoisedClip(
        net, state["text"], state["region"], float(state["eps"]), encoder.mean, encoder.std
    )
    with torch.no_grad():
        model.w.copy_(state["w"])
    return model, encoder
