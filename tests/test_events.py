"""Event-level metrics against hand-computed cases (vara/events.py)."""

from __future__ import annotations

import pytest

from vara.events import AP_TIOUS, event_metrics, events_from_windows, tiou
from vara.types import Clip, Prediction, Timeline, TimelineEvent


def _tl(video, *events):
    return Timeline(video, 60.0, tuple(TimelineEvent(*e) for e in events))


# Class A in video v: truths G1 = [0,10), G2 = [20,30); predictions by score:
#   P1 [0,8)   0.9  tIoU(P1,G1) = 8/10 = 0.8
#   P2 [22,32) 0.8  tIoU(P2,G2) = 8/12 = 0.667
#   P3 [2,12)  0.7  tIoU(P3,G1) = 8/12 = 0.667, but P1 took G1 first
# Class B: one truth [40,50), no prediction. Class C: one prediction, no truth. D: nothing.
TRUTH = [_tl("v", ("A", 0.0, 10.0), ("A", 20.0, 30.0), ("B", 40.0, 50.0))]
PRED = [
    _tl(
        "v",
        ("A", 0.0, 8.0, 0.9),
        ("A", 22.0, 32.0, 0.8),
        ("A", 2.0, 12.0, 0.7),
        ("C", 40.0, 50.0, 0.5),
    )
]


def test_tiou():
    assert tiou((0, 10), (0, 8)) == pytest.approx(0.8)
    assert tiou((20, 30), (22, 32)) == pytest.approx(8 / 12)
    assert tiou((0, 1), (2, 3)) == 0.0


def test_precision_recall_f1_at_each_tiou():
    a = event_metrics(TRUTH, PRED, ["A", "B", "C", "D"]).per_class[0]
    assert (a.n_truth, a.n_predicted) == (2, 3)
    # t=0.3 and 0.5: P1->G1, P2->G2, P3 finds G1 taken: TP=2, P=2/3, R=1, F1=0.8.
    # t=0.7: only P1 (0.8): TP=1, P=1/3, R=1/2, F1 = 2(1/3)(1/2)/(1/3+1/2) = 0.4.
    assert a.precision == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert a.recall == pytest.approx((1.0, 1.0, 0.5))
    assert a.f1 == pytest.approx((0.8, 0.8, 0.4))


def test_ap_per_tiou_and_map():
    a, b, c, _ = event_metrics(TRUTH, PRED, ["A", "B", "C", "D"]).per_class
    # Ranked hits: t in 0.50..0.65 -> [1,1,0]: precision 1 at recall 0.5 and 1 -> AP 1.0.
    # t in 0.70..0.80 -> [1,0,0]: precision 1 at recall 0.5, then never more -> AP 0.5.
    # t in 0.85..0.95 -> no hit -> AP 0.  mAP = (4*1 + 3*0.5 + 3*0) / 10 = 0.55.
    expected = [1.0] * 4 + [0.5] * 3 + [0.0] * 3
    assert dict(zip(AP_TIOUS, a.ap, strict=True)) == pytest.approx(
        dict(zip(AP_TIOUS, expected, strict=True))
    )
    assert a.map == pytest.approx(0.55)
    assert b.ap == (0.0,) * 10 and b.map == 0.0 and b.f1 == (0.0, 0.0, 0.0)
    assert c.ap == () and c.map is None and c.precision == (0.0, 0.0, 0.0)


def test_macro_over_classes_seen_and_map_over_classes_with_truth():
    m = event_metrics(TRUTH, PRED, ["A", "B", "C", "D"]).macro
    # F1@0.5 over A, B, C (D has neither): (0.8 + 0 + 0) / 3; mAP over A, B: (0.55 + 0) / 2.
    assert m.f1[1] == pytest.approx(0.8 / 3)
    assert m.map == pytest.approx(0.275)
    d = event_metrics(TRUTH, PRED, ["A", "B", "C", "D"]).to_dict()
    assert d["macro"]["f1"]["0.50"] == pytest.approx(0.266667)
    assert d["per_class"]["A"]["ap"]["0.75"] == 0.5 and d["per_class"]["C"]["mAP"] is None


