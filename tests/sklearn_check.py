"""Single-label metrics recomputed with scikit-learn straight from a strategy's files on disk
(clips.jsonl + predictions.jsonl), and the check that results.json agrees: shared by the
eval and sweep end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from vara.metrics import FAILED
from vara.records import read_jsonl
from vara.types import Clip, LabelSet, Prediction


def recompute(strategy_dir: Path, labelset: LabelSet) -> dict:
    clips = [Clip.from_dict(r) for r in read_jsonl(strategy_dir / "clips.jsonl")]
    preds = {
        r["clip_id"]: Prediction.from_dict(r)
        for r in read_jsonl(strategy_dir / "predictions.jsonl")
    }
    names = list(labelset.names)
    y_true = [c.labels[0] for c in clips]
    y_pred = [preds[c.clip_id].labels[0] if c.clip_id in preds else FAILED for c in clips]
    seen = [n for n in names if n in set(y_true) | set(y_pred)]
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=names, average=None, zero_division=0
    )
    macro = precision_recall_fscore_support(
        y_true, y_pred, labels=seen, average="macro", zero_division=0
    )
    return {
        "per_class": {n: [p[i], r[i], f[i], s[i]] for i, n in enumerate(names)},
        "macro": macro[:3],
        "micro_f1": f1_score(y_true, y_pred, labels=seen, average="micro", zero_division=0),
        "weighted_f1": f1_score(y_true, y_pred, labels=seen, average="weighted", zero_division=0),
        "exact_match": accuracy_score(y_true, y_pred),
        "matrix": confusion_matrix(y_true, y_pred, labels=[*names, FAILED]).tolist(),
    }


def assert_metrics_match(strategy_dir: Path, labelset: LabelSet) -> None:
    """Every metric of ``strategy_dir/results.json`` equals scikit-learn's recomputation."""
    m = json.loads((strategy_dir / "results.json").read_text())["metrics"]
    want = recompute(strategy_dir, labelset)
    for name, (p, r, f, s) in want["per_class"].items():
        got = m["per_class"][name]
        assert np.allclose([got["precision"], got["recall"], got["f1"]], [p, r, f]), name
        assert got["support"] == s
    assert np.allclose([m["macro_precision"], m["macro_recall"], m["macro_f1"]], want["macro"])
    assert m["micro_f1"] == pytest.approx(want["micro_f1"])
    assert m["weighted_f1"] == pytest.approx(want["weighted_f1"])
    assert m["exact_match"] == pytest.approx(want["exact_match"])
    assert m["confusion"]["matrix"] == want["matrix"]
    lo, hi = m["macro_f1_ci95"]
    assert 0.0 <= lo <= hi <= 1.0
