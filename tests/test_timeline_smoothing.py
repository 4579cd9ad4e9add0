"""``vara timeline`` smoothing a run's timelines again from its predictions, recording the
settings in what it writes, and its Gantt chart PNG (eval/gantt.py): the size of the
geometry, the label's colour where an event is and white where none is."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pympi
import pytest
from PIL import Image

from vara.cli import main
from vara.eval.gantt import GanttGeometry, lane_colour
from vara.smoothing import Smoothing
from vara.timeline import WindowLabels, run_timeline
from vara.types import ClassScores

# 2 s windows every 1 s over 9 s; A's score per window, B's is 1 - A; a window is A at >= 0.5.
# Unsmoothed A events: 0-3 (windows 0 1), 3-6 (3 4), 7-9 (7); window 6 failed (no prediction).
A_SCORES = [0.7, 0.5, 0.3, 0.7, 0.9, 0.2, None, 0.8]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An out dir as a run leaves it: predictions.jsonl, timeline.json with its windows."""
    d = tmp_path / "run"
    d.mkdir()
    video = str(tmp_path / "videos" / "v.mp4")
    ids, preds = [], {}
    with open(d / "predictions.jsonl", "w") as fh:
        for t, a in enumerate(A_SCORES):
            ids.append(f"v:{t:.2f}-{t + 2:.2f}")
            if a is None:
                continue
            scores = ClassScores(("A", "B"), (a, 1 - a), (0.5, 0.5))
            rec = {"clip_id": ids[-1], "video": video, "start_s": t, "end_s": t + 2.0}
            rec |= {"labels": ["A"] if a >= 0.5 else [], "scores": scores.to_dict()}
            fh.write(json.dumps(rec) + "\n")
            preds[ids[-1]] = WindowLabels.from_record(rec)
    tl = run_timeline(video, 9.0, ids, preds)
    doc = {"smoothing": Smoothing().to_dict(), "timelines": [tl.to_dict()], "windows": [ids]}
    (d / "timeline.json").write_text(json.dumps(doc))
    return d


def _intervals(path: Path) -> list[tuple[str, float, float]]:
    with open(path, newline="") as fh:
        return [(r["label"], float(r["start_s"]), float(r["end_s"])) for r in csv.DictReader(fh)]


def test_without_flags_the_timelines_are_as_the_run_left_them(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "csv", "--out", str(tmp_path / "o")]) == 0
    assert _intervals(tmp_path / "o" / "intervals.csv") == [
        ("A", 0.0, 3.0),
        ("A", 3.0, 6.0),
        ("A", 7.0, 9.0),
    ]


def test_smoothing_flags_rebuild_from_the_predictions_and_are_recorded(run_dir, tmp_path):
    out = tmp_path / "o"
    args = ["timeline", str(run_dir), "--out", str(out), "--hysteresis", "0.8,0.5"]
    # Hysteresis (0.8, 0.5): A enters at window 4 (0.9) and leaves at 5 (0.2): 4-6; window 6
    # failed (off); window 7 (0.8 >= enter): 7-9. B (1 - A) enters at window 5 (0.8): 5-7.
    assert main([*args, "--format", "csv"]) == 0
    assert _intervals(out / "intervals.csv") == [("A", 4.0, 6.0), ("B", 5.0, 7.0), ("A", 7.0, 9.0)]
    # Merging the 1 s gap (< 1.5) and dropping what is shorter than 4 s (so 4-9 stays).
    assert main([*args, "--merge-gap-s", "1.5", "--min-event-s", "4", "--format", "csv"]) == 0
    assert _intervals(out / "intervals.csv") == [("A", 4.0, 9.0)]
    assert main([*args, "--merge-gap-s", "1.5", "--min-event-s", "4", "--format", "elan"]) == 0
    recorded = json.loads(dict(pympi.Elan.Eaf(str(out / "v.eaf")).properties)["vara:smoothing"])
    assert recorded == {
        "min_event_s": 4.0,
        "merge_gap_s": 1.5,
        "hysteresis": {"enter": 0.8, "exit": 0.5},
    }
    # Every event is 2 s: a minimum of 2.5 s drops them all; the video stays, without events.
    assert main([*args, "--min-event-s", "2.5", "--format", "csv"]) == 0
    rows = list(csv.reader(open(out / "intervals.csv", newline="")))
    assert rows[1:] == [[str(tmp_path / "videos" / "v.mp4"), "", "", ""]]


