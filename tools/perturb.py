"""Frame perturbations for robustness studies: pure image operations on RGB uint8 (H, W, 3).

``tools.pixels`` wraps them as pixel steps (names, parameters, seeds); nothing here knows
about videos. The masks follow the CLIP-under-masking study (docs/robustness.md): a black
area covering ``frac`` of the frame, as one centred or randomly placed rectangle or ellipse
(the frame's aspect ratio), or as random cells of a 16 x 16 grid. The covered area is exact
to within 1% of the frame: the shape's size is searched for the pixel count nearest
``frac * H * W``, not computed from a formula and rounded.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["FILLS", "GRID", "SHAPES", "add_noise", "area_mask", "blur", "fill_value"]

SHAPES = ("rect", "ellipse", "patches")
FILLS = ("black", "grey")
GRID = 16  # cells per side for shape=patches: each cell ~0.4% of the frame
_ELLIPSE_MAX = math.pi / 4  # the largest ellipse of the frame's aspect that fits in it


def fill_value(fill: str) -> int:
    return {"black": 0, "grey": 128}[fill]


def area_mask(
    height: int, width: int, frac: float, shape: str, rng: np.random.Generator | None
) -> np.ndarray:
    """Boolean (H, W) mask covering ``frac`` of the frame; ``rng`` None = centred."""
    if shape == "rect":
        return _rect(height, width, frac, rng)
    if shape == "ellipse":
        return _ellipse(height, width, frac, rng)
    return _patches(height, width, frac, rng or np.random.default_rng(0))


def _rect(height: int, width: int, frac: float, rng) -> np.ndarray:
    target = frac * height * width
    # Near the frame's aspect (width within 10% of sqrt(frac) * W), the (w, h) pair whose
    # area is nearest the target.
    w0 = width * math.sqrt(frac)
    widths = range(max(1, math.floor(0.9 * w0)), min(width, math.ceil(1.1 * w0)) + 1)
    w, h = min(
        ((w, min(height, max(1, round(target / w)))) for w in widths),
        key=lambda wh: abs(wh[0] * wh[1] - target),
    )
    y0, x0 = _origin(height - h, width - w, rng)
    mask = np.zeros((height, width), bool)
    mask[y0 : y0 + h, x0 : x0 + w] = True
    return mask


def _origin(free_y: int, free_x: int, rng) -> tuple[int, int]:
    if rng is None:
        return free_y // 2, free_x // 2
    return int(rng.integers(0, free_y + 1)), int(rng.integers(0, free_x + 1))


def _ellipse(height: int, width: int, frac: float, rng) -> np.ndarray:
    target = frac * height * width
    ys, xs = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2

    def inside(scale: float, dy: int = 0, dx: int = 0) -> np.ndarray:
        a, b = max(scale * width / 2, 1e-9), max(scale * height / 2, 1e-9)
        return ((xs - cx - dx) / a) ** 2 + ((ys - cy - dy) / b) ** 2 <= 1.0

    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisect the scale whose (centred) pixel count meets the target
        mid = (lo + hi) / 2
        if inside(mid).sum() < target:
            lo = mid
        else:
            hi = mid
    scale = min((lo, hi), key=lambda s: abs(inside(s).sum() - target))
    if rng is None:
        return inside(scale)
    # An integer shift keeping it inside the frame: the same pixels, moved.
    max_dy = max(0, math.floor(cy - scale * height / 2))
    max_dx = max(0, math.floor(cx - scale * width / 2))
    dy = int(rng.integers(-max_dy, max_dy + 1))
    dx = int(rng.integers(-max_dx, max_dx + 1))
    return inside(scale, dy, dx)


def _patches(height: int, width: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    ys = np.linspace(0, height, GRID + 1).round().astype(int)
    xs = np.linspace(0, width, GRID + 1).round().astype(int)
    cells = [(i, j) for i in range(GRID) for j in range(GRID)]
    order = rng.permutation(len(cells))
    target, covered, mask = frac * height * width, 0, np.zeros((height, width), bool)
    for k in order:
        i, j = cells[k]
        area = (ys[i + 1] - ys[i]) * (xs[j + 1] - xs[j])
        if abs(covered + area - target) > abs(covered - target):
            break  # one more cell would overshoot more than stopping short
        mask[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = True
        covered += area
    return mask


def check_mask(frac: float, shape: str, fill: str) -> str | None:
    """What is wrong with mask parameters, for the error message; None if nothing."""
    if shape not in SHAPES:
        return f"shape must be one of {SHAPES}, got {shape!r}"
    if fill not in FILLS:
        return f"fill must be one of {FILLS}, got {fill!r}"
    if not (isinstance(frac, (int, float)) and 0 < frac < 1):
        return f"frac must be a fraction of the frame in (0, 1), got {frac!r}"
    if shape == "ellipse" and frac > _ELLIPSE_MAX:
        return f"an ellipse covers at most {_ELLIPSE_MAX:.3f} of the frame; use rect"
    return None


def blur(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur, ``sigma`` in pixels of the frame as the models get it (after resize)."""
    return cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, sigmaY=sigma)


def add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian pixel noise of ``sigma`` grey levels (0-255), clipped."""
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
    return np.clip(noisy.round(), 0, 255).astype(np.uint8)
