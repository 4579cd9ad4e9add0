"""Timeline smoothing (vara/smoothing.py) on hand-computed cases: gaps, short events,
hysteresis, and the edges of each (exactly at a threshold, empty input, missing scores)."""

from __future__ import annotations

import pytest

from vara.smoothing import Smoothing, drop_short, hysteresis, merge_gaps, parse_hysteresis
from vara.timeline import WindowLabels, run_timeline
from vara.types import ClassScores, TimelineEvent


def _ev(label, start, end, score=None, n=1):
    return TimelineEvent(label, start, end, score, n)


def _spans(events):
    return [(e.label, e.start_s, e.end_s) for e in events]


def _w(start, labels="", a=None, b=None):
    """A 2 s window every 1 s; scores over (A, B) when ``a`` is given."""
    scores = None if a is None else ClassScores(("A", "B"), (a, b), (0.5, 0.5))
    return WindowLabels(float(start), start + 2.0, tuple(labels), scores)


def test_defaults_change_nothing_and_empty_input_stays_empty():
    s = Smoothing()
    assert s.is_identity
    assert merge_gaps([], 1.0) == () and drop_short([], 1.0) == ()
    assert hysteresis([], 0.6, 0.4) == []
    events = [_ev("A", 0, 2), _ev("A", 2.5, 3)]
    assert merge_gaps(events, s.merge_gap_s) == tuple(events)
    assert drop_short(events, s.min_event_s) == tuple(events)


def test_a_gap_shorter_than_g_merges_and_one_of_exactly_g_does_not():
    events = [_ev("A", 0.0, 2.0), _ev("A", 2.5, 4.0), _ev("A", 5.0, 6.0), _ev("B", 2.1, 3.0)]
    # gaps of A: 0.5 (2.0 -> 2.5) and 1.0 (4.0 -> 5.0); B is another label, never merged in.
    assert _spans(merge_gaps(events, 1.0)) == [("A", 0.0, 4.0), ("B", 2.1, 3.0), ("A", 5.0, 6.0)]
    assert _spans(merge_gaps(events, 1.01)) == [("A", 0.0, 6.0), ("B", 2.1, 3.0)]
    assert _spans(merge_gaps(events, 0.5)) == _spans(sorted(events, key=lambda e: e.start_s))
    # A gap made of float sums (0.6 - (0.1 + 0.2) = 0.29999999999999993) is "exactly" 0.3.
    assert len(merge_gaps([_ev("A", 0.0, 0.1 + 0.2), _ev("A", 0.6, 1.0)], 0.3)) == 2


def test_merged_scores_are_window_weighted_and_unscored_events_do_not_count():
    merged = merge_gaps([_ev("A", 0, 2, 0.9, 3), _ev("A", 2.5, 4, 0.5, 1)], 1.0)
    assert len(merged) == 1 and merged[0].n_windows == 4
    assert merged[0].score == pytest.approx((0.9 * 3 + 0.5 * 1) / 4)  # 0.8
    merged = merge_gaps([_ev("A", 0, 2, 0.9, 3), _ev("A", 2.5, 4, None, 2)], 1.0)
    assert merged[0].score == pytest.approx(0.9) and merged[0].n_windows == 5
    assert merge_gaps([_ev("A", 0, 2), _ev("A", 2.5, 4)], 1.0)[0].score is None


def test_events_shorter_than_the_minimum_drop_and_one_exactly_that_long_stays():
    events = [_ev("A", 0.0, 2.0), _ev("B", 3.0, 4.5), _ev("A", 5.0, 5.5), _ev("A", 0.1, 0.4)]
    assert _spans(drop_short(events, 1.5)) == [("A", 0.0, 2.0), ("B", 3.0, 4.5)]
    assert _spans(drop_short(events, 1.5000001)) == [("A", 0.0, 2.0)]
    assert len(drop_short([_ev("A", 0.5, 0.7)], 0.2)) == 1  # 0.19999999999999996 s long


def test_hysteresis_enters_high_and_leaves_low():
    # A's scores: 0.5 (below enter) 0.7 (enters) 0.5 (stays: >= exit) 0.3 (leaves) 0.5 (stays
    # out: below enter) 0.6 (enters: exactly enter) 0.4 (stays: exactly exit).
    a = [0.5, 0.7, 0.5, 0.3, 0.5, 0.6, 0.4]
    seq = [_w(t, "", x, 0.0) for t, x in enumerate(a)]
    got = [w.labels for w in hysteresis(seq, 0.6, 0.4)]
    assert got == [(), ("A",), ("A",), (), (), ("A",), ("A",)]
    assert [w.scores for w in hysteresis(seq, 0.6, 0.4)] == [w.scores for w in seq]


