"""How confident a strategy's scores are, and whether that confidence is earned: the
``confidence`` block of ``results.json`` metrics (strategies that yield scores: clip,
classifier, caption-judge).

- single-label: ``mean_top1`` is the mean top-class probability; ``ece`` (expected
  calibration error, 10 equal-width bins) compares it with how often the top class is right:
  sum over bins of |accuracy - mean confidence| x share of clips in the bin;
- multi-label: each (clip, class) score is a probability that the class is present;
  ``mean_top1`` is the mean of each clip's highest score, and ``ece`` bins every score and
  compares it with how often the class is present.

Clips without scores (failed) are left out; ``n`` says how many were scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vara.types import LabelSet

__all__ = ["N_BINS", "confidence_metrics", "expected_calibration_error"]

N_BINS = 10


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE over ``N_BINS`` equal-width bins of ``confidence`` in [0, 1]."""
    bins = np.minimum((confidence * N_BINS).astype(int), N_BINS - 1)
    total = 0.0
    for b in range(N_BINS):
        inside = bins == b
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            total += gap * inside.mean()
    return float(total)


def confidence_metrics(
    labelset: LabelSet,
    truth: Sequence[tuple[str, ...]],
    scores: Sequence[tuple[float, ...] | None],
) -> dict[str, Any] | None:
    """``{"n", "mean_top1", "ece"}`` over the scored clips; None when none was scored."""
    names = list(labelset.names)
    rows = [(t, s) for t, s in zip(truth, scores, strict=True) if s is not None]
    if not rows:
        return None
    probs = np.array([s for _, s in rows], dtype=float)
    present = np.array([[n in t for n in names] for t, _ in rows], dtype=float)
    if labelset.multi_label:
        ece = expected_calibration_error(probs.ravel(), present.ravel())
    else:
        top = probs.argmax(axis=1)
        right = present[np.arange(len(rows)), top]
        ece = expected_calibration_error(probs.max(axis=1), right)
    return {
        "n": len(rows),
        "mean_top1": round(float(probs.max(axis=1).mean()), 6),
        "ece": round(ece, 6),
    }
