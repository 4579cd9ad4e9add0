"""Timeline exports (vara/timeline_export.py, ``vara timeline``): ELAN opens in pympi-ling
with the right tiers and times, WebVTT parses with webvtt-py, the CSV is an interval manifest
``vara eval`` reads."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pympi
import pytest
import webvtt

from vara.cli import main
from vara.prompts.loader import load_labelset
from vara.smoothing import Smoothing
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


def test_elan_opens_in_pympi_with_a_tier_per_label_and_the_events_in_ms(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "elan", "--out", str(tmp_path)]) == 0
    eaf = pympi.Elan.Eaf(str(tmp_path / "a.eaf"))  # the parser ELAN users script with
    assert list(eaf.get_tier_names()) == ["Ventilation", "Stimulation", "Suction"]  # set order
    tiers = {t: sorted(eaf.get_annotation_data_for_tier(t)) for t in eaf.get_tier_names()}
    assert tiers["Ventilation"] == [(0, 3000, "Ventilation"), (4000, 6000, "Ventilation")]
    assert tiers["Stimulation"] == [(1500, 4500, "Stimulation")] and tiers["Suction"] == []
    assert eaf.media_descriptors[0]["MEDIA_URL"].endswith("a.mp4")
    assert dict(eaf.properties)["vara:smoothing"] == json.dumps(
        Smoothing().to_dict(), separators=(",", ":")
    )
    empty = pympi.Elan.Eaf(str(tmp_path / "b.eaf"))
    assert all(empty.get_annotation_data_for_tier(t) == [] for t in empty.get_tier_names())
    # The XML as written also holds what pympi does not check: unique ids, declared types.
    root = ET.parse(tmp_path / "a.eaf").getroot()
    assert root.get("FORMAT") == "3.0" and root.find("HEADER").get("TIME_UNITS") == "milliseconds"
    types = {t.get("LINGUISTIC_TYPE_ID") for t in root.iter("LINGUISTIC_TYPE")}
    assert {t.get("LINGUISTIC_TYPE_REF") for t in root.iter("TIER")} <= types
    ids = [a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")]
    assert len(ids) == len(set(ids)) == 3


def _cue_s(ts) -> float:
    return ts.hours * 3600 + ts.minutes * 60 + ts.seconds + ts.milliseconds / 1000


def test_webvtt_parses_with_webvtt_py_back_to_the_events(run_dir, tmp_path):
    assert main(["timeline", str(run_dir), "--format", "vtt", "--out", str(tmp_path)]) == 0
    cues = webvtt.read(str(tmp_path / "a.vtt"))  # raises on a malformed file
    got = [(c.text, _cue_s(c.start_time), _cue_s(c.end_time)) for c in cues]
    assert got == sorted(EVENTS, key=lambda e: e[1])  # one cue per event, in time order
    assert [c.start for c in cues] == ["00:00:00.000", "00:00:01.500", "00:00:04.000"]
    assert len(webvtt.read(str(tmp_path / "b.vtt"))) == 0
    assert "NOTE vara smoothing" in (tmp_path / "a.vtt").read_text()  # not a cue: see above
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
