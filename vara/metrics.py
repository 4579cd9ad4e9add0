"""Metrics of one strategy over a labelled set: the ``metrics`` block of ``results.json``.

``compute_metrics`` returns exactly the dict that docs/results-format.md describes, with
plain ints, floats and lists (JSON-ready). Conventions, chosen so that a strategy cannot
look better by failing or by skipping hard clips:

- Every clip counts. A failed clip (``predicted[i] is None``) predicts no label in a
  multi-label set, and the pseudo-class ``"(failed)"`` in a single-label set (a column of
  the confusion matrix, never a class of its own in the per-class or macro averages).
  So in a multi-label set a failure on a no-activity clip counts as an exact match, as an
  empty answer would; ``coverage`` and ``hallucination_rate`` show the failures.
- ``zero_division=0`` everywhere: a class never predicted has precision 0, one without
  support recall 0 and F1 0 (a falsely predicted class pulls the macro averages down).
- Macro and weighted averages run over the classes that occur in the truth or in the
  predictions (scikit-learn's default for class labels). A class neither present nor
  predicted is listed in ``per_class`` with zeros but left out of the averages: with
  zero_division=0 it would count as F1 0, and a label set with distractor classes (e.g.
  kinetics-sample: 17 labels, 7 in the sample clips) would score near 0 whatever happened.
- ``macro_f1_ci95``: percentile bootstrap over clips (``n_boot`` resamples of n clips with
  replacement, ``numpy.random.default_rng(seed)``; macro over the classes seen in each
  resample, as above). Same formula as the point estimate, in numpy: scikit-learn took
  3.5 ms a call here, 3.5 s for 1000 resamples. None when n_boot=0. On tiny sets the
  interval can miss the point estimate (resamples lose rare classes).
- ``hallucination_rate``: share of the model's answers that needed a re-ask or stayed
  invalid after it, over the clips the model answered (``answered``). A clip that failed
  for another reason (the video, the server, a prompt over the context) got no answer, so
  it is neither: ``coverage`` shows it. None when the model answered no clip.
- ``thresholds`` (multi-label with ``scores``): per-class thresholds that maximise F1 on
  THESE clips (``tune_thresholds``), so ``f1_at_tuned`` is in-sample, optimistic; tune on
  a validation split and evaluate on another to report it honestly. It does not change the
  other metrics, which score the labels the strategy predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)

from vara.calibration import confidence_metrics
from vara.types import LabelSet

__all__ = ["FAILED", "compute_metrics", "tune_thresholds"]

FAILED = "(failed)"
HIGHER_IS_BETTER = {
    "coverage": True,
    "macro_precision": True,
    "macro_recall": True,
    "macro_f1": True,
    "micro_f1": True,
    "weighted_f1": True,
    "exact_match": True,
    "hallucination_rate": False,
}


def compute_metrics(
    labelset: LabelSet,
    truth: Sequence[tuple[str, ...]],
    predicted: Sequence[tuple[str, ...] | None],
    *,
    reasked: Sequence[bool],
    answered: Sequence[bool] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    scores: Sequence[tuple[float, ...] | None] | None = None,
) -> dict[str, Any]:
    """The metrics dict of docs/results-format.md; one entry per clip in each sequence.

    ``reasked``: the model's answer needed a re-ask or stayed invalid (an answer failure);
    ``answered``: the model answered at all (None: the clips with a prediction or reasked)."""
    names = list(labelset.names)
    n = len(truth)
    if n == 0:
        raise ValueError("compute_metrics: no clips to score")
    seqs = (
        ("predicted", predicted),
        ("reasked", reasked),
        ("answered", answered),
        ("scores", scores),
    )
    for what, seq in seqs:
        if seq is not None and len(seq) != n:
            raise ValueError(f"compute_metrics: {len(seq)} {what} for {n} clips")
    if n_boot < 0:
        raise ValueError(f"compute_metrics: n_boot must be >= 0, got {n_boot}")
    y_true = _indicators(names, truth, "truth")
    y_pred = _indicators(names, [p or () for p in predicted], "predicted")
    seen = (y_true.sum(0) + y_pred.sum(0)) > 0
    averaged = [j for j in range(len(names)) if seen[j]] or list(range(len(names)))
    if labelset.multi_label:
        out = _multilabel(names, y_true, y_pred, averaged)
    else:
        _check_single(truth, predicted)
        out = _single(names, truth, predicted, [names[j] for j in averaged])
    failed = [p is None for p in predicted]
    if answered is None:
        answered = [not f or bool(r) for r, f in zip(reasked, failed, strict=True)]
    n_answered = sum(bool(a) for a in answered)
    bad = sum(bool(r) and bool(a) for r, a in zip(reasked, answered, strict=True))
    metrics: dict[str, Any] = {
        "labels": names,
        "multi_label": labelset.multi_label,
        "n": n,
        "coverage": 1.0 - sum(failed) / n,
        **out,
        "macro_f1_ci95": _bootstrap_ci(y_true, y_pred, n_boot, seed),
        "hallucination_rate": bad / n_answered if n_answered else None,
    }
    metrics["confusion"] = metrics.pop("confusion")  # keep the documented key order
    metrics["thresholds"] = (
        tune_thresholds(labelset, truth, scores)
        if scores is not None and labelset.multi_label
        else None
    )
    metrics["confidence"] = confidence_metrics(labelset, truth, scores) if scores else None
    metrics["higher_is_better"] = dict(HIGHER_IS_BETTER)
    return metrics


def _indicators(names: list[str], rows: Sequence[Sequence[str]], what: str) -> np.ndarray:
    """(n, k) 0/1 matrix in label-set order; raises on a label outside the set."""
    index = {name: j for j, name in enumerate(names)}
    y = np.zeros((len(rows), len(names)), dtype=np.int64)
    for i, labels in enumerate(rows):
        for label in labels:
            if label not in index:
                raise ValueError(f"{what}[{i}]: label {label!r} is not one of {names}")
            y[i, index[label]] = 1
    return y


def _check_single(
    truth: Sequence[tuple[str, ...]], predicted: Sequence[tuple[str, ...] | None]
) -> None:
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        if len(t) != 1:
            raise ValueError(f"truth[{i}] = {t!r}: a single-label set needs exactly one label")
        if p is not None and len(p) != 1:
            raise ValueError(
                f"predicted[{i}] = {p!r}: a single-label set needs one label (None = failed)"
            )


def _per_class(names: list[str], p, r, f, s) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "precision": float(p[j]),
            "recall": float(r[j]),
            "f1": float(f[j]),
            "support": int(s[j]),
        }
        for j, name in enumerate(names)
    }


def _averages(y_true, y_pred, labels) -> dict[str, float]:
    def avg(how: str) -> tuple[float, float, float]:
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=how, zero_division=0
        )
        return float(p), float(r), float(f)

    macro_p, macro_r, macro_f = avg("macro")
    return {
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": macro_f,
        "micro_f1": avg("micro")[2],
        "weighted_f1": avg("weighted")[2],
        "exact_match": float(accuracy_score(y_true, y_pred)),
    }


def _multilabel(
    names: list[str], y_true: np.ndarray, y_pred: np.ndarray, averaged: list[int]
) -> dict[str, Any]:
    cols = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=cols, average=None, zero_division=0
    )
    mcm = multilabel_confusion_matrix(y_true, y_pred, labels=cols)
    return {
        "per_class": _per_class(names, p, r, f, s),
        **_averages(y_true, y_pred, averaged),
        "confusion": {
            "type": "multilabel",
            "labels": names,
            "per_class": {name: mcm[j].tolist() for j, name in enumerate(names)},
        },
    }


def _single(
    names: list[str],
    truth: Sequence[tuple[str, ...]],
    predicted: Sequence[tuple[str, ...] | None],
    averaged: list[str],
) -> dict[str, Any]:
    y_true = [t[0] for t in truth]
    y_pred = [FAILED if p is None else p[0] for p in predicted]
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=names, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=[*names, FAILED])
    return {
        "per_class": _per_class(names, p, r, f, s),
        **_averages(y_true, y_pred, averaged),
        "confusion": {"type": "matrix", "labels": [*names, FAILED], "matrix": matrix.tolist()},
    }


def _macro_f1(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray) -> float:
    """Mean of 2tp / (n_true + n_pred) over the classes seen (denominator > 0); 0 if none."""
    denom = n_true + n_pred
    seen = denom > 0
    return float((2 * tp[seen] / denom[seen]).sum() / max(1, seen.sum()))


def _bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, n_boot: int, seed: int
) -> list[float] | None:
    """95 % percentile interval of macro-F1 over clips resampled with replacement.

    One-hot rows make this exact for single-label sets too: a failed clip's row is all
    zero, a miss for its true class and a prediction of no named class.
    """
    if n_boot == 0:
        return None
    rng = np.random.default_rng(seed)
    n = len(y_true)
    k = y_true.shape[1]
    counts = np.hstack([y_true * y_pred, y_true, y_pred])  # one gather per resample
    stats = np.empty(n_boot)
    for b in range(n_boot):
        tp, n_true, n_pred = np.split(counts[rng.integers(0, n, n)].sum(0), [k, 2 * k])
        stats[b] = _macro_f1(tp, n_true, n_pred)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def tune_thresholds(
    labelset: LabelSet,
    truth: Sequence[tuple[str, ...]],
    scores: Sequence[tuple[float, ...] | None],
) -> dict[str, Any]:
    """Per-class thresholds (predict a class when score >= threshold) maximising its F1.

    In-sample: the thresholds fit ``truth`` itself, so ``f1_at_tuned`` (macro-F1 with them)
    is optimistic unless the caller tunes on a validation split and applies them elsewhere.
    A clip without scores (None: failed) is negative at every threshold. Each threshold sits
    halfway between the lowest score kept positive and the next lower score (so a separable
    class gets the midpoint of its gap); ties prefer the higher threshold, and a class with
    no positives gets one just above its top score (predict it never), a class no clip has
    scores for 0.5.
    """
    names = list(labelset.names)
    if len(scores) != len(truth):
        raise ValueError(f"tune_thresholds: {len(scores)} scores for {len(truth)} clips")
    y_true = _indicators(names, truth, "truth")
    s = np.full(y_true.shape, -np.inf)
    for i, row in enumerate(scores):
        if row is not None:
            if len(row) != len(names) or not np.all(np.isfinite(row)):
                raise ValueError(f"scores[{i}] = {row!r}: need {len(names)} finite numbers")
            s[i] = row
    tuned = [_best_threshold(y_true[:, j], s[:, j]) for j in range(len(names))]
    y_pred = (s >= np.array(tuned)).astype(np.int64)
    f1 = f1_score(y_true, y_pred, labels=list(range(len(names))), average="macro", zero_division=0)
    return {"labels": names, "tuned": tuned, "f1_at_tuned": float(f1), "in_sample": True}


def _best_threshold(y: np.ndarray, s: np.ndarray) -> float:
    scored = np.isfinite(s)
    if not scored.any():
        return 0.5  # nothing to tune on; any threshold predicts nothing for failed clips
    order = np.argsort(-s[scored], kind="stable")
    s_desc, y_desc = s[scored][order], y[scored][order]
    # Cut after each run of equal scores: predict positive the first k clips.
    last = np.r_[s_desc[1:] != s_desc[:-1], True]
    tp = np.cumsum(y_desc)[last]
    n_pred = np.flatnonzero(last) + 1
    f1 = 2 * tp / (y.sum() + n_pred)
    cuts = s_desc[last]
    k = int(np.argmax(f1))  # first maximum = highest threshold among ties
    if f1[k] <= 0:
        return float(np.nextafter(cuts[0], np.inf))
    if k + 1 == len(cuts):
        return float(cuts[k])
    return _midpoint(float(cuts[k + 1]), float(cuts[k]))


def _midpoint(lo: float, hi: float) -> float:
    """The midpoint of (lo, hi], without float noise: reports read 0.45, not
    0.44999999999999996 (the shortest decimal within 1e-12 of it that is still in the gap,
    so the decisions are the midpoint's)."""
    mid = (lo + hi) / 2
    if not lo < mid <= hi:
        return hi  # adjacent floats: no midpoint
    for digits in range(1, 18):
        r = round(mid, digits)
        if lo < r <= hi and abs(r - mid) <= 1e-12 * max(1.0, abs(mid)):
            return r
    return mid


def evidence_summary(evidence: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """How many evidence quotes (of all predictions' ``Evidence``) were checked against what
    they cite and found there (``tools/evidence.py``); ``verified_share`` None when none
    could be checked (frames only, or no prediction)."""
    flags = [e.verified for items in evidence for e in items]
    checked = [f for f in flags if f is not None]
    verified = sum(1 for f in checked if f)
    return {
        "quotes": len(flags),
        "checked": len(checked),
        "verified": verified,
        "unverified": len(checked) - verified,
        "verified_share": round(verified / len(checked), 4) if checked else None,
    }
