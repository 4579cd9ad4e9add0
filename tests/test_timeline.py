"""Timeline merging: consecutive windows with a label become one event."""

from __future__ import annotations

from vara.timeline import build_timeline, run_timeline, timeline_csv_rows
from vara.types import ClassScores, Prediction


def _pred(start, labels, video="v.mp4", probs=None):
    scores = ClassScores(("A", "B"), probs, (0.5, 0.5)) if probs else None
    return Prediction(
        f"{video}:{start}",
        video,
        start,
        start + 2.0,
        tuple(labels),
        (),
        "",
        "s",
        (),
        {},
        "",
        scores=scores,
    )


def test_merges_consecutive_windows_per_label_and_splits_on_a_gap():
    # Windows every 1 s (2 s long, 50% overlap): A in 0-2,1-3,2-4; gap at 3-5; A again at 4-6.
    preds = [_pred(0, "A"), _pred(1, "AB"), _pred(2, "A"), _pred(3, ""), _pred(4, "A")]
    preds = [_pred(p.start_s, p.labels) for p in preds]
    tl = build_timeline("v.mp4", 6.0, reversed(preds))  # order of input does not matter
    spans = [(e.label, e.start_s, e.end_s, e.n_windows) for e in tl.events]
    assert spans == [("A", 0.0, 4.0, 3), ("B", 1.0, 3.0, 1), ("A", 4.0, 6.0, 1)]


def test_scores_are_averaged_and_other_videos_ignored():
    preds = [
        _pred(0, "A", probs=(0.9, 0.1)),
        _pred(1, "A", probs=(0.7, 0.2)),
        _pred(0, "B", video="w.mp4"),
    ]
    tl = build_timeline("v.mp4", 3.0, preds)
    assert len(tl.events) == 1 and abs(tl.events[0].score - 0.8) < 1e-9
    rows = timeline_csv_rows([tl])
    assert rows[0] == ["video", "label", "start_s", "end_s", "score", "n_windows"]
    assert rows[1] == ["v.mp4", "A", "0.000", "3.000", "0.8000", 2]


def test_empty():
    assert build_timeline("v.mp4", 1.0, []).events == ()


def test_a_run_timeline_splits_at_a_failed_window_and_finds_windows_by_id():
    # Windows 0..4; window 2 failed (no prediction): A at 0-1 and 3-4 are two events, not one.
    preds = {p.clip_id: p for p in (_pred(t, "A", video="old/path.mp4") for t in (0, 1, 3, 4))}
    windows = [f"old/path.mp4:{t}" for t in range(5)]
    tl = run_timeline("new/path.mp4", 6.0, windows, preds)  # the video read from elsewhere now
    assert tl.video == "new/path.mp4"
    assert [(e.start_s, e.end_s, e.n_windows) for e in tl.events] == [(0, 3.0, 2), (3, 6.0, 2)]
    # build_timeline has no window sequence: it cannot tell a failed window from none.
    assert len(build_timeline("old/path.mp4", 6.0, preds.values()).events) == 1
