"""Timeline exports (vara/timeline_export.py, ``vara timeline``): ELAN parses with the right
tiers and times, WebVTT parses back, the CSV is an interval manifest ``vara eval`` reads."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vara.cli import main
from vara.prompts.loader import load_labelset
from vara.testing.synth_video import write_test_video
from vara.timeline_export import vtt_time
from vara.tools.datasets import load_dataset
from vara.types import Timeline, TimelineEvent

NEWBORN = load_labelset("newborn-resuscitation")  # Ventilation, Stimulation, Suction
EVENTS = [("Ventilation", 0.0, 3.0), ("Stimulation", 1.5, 4.5), ("Ventilation", 4.0, 6.0)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run's out dir as a run leaves it: a.mp4 (6.0 s) with EVENTS, b.mp4 (3.0 s) none."""
    d = tmp_path_factory.mktemp("run")
    (d / "videos").mkdir()
    a = write_test_video(d / "videos" / "a.mp4", n_frames=60, fps=10, codec="h264")
    b = write_test_video(d / "videos" / "b.mp4", n_frames=30, fps=10, codec="h264")
    timelines = [
        Timeline(str(a), 6.0, tuple(TimelineEvent(*e, score=0.9, n_windows=2) for e in EVENTS)),
        Timeline(str(b), 3.0, ()),
    ]
    (d / "timeline.json").write_text(json.dumps({"timelines": [t.to_dict() for t in timelines]}))
    run_info = {"fingerprint": {"labelset": NEWBORN.to_dict()}}
    (d / "run.json").write_text(json.dumps({"run_info": run_info}))
    return d


def test_elan_has_a_tier_per_label_with_the_events_in_ms(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "elan", "--out", str(tmp_path)]) == 0
    root = ET.parse(tmp_path / "a.eaf").getroot()
    assert root.tag == "ANNOTATION_DOCUMENT" and root.get("FORMAT") == "3.0"
    assert [child.tag for child in root][:2] == ["HEADER", "TIME_ORDER"]
    assert root.find("HEADER").get("TIME_UNITS") == "milliseconds"
    slots = {s.get("TIME_SLOT_ID"): int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")}
    tiers = {}
    for tier in root.iter("TIER"):
        tiers[tier.get("TIER_ID")] = [
            (slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")], a[0].text)
            for a in tier.iter("ALIGNABLE_ANNOTATION")
        ]
    assert list(tiers) == ["Ventilation", "Stimulation", "Suction"]  # label-set order
    assert tiers["Ventilation"] == [(0, 3000, "Ventilation"), (4000, 6000, "Ventilation")]
    assert tiers["Stimulation"] == [(1500, 4500, "Stimulation")] and tiers["Suction"] == []
    types = {t.get("LINGUISTIC_TYPE_ID") for t in root.iter("LINGUISTIC_TYPE")}
    assert {t.get("LINGUISTIC_TYPE_REF") for t in root.iter("TIER")} <= types
    ids = [a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")]
    assert len(ids) == len(set(ids)) == 3
    assert not list(ET.parse(tmp_path / "b.eaf").getroot().iter("ALIGNABLE_ANNOTATION"))


_CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$")


def _parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """A small WebVTT reader: header, then blocks of [id], timing line, text lines."""
    blocks = text.split("\n\n")
    assert blocks[0].splitlines()[0] == "WEBVTT"
    cues = []
    for block in filter(str.strip, blocks[1:]):
        lines = block.splitlines()
        timing = next(i for i, line in enumerate(lines) if "-->" in line)
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, _CUE.match(lines[timing]).groups())
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        cues.append((start, end, "\n".join(lines[timing + 1 :])))
    return cues


def test_webvtt_parses_back_to_the_events(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "vtt", "--out", str(tmp_path)]) == 0
    cues = _parse_vtt((tmp_path / "a.vtt").read_text())
    assert sorted((lab, s, e) for s, e, lab in cues) == sorted(EVENTS)
    assert _parse_vtt((tmp_path / "b.vtt").read_text()) == []
    assert vtt_time(3725.5) == "01:02:05.500" and vtt_time(0.0004) == "00:00:00.000"


def test_csv_is_an_interval_manifest_vara_eval_reads(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "csv", "--out", str(tmp_path)]) == 0
    ds = load_dataset(tmp_path / "intervals.csv", NEWBORN)
    by_id = {Path(c.video).name + f":{c.start_s:g}": set(c.labels) for c in ds.clips}
    # 2 s windows every 1 s; a label is positive when it covers more than 1 s of the window.
    assert by_id["a.mp4:0"] == {"Ventilation"}  # V 2 s, S 0.5 s
    assert by_id["a.mp4:2"] == {"Stimulation"}  # V 1 s (not more than half), S 2 s
    assert by_id["a.mp4:4"] == {"Ventilation"}  # V 2 s, S 0.5 s
    assert {k: v for k, v in by_id.items() if k.startswith("b.mp4")} == {
        "b.mp4:0": set(),
        "b.mp4:1": set(),
    }


def test_a_dir_without_a_timeline_is_refused_with_the_fix(tmp_path, capsys):
    assert main(["timeline", str(tmp_path), "--format", "csv"]) == 2
    assert "pass a `vara run` out dir" in capsys.readouterr().err
