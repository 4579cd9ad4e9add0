"""The pixel steps vara knows: what each name does to one RGB uint8 (H, W, 3) frame.

    resize        longer side at most max_side (the sampler's; always the first step)
    mask          a black (or grey) area covering frac of the frame: shape rect | ellipse |
                  patches (random cells of a 16 x 16 grid), place center | random (random:
                  fixed by the video's content, the frame index and seed), exact to 1%
    mask-regions  black out the boxes a region file lists for the frame's video and time
                  (feature masking: hide what may bias the model)
    isolate       black out everything except those boxes (isolation masking: keep only
                  the class-defining region; a frame with no box is all black)
    blur          Gaussian blur of sigma pixels (of the resized frame)
    noise         Gaussian noise of sigma grey levels, fixed by video, frame and seed
    drop-frames   each frame blacked out with probability frac (frames lost), fixed by
                  video, frame and seed; the window keeps its frame count

``tools.pixels`` holds them in its registry and applies them; ``tools.perturb`` and
``tools.regions`` hold the image operations. docs/robustness.md explains the choices.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vara.errors import ConfigError
from vara.tools import perturb
from vara.tools.regions import load_regions, region_mask

__all__ = ["BUILTIN", "StepKind", "Where", "out_size", "resize"]


@dataclass(frozen=True)
class Where:
    """Which frame a step is working on: its video, index and time (s). Perturbations seed
    their randomness from the video's content (not its path) and the index; region files
    are matched by the video's file name and the time."""

    video: str
    frame_idx: int
    time_s: float = 0.0

    def rng(self, seed: int) -> np.random.Generator:
        """A generator fixed by (video content, frame index, seed)."""
        key = f"{_content_id(self.video)}:{self.frame_idx}:{seed}".encode()
        return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def _content_id(video: str) -> str:
    try:
        st = os.stat(video)
    except OSError:
        return video  # not a file (a test's frame): its name is all there is
    return _content_hash(video, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _content_hash(video: str, size: int, mtime_ns: int) -> str:
    """Size + first MiB: enough to tell videos apart, read once per file version."""
    with open(video, "rb") as fh:
        head = fh.read(1 << 20)
    return f"{size}-{hashlib.sha256(head).hexdigest()[:16]}"


@dataclass(frozen=True)
class StepKind:
    """What a step name does: ``apply(frame, where, **params)`` with ``defaults`` filled in.

    ``positional`` names the parameter a bare value sets (``isolate:boxes.csv``);
    ``prepare(params)`` checks the parameters when the strategy loads (raising ConfigError /
    InputError) and may add derived ones (a region file's content hash), so the canonical
    spec changes when what a step reads changes.
    """

    name: str
    apply: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    help: str = ""
    positional: str | None = None
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None


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


# --- the built-in steps: adapters from (frame, where, **params) to tools.perturb ---------


def _mask(frame, where: Where, *, frac, shape, place, fill, seed) -> np.ndarray:
    h, w = frame.shape[:2]
    if place == "random" or shape == "patches":
        covered = perturb.area_mask(h, w, frac, shape, where.rng(seed))
    else:  # the same for every frame of a size: computed once (an ellipse's takes ~9 ms)
        covered = _centred_mask(h, w, frac, shape)
    # one pass writing a new frame (boolean-index assignment is ~4x slower)
    return np.where(covered[..., None], np.uint8(perturb.fill_value(fill)), frame)


@functools.lru_cache(maxsize=64)
def _centred_mask(height: int, width: int, frac: float, shape: str) -> np.ndarray:
    mask = perturb.area_mask(height, width, frac, shape, None)
    mask.flags.writeable = False  # shared by every caller
    return mask


def _check_mask(params: dict[str, Any]) -> dict[str, Any]:
    problem = perturb.check_mask(params["frac"], params["shape"], params["fill"])
    if problem is None and params["place"] not in ("center", "random"):
        problem = f"place must be center or random, got {params['place']!r}"
    if problem is None and not isinstance(params["seed"], int):
        problem = f"seed must be a whole number, got {params['seed']!r}"
    if problem:
        raise ConfigError(problem)
    return params


def _regions(frame, where: Where, *, file, sha256, keep: bool) -> np.ndarray:
    boxes = load_regions(file).boxes_at(where.video, where.time_s)
    inside = region_mask(frame.shape[0], frame.shape[1], boxes)
    out = frame.copy()
    out[inside if not keep else ~inside] = 0
    return out


def _check_regions(params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("file"):
        raise ConfigError("name a region file, e.g. mask-regions:boxes.csv")
    regions = load_regions(params["file"])  # every row checked now, not mid-run
    return {"file": regions.path, "sha256": regions.sha256}


def _region_kind(name: str, keep: bool, help: str) -> StepKind:
    return StepKind(
        name,
        functools.partial(_regions, keep=keep),
        {"file": "", "sha256": ""},
        help,
        positional="file",
        prepare=_check_regions,
    )


def _positive(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def check(params: dict[str, Any]) -> dict[str, Any]:
        for name in names:
            value = params[name]
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        return params

    return check


def _check_drop(params: dict[str, Any]) -> dict[str, Any]:
    if not (isinstance(params["frac"], (int, float)) and 0 < params["frac"] < 1):
        raise ConfigError(f"frac must be in (0, 1), got {params['frac']!r}")
    return params


def _drop(frame, where: Where, *, frac, seed) -> np.ndarray:
    return np.zeros_like(frame) if where.rng(seed).random() < frac else frame


BUILTIN = (
    StepKind(
        "resize",
        lambda frame, where, *, max_side: resize(frame, max_side),
        {"max_side": None},
        "longer side at most max_side pixels (None: keep)",
    ),
    StepKind(
        "mask",
        _mask,
        {"frac": 0.3, "shape": "rect", "place": "center", "fill": "black", "seed": 0},
        "black out frac of the frame: shape rect|ellipse|patches, place center|random",
        prepare=_check_mask,
    ),
    _region_kind("mask-regions", False, "black out the boxes a region file lists (features)"),
    _region_kind("isolate", True, "keep only the boxes a region file lists (isolation)"),
    StepKind(
        "blur",
        lambda frame, where, *, sigma: perturb.blur(frame, sigma),
        {"sigma": 2.0},
        "Gaussian blur of sigma pixels",
        positional="sigma",
        prepare=_positive("sigma"),
    ),
    StepKind(
        "noise",
        lambda frame, where, *, sigma, seed: perturb.add_noise(frame, sigma, where.rng(seed)),
        {"sigma": 10.0, "seed": 0},
        "Gaussian noise of sigma grey levels",
        positional="sigma",
        prepare=_positive("sigma"),
    ),
    StepKind(
        "drop-frames",
        _drop,
        {"frac": 0.2, "seed": 0},
        "black out each frame with probability frac",
        positional="frac",
        prepare=_check_drop,
    ),
)