def test_bad_smoothing_is_one_line_naming_the_fix(run_dir, capsys):
    base = ["timeline", str(run_dir), "--format", "csv"]
    assert main([*base, "--hysteresis", "0.4,0.6"]) == 2
    assert "exit <= enter" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the form is wrong
        main([*base, "--hysteresis", "high"])
    assert "ENTER,EXIT" in capsys.readouterr().err
    doc = json.loads((run_dir / "timeline.json").read_text())
    del doc["windows"]  # as written before window sequences were recorded
    (run_dir / "timeline.json").write_text(json.dumps(doc))
    assert main([*base, "--min-event-s", "1"]) == 2
    assert "re-run the same" in capsys.readouterr().err


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_the_gantt_png_has_a_lane_per_label_and_truth_with_bars_where_events_are(run_dir, tmp_path):
    truth = tmp_path / "truth.csv"
    video = tmp_path / "videos" / "v.mp4"
    truth.write_text(f"video,label,start_s,end_s\n{video},A,0,2\n{video},B,5,9\n")
    out = tmp_path / "o"
    args = ["timeline", str(run_dir), "--format", "png", "--truth", str(truth)]
    assert main([*args, "--out", str(out)]) == 0
    img = np.asarray(Image.open(io.BytesIO((out / "v.timeline.png").read_bytes())).convert("RGB"))
    geo = GanttGeometry(9.0, 4)  # lanes: A, A (truth), B, B (truth)
    assert img.shape == (geo.size[1], geo.size[0], 3) == (192, 1200, 3)

    def box(t: float, lane: int) -> np.ndarray:
        x, y = round(geo.x(t)), round(geo.y(lane))
        return img[y - 6 : y + 7, x - 6 : x + 7].reshape(-1, 3).astype(int)

    def share_of(colour: str, pixels: np.ndarray) -> float:
        return float(np.mean(np.abs(pixels - _rgb(colour)).sum(axis=1) < 30))

    a, b = lane_colour(0), lane_colour(1)
    assert share_of(a, box(1.0, 0)) == 1.0  # A's predicted event 0-3: solid
    assert share_of(a, box(4.5, 0)) == 1.0  # and 3-6
    assert share_of("#ffffff", box(6.5, 0)) == 1.0  # no A between 6 and 7
    assert 0.05 < share_of(a, box(1.0, 1)) < 0.9  # A's truth 0-2: hatched in A's colour
    assert share_of("#ffffff", box(4.0, 1)) == 1.0  # no true A at 4 s
    assert share_of("#ffffff", box(4.0, 2)) == 1.0  # B was never predicted
    assert 0.05 < share_of(b, box(7.0, 3)) < 0.9  # B's truth 5-9
    assert share_of(a, box(7.0, 3)) == 0.0  # in B's colour, not A's

    # Without --truth: the predicted lanes only, a size of their own.
    assert main(["timeline", str(run_dir), "--format", "png", "--out", str(tmp_path / "p")]) == 0
    alone = Image.open(tmp_path / "p" / "v.timeline.png")
    assert alone.size == GanttGeometry(9.0, 1).size == (1200, 108)


def test_a_finished_run_rerun_with_other_smoothing_labels_nothing_and_records_it(tmp_path, capsys):
    """Smoothing is not in the fingerprint: the re-run resumes every window and only the
    timeline changes (a tiny CLIP labels a synthetic video, no server)."""
    from vara.testing import build_tiny_clip, write_test_video

    model = build_tiny_clip(tmp_path / "clip")
    video = write_test_video(tmp_path / "v.mp4", n_frames=125, fps=25.0)  # 5 s: 9 windows
    out = tmp_path / "out"
    args = ["run", str(video), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={model}", "--frames", "2", "--max-side", "64"]
    args += ["--window-s", "1", "--overlap", "0.5", "--out", str(out), "--no-progress"]
    assert main([*args, "--no-cache"]) == 0
    first = json.loads((out / "timeline.json").read_text())
    assert first["smoothing"] == Smoothing().to_dict() and first["timelines"][0]["events"]
    assert len(first["windows"][0]) == 9
    capsys.readouterr()
    assert main([*args, "--no-cache", "--min-event-s", "60"]) == 0
    assert "0 predicted now, 9 resumed" in capsys.readouterr().out
    again = json.loads((out / "timeline.json").read_text())
    assert again["smoothing"]["min_event_s"] == 60.0
    assert again["timelines"][0]["events"] == []  # nothing lasts 60 s in a 5 s video
    assert again["windows"] == first["windows"]
