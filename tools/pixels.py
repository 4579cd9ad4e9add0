"""The pixel pipeline: what happens to a decoded frame before any model sees it.

A ``PixelSpec`` (vara.types) is an ordered tuple of named, parameterised steps; the first is
always ``resize`` (the sampler's ``max_side``), perturbations follow. ``process`` applies a
spec to one decoded RGB frame, and ``tools.video``'s reader is its only caller: every
strategy, every model (VLM, scorer) and every cache sees the frames as the spec made them,
and a frame shared by overlapping windows is processed once.

A step kind is one ``StepKind`` in ``STEPS``: its parameters with their defaults and a
function ``(frame, where, **params) -> frame`` on RGB uint8 (H, W, 3), where ``where``
names the video and frame index (for perturbations placed at random but reproducibly).
Strategies list perturbations as strings, ``name:key=value,key=value`` (values read as
YAML), in ``pixels.perturb``; ``pixel_spec`` checks them against ``STEPS`` up front.

    spec = pixel_spec(448, ["my-step:strength=2"])
    spec.canonical   # 'resize(max_side=448)|my-step(strength=2)'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import yaml

from vara.errors import ConfigError, did_you_mean
from vara.types import PixelSpec, PixelStep

__all__ = [
    "STEPS",
    "StepKind",
    "Where",
    "out_size",
    "parse_step",
    "pixel_spec",
    "process",
    "register_step",
    "resize",
]


@dataclass(frozen=True)
class Where:
    """Which frame a step is working on: perturbations seed their randomness from it."""

    video: str
    frame_idx: int


@dataclass(frozen=True)
class StepKind:
    """What a step name does: ``apply(frame, where, **params)`` with ``defaults`` filled in."""

    name: str
    apply: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    help: str = ""


def resize(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Anti-aliased resize so the longer side is <= max_side (never enlarges).

    OpenCV's INTER_AREA is fast only for integer factors (720p -> 448: 1.2 ms at a factor of
    2.86, 0.1 ms for an exact 2x). So an exact integer box reduction goes first when the size
    divides evenly; the residual factor is then below 2, where bilinear interpolation does not
    alias: 0.2 ms in all, 0.28 grey levels (mean) from one-step INTER_AREA (measured on the
    720p benchmark video). Without a pre-reduction, INTER_AREA does the whole resize.
    """
    h, w = frame.shape[:2]
    out_w, out_h = out_size(w, h, max_side)
    if (out_w, out_h) == (w, h):
        return frame
    k = min(w // out_w, h // out_h)
    if k >= 2 and w % k == 0 and h % k == 0:
        frame = cv2.resize(frame, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if frame.shape[1::-1] == (out_w, out_h):
            return frame
        return cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)


def out_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after ``resize(max_side)``."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


STEPS: dict[str, StepKind] = {
    "resize": StepKind(
        "resize",
        lambda frame, where, *, max_side: resize(frame, max_side),
        {"max_side": None},
        "longer side at most max_side pixels (None: keep)",
    ),
}


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
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or key not in kind.defaults:
            raise ConfigError(
                f"pixel step {text!r}: {item!r} is not key=value with a parameter of {name}"
                f"{did_you_mean(key, kind.defaults)}; its parameters: {sorted(kind.defaults)}"
            )
        params[key] = yaml.safe_load(raw)
    return PixelStep(name, tuple(params.items()))


def pixel_spec(max_side: int | None, perturb: Sequence[str] = ()) -> PixelSpec:
    """The sampler's resize, then each perturbation in order."""
    if any(parse_step(p).name == "resize" for p in perturb):
        raise ConfigError("resize is set by sampler.max_side (--max-side), not pixels.perturb")
    return PixelSpec((PixelSpec.resize_only(max_side).steps[0], *map(parse_step, perturb)))


def process(spec: PixelSpec, frame: np.ndarray, where: Where) -> np.ndarray:
    """Apply every step of ``spec`` to one decoded RGB frame, in order."""
    for step in spec.steps:
        frame = STEPS[step.name].apply(frame, where, **dict(step.params))
    return frame
