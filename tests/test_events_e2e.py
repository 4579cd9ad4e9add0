"""`vara eval` over the shared clips as an interval manifest (each clip labelled over its
whole length, so each is one true event cut into windows) with the cheapest real strategy, a
tiny random CLIP: results.json carries ``metrics.events`` beside the window metrics, built
from the same smoothed timelines timeline.json holds."""

from __future__ import annotations

import json

import pytest
from conftest import write_interval_manifest

from vara.cli import main
from vara.testing import build_tiny_clip


@pytest.fixture(scope="module")
def eval_dir(shared_videos, tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    manifest = write_interval_manifest(root / "intervals.csv", shared_videos)
    model = build_tiny_clip(root / "clip")
    out = root / "out"
    args = ["eval", str(manifest), "--labels", "kinetics-sample", "--strategy", "clip"]
    args += ["--set", f"scorer.model={model}", "--frames", "2", "--max-side", "64"]
    args += ["--window-s", "2", "--overlap", "0.5", "--hysteresis", "0.12,0.06"]
    args += ["--merge-gap-s", "1", "--out", str(out), "--no-progress", "--no-cache"]
    assert main(args) == 0
    return out / "clip"


def test_results_carry_event_metrics_with_the_smoothing_used(eval_dir):
    results = json.loads((eval_dir / "results.json").read_text())
    events = results["metrics"]["events"]
    assert events["f1_tious"] == [0.3, 0.5, 0.7] and len(events["ap_tious"]) == 10
    hysteresis = {"enter": 0.12, "exit": 0.06}
    smoothing = {"min_event_s": 0.0, "merge_gap_s": 1.0, "hysteresis": hysteresis}
    assert events["smoothing"] == smoothing
    macro = events["macro"]
    assert set(macro["f1"]) == {"0.30", "0.50", "0.70"} and len(macro["ap"]) == 10
    for name in ("precision", "recall", "f1"):
        assert all(0.0 <= v <= 1.0 for v in macro[name].values())
    # Seven clips, each labelled over its whole length: seven true events, one per class.
    per_class = events["per_class"]
    truth = {c: m["n_truth"] for c, m in per_class.items() if m["n_truth"]}
    assert len(truth) == 7 and set(truth.values()) == {1}
    # The predicted events are the smoothed timeline's: the same count, class by class.
    doc = json.loads((eval_dir / "timeline.json").read_text())
    assert doc["smoothing"] == smoothing
    counted: dict[str, int] = {}
    for t in doc["timelines"]:
        for e in t["events"]:
            counted[e["label"]] = counted.get(e["label"], 0) + 1
    assert {c: m["n_predicted"] for c, m in per_class.items() if m["n_predicted"]} == counted
    assert sum(counted.values()) > 0
    # Each video's window sequence is recorded: the clips of that video, in time order.
    clips = [json.loads(line) for line in (eval_dir / "clips.jsonl").read_text().splitlines()]
    assert sum(len(w) for w in doc["windows"]) == len(clips) > 7
