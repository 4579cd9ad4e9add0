"""Metrics: hand-computed cases, failures, bootstrap, threshold tuning, JSON output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pytest import approx
from sklearn.metrics import f1_score

from vara.metrics import FAILED, compute_metrics, tune_thresholds
from vara.prompts.loader import load_labelset
from vara.types import Label, LabelSet

NEWBORN = load_labelset("newborn-resuscitation")  # Ventilation, Stimulation, Suction
ABC = LabelSet(
    name="abc",
    labels=(Label("a", "A"), Label("b", "B"), Label("c", "C")),
    multi_label=False,
)
V, ST, SU = "Ventilation", "Stimulation", "Suction"
KEYS = [
    "labels",
    "multi_label",
    "n",
    "coverage",
    "per_class",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "exact_match",
    "macro_f1_ci95",
    "hallucination_rate",
    "confusion",
    "thresholds",
    "confidence",
    "higher_is_better",
]


def multilabel_case(**kw):
    truth = [(V,), (ST, SU), (), (SU,)]
    predicted = [(V,), (ST,), None, (V,)]  # clip 2 failed
    return compute_metrics(NEWBORN, truth, predicted, reasked=[False, True, False, False], **kw)


def test_multilabel_by_hand():
    m = multilabel_case(n_boot=0)
    assert list(m) == KEYS
    assert (m["labels"], m["multi_label"], m["n"]) == ([V, ST, SU], True, 4)
    # Ventilation: truth 1000, predicted 1001 -> tp 1, fp 1, fn 0, tn 2.
    assert m["per_class"][V] == {"precision": 0.5, "recall": 1.0, "f1": approx(2 / 3), "support": 1}
    assert m["per_class"][ST] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    # Suction: truth 0101, never predicted (the failed clip predicts nothing).
    assert m["per_class"][SU] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["macro_precision"] == approx((0.5 + 1 + 0) / 3)
    assert m["macro_recall"] == approx((1 + 1 + 0) / 3)
    assert m["macro_f1"] == approx((2 / 3 + 1 + 0) / 3)
    # micro: tp 2, fp 1, fn 2 -> 2*2 / (2*2 + 1 + 2)
    assert m["micro_f1"] == approx(4 / 7)
    assert m["weighted_f1"] == approx((1 * 2 / 3 + 1 * 1 + 2 * 0) / 4)
    # Exact: clip 0, and clip 2 (no activity; a failure predicts no label): 2 of 4.
    assert m["exact_match"] == 0.5
    assert m["coverage"] == 0.75
    # Clip 1 re-asked; clip 2 failed without an answer (say, its video): 1 of 3 answers.
    assert m["hallucination_rate"] == approx(1 / 3)
    # Clip 2's answer stayed invalid after the re-ask (reasked, answered): 2 of 4 answers.
    truth, predicted = [(V,), (ST, SU), (), (SU,)], [(V,), (ST,), None, (V,)]
    invalid = compute_metrics(NEWBORN, truth, predicted, reasked=[False, True, True, False])
    assert invalid["hallucination_rate"] == 0.5
    # Nothing answered at all (say, the server was down): no rate, not a perfect one.
    down = compute_metrics(NEWBORN, truth, [None] * 4, reasked=[False] * 4, n_boot=0)
    assert down["hallucination_rate"] is None and down["coverage"] == 0.0
    assert m["macro_f1_ci95"] is None
    assert m["confusion"] == {
        "type": "multilabel",
        "labels": [V, ST, SU],
        "per_class": {V: [[2, 1], [0, 1]], ST: [[3, 0], [0, 1]], SU: [[2, 0], [2, 0]]},
    }
    assert m["thresholds"] is None


def test_classes_never_seen_stay_out_of_the_averages():
    m = compute_metrics(NEWBORN, [(V,), (V,), ()], [(V,), (), ()], reasked=[False] * 3, n_boot=0)
    # Ventilation tp 1, fn 1 -> P 1, R 0.5, F1 2/3; Stimulation and Suction absent everywhere.
    assert m["per_class"][ST] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert (m["macro_precision"], m["macro_recall"]) == (1.0, 0.5)
    assert m["macro_f1"] == approx(2 / 3)
    # A falsely predicted class does count (F1 0).
    m = compute_metrics(NEWBORN, [(V,), (V,)], [(V,), (V, SU)], reasked=[False] * 2, n_boot=0)
    assert m["macro_f1"] == approx((1 + 0) / 2)


def test_single_label_by_hand():
    truth = [("a",), ("a",), ("b",), ("b",), ("c",)]
    predicted = [("a",), ("b",), ("b",), None, ("a",)]
    m = compute_metrics(ABC, truth, predicted, reasked=[False] * 5, n_boot=0)
    assert list(m) == KEYS and m["multi_label"] is False
    # a: predicted at clips 0, 4 -> tp 1 of 2 predicted, 1 of 2 true.
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # b: predicted at clips 1, 2 -> tp 1; the failed clip 3 is a miss for b.
    assert m["per_class"]["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert FAILED not in m["per_class"]
    assert m["macro_f1"] == approx(1 / 3)
    assert m["exact_match"] == approx(2 / 5)
    # micro over the named classes: tp 2, 4 named predictions, 5 true -> 2*2 / (4 + 5)
    assert m["micro_f1"] == approx(4 / 9)
    assert m["weighted_f1"] == approx((2 * 0.5 + 2 * 0.5 + 1 * 0) / 5)
    # The failed clip got no answer (reasked False): no hallucination among the 4 answers.
    assert (m["coverage"], m["hallucination_rate"]) == (0.8, 0.0)
    assert m["confusion"] == {
        "type": "matrix",
        "labels": ["a", "b", "c", FAILED],
        "matrix": [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]],
    }


def test_agrees_with_sklearn_on_a_random_set():
    rng = np.random.default_rng(1)
    n = 60
    y = rng.random((n, 3)) < 0.4
    p = y ^ (rng.random((n, 3)) < 0.25)
    names = [V, ST, SU]
    truth = [tuple(nm for nm, on in zip(names, row, strict=True) if on) for row in y]
    predicted = [tuple(nm for nm, on in zip(names, row, strict=True) if on) for row in p]
    m = compute_metrics(NEWBORN, truth, predicted, reasked=[False] * n, n_boot=0)
    assert m["macro_f1"] == approx(f1_score(y, p, average="macro", zero_division=0))
    assert m["micro_f1"] == approx(f1_score(y, p, average="micro", zero_division=0))


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    n = 80
    truth = [tuple(x) for x in rng.choice(["a", "b", "c"], size=(n, 1))]
    predicted = [t if rng.random() < 0.7 else (str(rng.choice(["a", "b", "c"])),) for t in truth]
    m = compute_metrics(ABC, truth, predicted, reasked=[False] * n, seed=0)
    lo, hi = m["macro_f1_ci95"]
    assert lo < m["macro_f1"] < hi and hi - lo < 0.4
    again = compute_metrics(ABC, truth, predicted, reasked=[False] * n, seed=0)
    assert again["macro_f1_ci95"] == [lo, hi]
    assert compute_metrics(ABC, truth, predicted, reasked=[False] * n, seed=1)["macro_f1_ci95"] != [
        lo,
        hi,
    ]


def test_bootstrap_matches_sklearn_on_each_resample():
    truth = [(V,), (ST, SU), (), (SU,), (V, ST), (ST,), (), (V,)]
    predicted = [(V,), (ST,), None, (V,), (V, ST), (), (SU,), (V,)]
    m = compute_metrics(NEWBORN, truth, predicted, reasked=[False] * 8, n_boot=200, seed=3)
    names = [V, ST, SU]
    y = np.array([[nm in t for nm in names] for t in truth])
    p = np.array([[nm in (q or ()) for nm in names] for q in predicted])
    rng = np.random.default_rng(3)
    stats = []
    for _ in range(200):
        idx = rng.integers(0, 8, 8)
        seen = [j for j in range(3) if y[idx, j].any() or p[idx, j].any()] or [0, 1, 2]
        stats.append(f1_score(y[idx], p[idx], labels=seen, average="macro", zero_division=0))
    assert m["macro_f1_ci95"] == approx(list(np.percentile(stats, [2.5, 97.5])))


def test_thresholds_find_the_gap():
    truth = [(V,), (V,), (), (), (), (ST,)]
    scores = [
        (0.8, 0.1, 0.9),
        (0.7, 0.2, 0.8),
        (0.3, 0.3, 0.7),
        (0.2, 0.1, 0.6),
        (0.1, 0.2, 0.5),
        (0.25, 0.6, 0.4),
    ]
    t = tune_thresholds(NEWBORN, truth, scores)
    assert t["labels"] == [V, ST, SU] and t["in_sample"] is True
    v, st, su = t["tuned"]
    assert v == approx(0.5)  # halfway between the lowest positive 0.7 and the top negative 0.3
    # between 0.6 and 0.3: the shortest decimal there, not the float (0.6 + 0.3) / 2
    assert st == 0.45 and repr(st) == "0.45"
    assert su > 0.9  # no positives: above every score, predict never
    assert t["f1_at_tuned"] == approx((1 + 1 + 0) / 3)


def test_thresholds_are_midpoints_without_float_noise():
    from vara.metrics import _midpoint

    assert repr(_midpoint(0.3, 0.6)) == "0.45"  # (0.3 + 0.6) / 2 is 0.44999999999999996
    assert repr(_midpoint(0.3, 0.34)) == "0.32"
    assert _midpoint(0.123456, 0.123457) == 0.1234565
    lo = 0.5
    hi = float(np.nextafter(lo, 1))
    assert _midpoint(lo, hi) == hi  # no float between: the positive's own score
    rng = np.random.default_rng(0)
    for lo, hi in np.sort(rng.random((200, 2)), axis=1):
        t, mid = _midpoint(float(lo), float(hi)), (lo + hi) / 2
        assert lo < t <= hi and abs(t - mid) <= 1e-12 and len(repr(t)) <= len(repr(mid))


def test_thresholds_count_unscored_clips_as_negative():
    t = tune_thresholds(NEWBORN, [(V,), (V,), ()], [(0.9, 0, 0), None, (0.1, 0, 0)])
    assert t["tuned"][0] == approx(0.5)
    # Ventilation: tp 1, fn 1 (the unscored clip) -> 2/3; the other classes: no positives.
    assert t["f1_at_tuned"] == approx((2 / 3 + 0 + 0) / 3)
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        tune_thresholds(NEWBORN, [(V,)], [(0.5, float("nan"), 0.1)])


def test_compute_metrics_reports_tuned_thresholds_for_multilabel_only():
    scores = [(0.9, 0.1, 0.1), (0.1, 0.8, 0.7), None, (0.6, 0.1, 0.65)]
    m = multilabel_case(scores=scores, n_boot=10)
    assert m["thresholds"]["in_sample"] is True
    assert m["thresholds"] == tune_thresholds(NEWBORN, [(V,), (ST, SU), (), (SU,)], scores)
    single = compute_metrics(ABC, [("a",)], [("a",)], reasked=[False], scores=[(1.0, 0, 0)])
    assert single["thresholds"] is None


def test_output_is_plain_json():
    m = multilabel_case(scores=[(0.9, 0.1, 0.1), (0.1, 0.8, 0.7), None, (0.6, 0.1, 0.65)])

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return type(x) in (int, float, str, bool, type(None))

    assert plain(m)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    scalars = {k for k, v in m.items() if type(v) is float}
    assert scalars == set(m["higher_is_better"])
    assert m["higher_is_better"]["hallucination_rate"] is False
    assert m["higher_is_better"]["macro_f1"] is True


def test_bad_inputs():
    with pytest.raises(ValueError, match="no clips"):
        compute_metrics(NEWBORN, [], [], reasked=[])
    with pytest.raises(ValueError, match="2 predicted for 1 clips"):
        compute_metrics(NEWBORN, [(V,)], [(V,), ()], reasked=[False])
    with pytest.raises(ValueError, match=r"predicted\[0\]: label 'CPR'"):
        compute_metrics(NEWBORN, [(V,)], [("CPR",)], reasked=[False])
    with pytest.raises(ValueError, match=r"predicted\[0\].*single-label"):
        compute_metrics(ABC, [("a",)], [("a", "b")], reasked=[False])
    with pytest.raises(ValueError, match=r"truth\[0\].*single-label"):
        compute_metrics(ABC, [()], [("a",)], reasked=[False])


def test_results_count_only_invalid_answers_as_hallucinations(tmp_path):
    """results.json: a clip whose answer stayed invalid ("answer" failure) is a hallucination;
    one that failed before any answer (its window, the server) is not, only lost coverage."""
    from vara.agents.strategies import load_strategy
    from vara.eval.runner import results_for
    from vara.records import write_json_atomic, write_jsonl_atomic
    from vara.tools.datasets import Dataset
    from vara.types import Clip, Failure, Prediction

    clips = tuple(Clip(f"v.mp4#{i}", "v.mp4", float(i), i + 2.0, ("a",)) for i in range(4))
    preds = [
        Prediction(
            c.clip_id,
            c.video,
            c.start_s,
            c.end_s,
            ("a",),
            (),
            "",
            "direct",
            (),
            {},
            "",
            attempts=attempts,
        )
        for c, attempts in ((clips[0], 1), (clips[1], 2))
    ]
    write_jsonl_atomic(tmp_path / "predictions.jsonl", (p.to_dict() for p in preds))
    write_json_atomic(
        tmp_path / "run.json",
        {"run_info": {"fingerprint": {"prompts": [], "models": {}}, "sessions": []}},
    )
    failures = (
        Failure(clips[2].clip_id, "answer", "invalid JSON twice"),
        Failure(clips[3].clip_id, "window", "prompt does not fit the context"),
    )
    dataset = Dataset("m", str(tmp_path / "m.csv"), "x", clips)
    r = results_for(tmp_path, dataset, ABC, load_strategy("direct"), failures)
    # answered: clips 0, 1 (re-asked), 2 (invalid); clip 3 never got an answer.
    assert r["metrics"]["hallucination_rate"] == approx(2 / 3)
    assert r["metrics"]["coverage"] == 0.5 and r["run_info"]["counts"]["n_failures"] == 2


def test_confidence_and_calibration_by_hand():
    from vara.calibration import confidence_metrics

    two = LabelSet("ab", (Label("a", "A"), Label("b", "B")), multi_label=False)
    # top classes: a at 0.9 (right), a at 0.6 (wrong), b at 0.8 (right); one bin each
    got = confidence_metrics(
        two, [("a",), ("b",), ("b",)], [(0.9, 0.1), (0.6, 0.4), (0.2, 0.8), None][:3]
    )
    assert got["n"] == 3 and got["mean_top1"] == pytest.approx(0.766667, abs=1e-6)
    assert got["ece"] == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    multi = LabelSet("ab", (Label("a", "A"), Label("b", "B")), multi_label=True)
    # four (clip, class) scores: 0.95 twice (present once), 0.05 twice (never present)
    got = confidence_metrics(multi, [("a",), ()], [(0.95, 0.05), (0.95, 0.05)])
    assert got["ece"] == pytest.approx(0.45 * 0.5 + 0.05 * 0.5)
    assert confidence_metrics(two, [("a",)], [None]) is None
