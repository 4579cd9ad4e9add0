"""The pixel pipeline: what happens to a decoded frame before any model sees it.

A ``PixelSpec`` (vara.types) is an ordered tuple of named, parameterised steps; the first is
always ``resize`` (the sampler's ``max_side``), perturbations follow. ``process`` applies a
spec to one decoded RGB frame, and ``tools.video``'s reader is its only caller: every
strategy, every model (VLM, scorer) and every cache sees the frames as the spec made them,
and a frame shared by overlapping windows is processed once. ``perturb`` is the same
pipeline split after the resize: the variants of a robustness sweep share one decode of a
window (``agents/frames.py``) and each puts those resized frames through its own steps.

A step kind is one ``StepKind`` in ``STEPS`` (the built-in ones, masks, region masking,
blur, noise, frame drops, are in ``tools/pixel_steps.py``): its parameters with their
defaults and a function ``(frame, where, **params) -> frame`` on RGB uint8 (H, W, 3), where
``where`` names the video, frame index and time (for perturbations placed at random but
reproducibly, and for region files). Strategies list perturbations as strings,
``name:key=value,key=value`` (values read as YAML; ``name:VALUE`` sets a step's main
parameter), in ``pixels.perturb`` or with ``--perturb``; ``pixel_spec`` checks them up front.

    spec = pixel_spec(448, ["my-step:strength=2"])
    spec.canonical   # 'resize(max_side=448)|my-step(strength=2)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import yaml

from vara.errors import ConfigError, InputError, did_you_mean
from vara.tools.pixel_steps import BUILTIN, StepKind, Where, out_size, resize
from vara.types import FrameBatch, PixelSpec, PixelStep

__all__ = [
    "STEPS",
    "StepKind",
    "Where",
    "out_size",
    "parse_step",
    "perturb",
    "pixel_spec",
    "process",
    "register_step",
    "resize",
]


STEPS: dict[str, StepKind] = {kind.name: kind for kind in BUILTIN}


def register_step(kind: StepKind) -> StepKind:
    """Add a step kind; its name must be new."""
    if kind.name in STEPS:
        raise ValueError(f"pixel step {kind.name!r} is already registered")
    STEPS[kind.name] = kind
    return kind


def parse_step(text: str) -> PixelStep:
    """``name:key=value,key=value`` (values as YAML) -> a PixelStep with every parameter set."""
    name, _, args = text.strip().partition(":")
    kind = STEPS.get(name)
    if kind is None:
        raise ConfigError(
            f"pixel step {text!r}: unknown step {name!r}{did_you_mean(name, STEPS)}; "
            f"known: {sorted(STEPS)}"
        )
    params = dict(kind.defaults)
    for i, item in enumerate(filter(None, (a.strip() for a in args.split(",")))):
        key, sep, raw = item.partition("=")
        if not sep and i == 0 and kind.positional:
            key, sep, raw = kind.positional, "=", item
        if not sep or key not in kind.defaults:
            raise ConfigError(
                f"pixel step {text!r}: {item!r} is not key=value with a parameter of {name}"
                f"{did_you_mean(key, kind.defaults)}; its parameters: {sorted(kind.defaults)}"
            )
        # A text parameter (a file path) is taken as written; the others are read as YAML.
        params[key] = raw if isinstance(kind.defaults[key], str) else yaml.safe_load(raw)
    if kind.prepare is not None:
        try:
            params = kind.prepare(params)
        except (ConfigError, InputError) as exc:
            raise ConfigError(f"pixel step {text!r}: {exc}") from None
    return PixelStep(name, tuple(params.items()))


def pixel_spec(max_side: int | None, perturb: Sequence[str] = ()) -> PixelSpec:
    """The sampler's resize, then each perturbation in order."""
    steps = [parse_step(p) for p in perturb]
    if any(step.name == "resize" for step in steps):
        raise ConfigError("resize is set by sampler.max_side (--max-side), not pixels.perturb")
    return PixelSpec((PixelSpec.resize_only(max_side).steps[0], *steps))


def process(spec: PixelSpec, frame: np.ndarray, where: Where) -> np.ndarray:
    """Apply every step of ``spec`` to one decoded RGB frame, in order."""
    return _apply(spec.steps, frame, where)


def perturb(spec: PixelSpec, batch: FrameBatch, video: str) -> FrameBatch:
    """``batch``, decoded under ``spec``'s resize alone, through ``spec``'s other steps: the
    frames a decode under the whole of ``spec`` gives (the same steps on the same resized
    frame, with the same ``Where``), without decoding again. ``video`` is the path the batch
    was decoded from, as the reader names it to the steps.

    Each step gets a read-only view: the frames may be shared with other variants, so a
    step that writes into its input fails loudly instead of perturbing theirs."""
    base = PixelSpec(spec.steps[:1])
    if batch.pixels != base:
        raise ValueError(
            f"perturb needs frames decoded under {base.canonical!r} alone, "
            f"got {batch.pixels.canonical!r}"
        )
    if spec == base:
        return batch
    out = [
        _apply(spec.steps[1:], _read_only(frame), Where(video, idx, t))
        for frame, idx, t in zip(batch.frames, batch.frame_idx, batch.timestamps_s, strict=True)
    ]
    return dataclasses.replace(batch, frames=np.stack(out), pixels=spec)


def _apply(steps: Sequence[PixelStep], frame: np.ndarray, where: Where) -> np.ndarray:
    for step in steps:
        frame = STEPS[step.name].apply(frame, where, **dict(step.params))
    return frame


def _read_only(frame: np.ndarray) -> np.ndarray:
    view = frame.view()
    view.flags.writeable = False
    return view