def test_hysteresis_without_scores_keeps_the_windows_labels_and_a_failure_resets():
    # Window 1 has no scores: it keeps its own label A, and A stays "on" after it, so window 2
    # (0.5 >= exit) stays A. Window 3 failed: A is off, so window 4 (0.5 < enter) is not A.
    # Window 5 scores only A: its label B (unscored) is kept.
    partial = WindowLabels(5.0, 7.0, ("B",), ClassScores(("A",), (0.1,), (0.5,)))
    seq = [_w(0, "", 0.7, 0.1), _w(1, "A"), _w(2, "", 0.5, 0.1), None, _w(4, "", 0.5, 0.1)]
    got = hysteresis([*seq, partial], 0.6, 0.4)
    assert got[3] is None
    assert [w.labels for w in got if w is not None] == [("A",), ("A",), ("A",), (), ("B",)]
    # A window without scores and without labels turns its labels off.
    assert [w.labels for w in hysteresis([_w(0, "", 0.9, 0.9), _w(1, "")], 0.6, 0.4)] == [
        ("A", "B"),
        (),
    ]


def test_a_run_timeline_applies_hysteresis_then_gaps_then_the_minimum():
    # Windows every 1 s, 2 s long. A's scores 0.7 0.5 0.3 0.7 0.9 0.2 0.2 0.8:
    # hysteresis (0.6, 0.4): A A - A A - - A  -> events 0-3, 3-6 (touch: gap 0), 7-9.
    scores = [0.7, 0.5, 0.3, 0.7, 0.9, 0.2, 0.2, 0.8]
    windows = {f"v:{t}": _w(t, "A" if x >= 0.5 else "", x, 0.0) for t, x in enumerate(scores)}
    ids = list(windows)
    raw = run_timeline("v.mp4", 9.0, ids, windows)
    assert _spans(raw.events) == [("A", 0.0, 3.0), ("A", 3.0, 6.0), ("A", 7.0, 9.0)]
    h = run_timeline("v.mp4", 9.0, ids, windows, Smoothing(hysteresis=(0.6, 0.4)))
    assert _spans(h.events) == [("A", 0.0, 3.0), ("A", 3.0, 6.0), ("A", 7.0, 9.0)]
    h = run_timeline("v.mp4", 9.0, ids, windows, Smoothing(hysteresis=(0.6, 0.55)))
    assert _spans(h.events) == [("A", 0.0, 2.0), ("A", 3.0, 6.0), ("A", 7.0, 9.0)]  # 0.5 leaves
    h = run_timeline("v.mp4", 9.0, ids, windows, Smoothing(hysteresis=(0.8, 0.5)))
    assert _spans(h.events) == [("A", 4.0, 6.0), ("A", 7.0, 9.0)]  # 0.7 never enters
    both = Smoothing(merge_gap_s=0.5, min_event_s=2.5)
    # gap 3.0 -> 3.0 is 0 < 0.5: 0-6 (merged, windows 0 1 3 4); 7-9 is 2 s < 2.5: dropped.
    merged = run_timeline("v.mp4", 9.0, ids, windows, both).events
    assert _spans(merged) == [("A", 0.0, 6.0)] and merged[0].n_windows == 4
    # The minimum applies after merging: alone, every 3 s event is shorter than 3.5 s.
    assert run_timeline("v.mp4", 9.0, ids, windows, Smoothing(min_event_s=3.5)).events == ()
    longer = Smoothing(merge_gap_s=0.5, min_event_s=3.5)
    assert _spans(run_timeline("v.mp4", 9.0, ids, windows, longer).events) == [("A", 0.0, 6.0)]


def test_settings_are_checked_and_round_trip():
    s = Smoothing(min_event_s=1.0, merge_gap_s=0.5, hysteresis=(0.6, 0.4))
    d = s.to_dict()
    assert d == {"min_event_s": 1.0, "merge_gap_s": 0.5, "hysteresis": {"enter": 0.6, "exit": 0.4}}
    assert Smoothing.from_dict(d) == s and Smoothing.from_dict(None) == Smoothing()
    assert parse_hysteresis("0.6,0.4") == (0.6, 0.4)
    for bad in ("0.6", "a,b", "0.6,0.4,0.2"):
        with pytest.raises(ValueError, match="ENTER,EXIT"):
            parse_hysteresis(bad)
    with pytest.raises(ValueError, match="exit <= enter"):
        Smoothing(hysteresis=(0.4, 0.6))
    with pytest.raises(ValueError, match=">= 0"):
        Smoothing(min_event_s=-1)