def test_the_score_ranks_the_greedy_matching():
    # P3 [2,12) now ranks first: it takes G1 at t <= 0.65 and P1 (0.8) finds it taken; at
    # t >= 0.7 P3 misses and P1 still takes G1. Ranked [P3, P1, P2]:
    #   t=0.5: hits [1,0,1], precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1]: TP=2 (F1 0.8),
    #          AP = 0.5 * 1 + 0.5 * 2/3 = 0.8333 (interpolated: best precision at recall >= r).
    #   t=0.7: hits [0,1,0], precision [0, 1/2, 1/3] at recall [0, 1/2, 1/2]: AP = 0.5 * 0.5.
    pred = [_tl("v", ("A", 0.0, 8.0, 0.5), ("A", 22.0, 32.0, 0.2), ("A", 2.0, 12.0, 0.9))]
    a = event_metrics(TRUTH, pred, ["A", "B"]).per_class[0]
    assert a.f1[1] == pytest.approx(0.8)
    assert a.ap[0] == pytest.approx(0.5 + (2 / 3) * 0.5)
    assert a.ap[4] == pytest.approx(0.25)


def test_events_match_only_within_their_video_and_unknown_labels_are_refused():
    pred = [_tl("w", ("A", 0.0, 10.0))]  # no score: ranks as 1.0
    a = event_metrics(TRUTH, pred, ["A", "B"]).per_class[0]
    assert a.precision == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="outside the label set"):
        event_metrics(TRUTH, PRED, ["A"])


def _pred(clip, labels):
    return Prediction(
        clip.clip_id, clip.video, clip.start_s, clip.end_s, labels, (), "", "s", (), {}, ""
    )


def test_windows_merge_into_truth_and_predicted_events():
    # 2 s windows every 1 s; truth A on the first two, predictions A on the first three and
    # none for the last (failed). Then a window 10-12 apart from the rest: its own event.
    spans = [(0, 2, "A"), (1, 3, "A"), (2, 4, ""), (3, 5, ""), (10, 12, "A")]
    clips = [Clip(f"v:{s}", "v", s, e, tuple(lab)) for s, e, lab in spans]
    preds = {c.clip_id: _pred(c, ("A",)) for c in clips[:3]}
    preds["v:10"] = _pred(clips[4], ("A",))
    truth, predicted = events_from_windows(clips, preds)
    assert [(e.label, e.start_s, e.end_s) for e in truth[0].events] == [
        ("A", 0, 3),
        ("A", 10, 12),
    ]
    assert [(e.start_s, e.end_s, e.n_windows) for e in predicted[0].events] == [
        (0, 4, 3),
        (10, 12, 1),
    ]
    # tIoU([0,4),[0,3)) = 0.75 and [10,12) exact: both match at 0.7.
    assert event_metrics(truth, predicted, ["A"]).per_class[0].f1 == (1.0, 1.0, 1.0)


def test_trimmed_clips_have_no_events():
    clips = [Clip("a", "a.mp4", 0, 2, ("A",)), Clip("b", "b.mp4", 0, 2, ("A",))]
    assert events_from_windows(clips, {}) is None


def test_the_report_table_shows_macro_f1_and_map_per_strategy():
    from vara.eval.events_table import events_table

    events = event_metrics(TRUTH, PRED, ["A", "B", "C"]).to_dict()
    table = events_table(["s1", "s2", "trimmed"], [{"events": events}, {"events": events}, {}])
    assert table.columns[4] == "F1@0.5" and table.columns[-1] == "mAP"
    assert table.rows[0] == ("s1", "3", "4", "0.267", "0.267", "0.133", "0.275")
    assert len(table.rows) == 2 and (1, 6) in table.best  # ties are both best
    assert events_table(["trimmed"], [{}]) is None
