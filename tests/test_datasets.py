"""Dataset manifests: the shared sample manifest, the window overlap rule by hand, bad input."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from vara.errors import InputError, VideoError
from vara.prompts.loader import load_labelset
from vara.testing.synth_video import write_test_video
from vara.tools.datasets import detect_format, load_dataset
from vara.tools.window_rule import single_window_label, window_labels
from vara.types import Clip, Label, LabelSet

NEWBORN = load_labelset("newborn-resuscitation")
KINETICS = load_labelset("kinetics-sample")
ABC = LabelSet(
    name="abc",
    labels=(Label("a", "A"), Label("b", "B"), Label("c", "C")),
    multi_label=False,
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.mp4: 60 frames at 10 fps = 6.0 s; b.mp4: 3.0 s."""
    d = tmp_path_factory.mktemp("videos")
    write_test_video(d / "a.mp4", n_frames=60, fps=10, codec="h264")
    write_test_video(d / "b.mp4", n_frames=30, fps=10, codec="h264")
    return d


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def write_jsonl(folder: Path, name: str, rows: list[dict]) -> Path:
    return write(folder, name, "".join(json.dumps(r) + "\n" for r in rows))


def test_shared_manifest_loads_as_seven_whole_videos(shared_videos):
    ds = load_dataset(shared_videos / "manifest.csv", KINETICS)
    assert len(ds.clips) == 7
    assert ds.name == "manifest"
    assert ds.path == str((shared_videos / "manifest.csv").resolve())
    assert ds.sha256 == hashlib.sha256((shared_videos / "manifest.csv").read_bytes()).hexdigest()
    for clip in ds.clips:
        assert clip.start_s == 0.0 and clip.end_s > 5
        assert len(clip.labels) == 1 and set(clip.labels) <= set(KINETICS.names)
        assert Path(clip.video).is_file()
    first = ds.clips[0]
    assert first.clip_id == "arm_wrestling.mp4:0.00-10.00"
    assert first.labels == ("arm wrestling",)


# The newborn protocol by hand: 2-s windows, 50 % overlap (step 1 s), positive when a
# label's annotated time inside the window is MORE than 1 s.
INTERVALS_CSV = """video,label,start_s,end_s
a.mp4,Ventilation,0.0,2.0
a.mp4,Suction,4.5,6.0
a.mp4,Stimulation,2.4,3.0
a.mp4,Stimulation,3.2,3.8
a.mp4,Stimulation,4.8,6.0
b.mp4,,,
"""
EXPECTED = [
    # Ventilation covers all of 0-2.
    Clip("a.mp4:0.00-2.00", "a.mp4", 0.0, 2.0, ("Ventilation",)),
    # Ventilation covers exactly half (1.0 s of 2): negative. Stimulation 0.6 s.
    Clip("a.mp4:1.00-3.00", "a.mp4", 1.0, 3.0, ()),
    # Two Stimulation intervals of 0.6 s each: neither alone, together 1.2 s > 1.
    Clip("a.mp4:2.00-4.00", "a.mp4", 2.0, 4.0, ("Stimulation",)),
    # Stimulation 0.6 + 0.2 = 0.8 s, Suction 0.5 s: both negative.
    Clip("a.mp4:3.00-5.00", "a.mp4", 3.0, 5.0, ()),
    # Suction 1.5 s and Stimulation 1.2 s, in label-set order (not row order).
    Clip("a.mp4:4.00-6.00", "a.mp4", 4.0, 6.0, ("Stimulation", "Suction")),
    # b.mp4 (3 s) is listed with no activity: all windows negative.
    Clip("b.mp4:0.00-2.00", "b.mp4", 0.0, 2.0, ()),
    Clip("b.mp4:1.00-3.00", "b.mp4", 1.0, 3.0, ()),
]


def _relative(clips, folder: Path):
    return [
        Clip(
            c.clip_id,
            str(Path(c.video).relative_to(folder.resolve())),
            c.start_s,
            c.end_s,
            c.labels,
        )
        for c in clips
    ]


def test_intervals_by_hand(videos):
    ds = load_dataset(write(videos, "ann.csv", INTERVALS_CSV), NEWBORN)
    assert _relative(ds.clips, videos) == EXPECTED
    assert all(Path(c.video).is_absolute() for c in ds.clips)


def test_intervals_jsonl_gives_the_same_windows(videos):
    rows = [
        dict(zip(("video", "label", "start_s", "end_s"), line.split(","), strict=True))
        for line in INTERVALS_CSV.splitlines()[1:]
    ]
    rows = [
        {k: (float(v) if k.endswith("_s") and v else v or None) for k, v in r.items()} for r in rows
    ]
    ds = load_dataset(write_jsonl(videos, "ann.jsonl", rows), NEWBORN)
    assert _relative(ds.clips, videos) == EXPECTED


def test_window_labels_rule():
    # Exactly half is negative; a hair more is positive.
    assert window_labels(0.0, 2.0, {"V": [(1.0, 2.0)]}) == ()
    assert window_labels(0.0, 2.0, {"V": [(0.99, 2.0)]}) == ("V",)
    # Overlapping annotations of one label are merged: 0-0.8 and 0.2-1.0 cover 1.0 s, not 1.6.
    assert window_labels(0.0, 2.0, {"V": [(0.0, 0.8), (0.2, 1.0)]}) == ()
    # Half up to float error (window start 0.1 + 0.2) stays negative.
    assert window_labels(0.1 + 0.2, 2.3, {"V": [(0.3, 1.3 + 1e-12)]}) == ()
    # min_overlap=0: any overlap at all.
    assert window_labels(0.0, 2.0, {"V": [(1.9, 3.0)], "S": [(2.0, 3.0)]}, 0.0) == ("V",)


def test_clip_manifest_csv_and_jsonl(videos):
    csv_path = write(
        videos,
        "clips.csv",
        "video,start_s,end_s,labels,notes\n"
        "a.mp4,0,2,Suction;Stimulation,x\n"
        "a.mp4,2,4,,no activity\n"
        "b.mp4,,,Ventilation,whole video\n",
    )
    jsonl_path = write_jsonl(
        videos,
        "clips.jsonl",
        [
            {"video": "a.mp4", "start_s": 0, "end_s": 2, "labels": ["Suction", "Stimulation"]},
            {"video": "a.mp4", "start_s": 2, "end_s": 4, "labels": []},
            {"video": str(videos / "b.mp4"), "labels": ["Ventilation"]},
        ],
    )
    expected = [
        Clip("a.mp4:0.00-2.00", "a.mp4", 0.0, 2.0, ("Stimulation", "Suction")),
        Clip("a.mp4:2.00-4.00", "a.mp4", 2.0, 4.0, ()),
        Clip("b.mp4:0.00-3.00", "b.mp4", 0.0, 3.0, ("Ventilation",)),
    ]
    assert _relative(load_dataset(csv_path, NEWBORN).clips, videos) == expected
    got = _relative(load_dataset(jsonl_path, NEWBORN).clips, videos)
    # An absolute path keys the clip by the path as written.
    assert got[:2] == expected[:2]
    assert got[2].clip_id == f"{(videos / 'b.mp4').as_posix()}:0.00-3.00"


def test_detection_and_override(videos):
    assert detect_format(["video", "label", "start_s", "end_s"]) == "intervals"
    assert detect_format(["path", "label", "taxonomy"]) == "clips"
    assert detect_format(["video", "labels", "start_s", "end_s"]) == "clips"
    path = write(videos, "trimmed.csv", "video,label,start_s,end_s\na.mp4,a,1,3\nb.mp4,b,0,1\n")
    ds = load_dataset(path, ABC, format="clips")
    assert [(c.clip_id, c.labels) for c in ds.clips] == [
        ("a.mp4:1.00-3.00", ("a",)),
        ("b.mp4:0.00-1.00", ("b",)),
    ]


def test_paths_are_relative_to_the_manifest_or_root(videos, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.mp4").write_bytes((videos / "b.mp4").read_bytes())
    ds = load_dataset(write(tmp_path, "m.csv", "path,label\nsub/x.mp4,a\n"), ABC)
    assert ds.clips[0].clip_id == "sub/x.mp4:0.00-3.00"
    assert ds.clips[0].video == str((tmp_path / "sub" / "x.mp4").resolve())
    path = write(tmp_path, "m.csv", "path,label\na.mp4,a\n")
    where = re.escape(repr(str(tmp_path.resolve())))
    with pytest.raises(
        InputError, match=rf"m\.csv line 2: video 'a\.mp4' not found.*start at {where}"
    ):
        load_dataset(path, ABC)
    gone = write(tmp_path, "gone.csv", f"path,label\n{tmp_path / 'gone.mp4'},a\n")
    with pytest.raises(
        InputError, match="gone.mp4.* not found .*; fix the path or remove the row$"
    ):
        load_dataset(gone, ABC)
    assert load_dataset(path, ABC, root=videos).clips[0].video == str((videos / "a.mp4").resolve())


def test_bad_arguments(videos):
    path = write(videos, "ok.csv", INTERVALS_CSV)
    with pytest.raises(InputError, match="min_overlap must be in"):
        load_dataset(path, NEWBORN, min_overlap=1.0)
    with pytest.raises(InputError, match="window_s must be a positive"):
        load_dataset(path, NEWBORN, window_s=0)
    with pytest.raises(InputError, match="format must be"):
        load_dataset(path, NEWBORN, format="windows")  # type: ignore[arg-type]


def test_end_past_the_video_is_cut_with_a_warning(videos, caplog):
    path = write(videos, "late.csv", "video,label,start_s,end_s\na.mp4,Suction,4.5,7.5\n")
    with caplog.at_level(logging.WARNING, logger="vara.tools.datasets"):
        ds = load_dataset(path, NEWBORN)
    assert "late.csv line 2: end_s 7.5 is past the end of 'a.mp4'" in caplog.text
    assert [c.labels for c in ds.clips] == [(), (), (), (), ("Suction",)]
    # Within one frame of the end (rounding in annotation exports): cut without a warning.
    caplog.clear()
    path = write(videos, "late.csv", "video,labels,start_s,end_s\na.mp4,Suction,4,6.05\n")
    with caplog.at_level(logging.WARNING, logger="vara.tools.datasets"):
        ds = load_dataset(path, NEWBORN)
    assert caplog.text == ""
    assert (ds.clips[0].clip_id, ds.clips[0].end_s) == ("a.mp4:4.00-6.00", 6.0)


BAD_CSV = [
    # (rows after the header "video,labels,start_s,end_s", expected message fragment)
    ("a.mp4,Ventilaton,0,2", r"line 2: label 'Ventilaton' is not in.*did you mean 'Ventilation'"),
    ("a.mp4,PPV,0,2", r"line 2: label 'PPV'.*did you mean 'Ventilation'"),
    ("a.mp4,Suction,2,2", r"line 2: start_s 2.0 >= end_s 2.0"),
    ("a.mp4,Suction,-1,2", r"line 2: start_s '-1' must be finite seconds >= 0"),
    ("a.mp4,Suction,zero,2", r"line 2: start_s 'zero' is not a number"),
    ("a.mp4,Suction,0,", r"line 2: give both start_s and end_s"),
    ("a.mp4,Suction,7,8", r"line 2: start_s 7.0 is at or after the end of 'a.mp4'"),
    ("missing.mp4,Suction,0,2", r"line 2: video 'missing.mp4' not found"),
    ("a.mp4,Suction;Suction,0,2", r"line 2: labels .* repeat a label"),
    (
        "a.mp4,Suction,0,2\nb.mp4,,0,1\na.mp4,Ventilation,0,2",
        r"line 4: clip 'a.mp4:0.00-2.00' "
        r"repeats the one from line 2",
    ),
    ("a.mp4,Suction,0,2,extra", r"line 2: more fields than header"),
    ("a.mp4,Suction,0", r"line 2: fewer fields"),
    ("", r"no rows"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_CSV)
def test_bad_clip_rows_name_the_line(videos, rows, message):
    path = write(videos, "bad.csv", "video,labels,start_s,end_s\n" + rows + "\n")
    with pytest.raises(InputError, match=message) as info:
        load_dataset(path, NEWBORN)
    assert "bad.csv" in str(info.value)


BAD_INTERVALS = [
    ("a.mp4,Suction,,", r"line 2: an interval needs a label, start_s and end_s"),
    ("a.mp4,,0,2", r"line 2: an interval needs .*all empty"),
    ("a.mp4,Suction;Ventilation,0,2", r"line 2: 'label' holds one label.*use 'labels'"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_INTERVALS)
def test_bad_interval_rows_name_the_line(videos, rows, message):
    path = write(videos, "bad.csv", "video,label,start_s,end_s\n" + rows + "\n")
    with pytest.raises(InputError, match=message):
        load_dataset(path, NEWBORN)


def test_single_label_sets(videos):
    multi = write(videos, "s.csv", "video,labels\na.mp4,a\nb.mp4,a;b\n")
    with pytest.raises(InputError, match=r"s\.csv line 3: .*single-label; give exactly one"):
        load_dataset(multi, ABC)
    empty = write(videos, "s.csv", "video,label\na.mp4,\n")
    with pytest.raises(InputError, match=r"line 2: .*single-label"):
        load_dataset(empty, ABC)
    gap = write(videos, "s.csv", "video,label,start_s,end_s\na.mp4,a,0,3\nb.mp4,b,0,3\n")
    with pytest.raises(
        InputError, match=r"line 2: window a\.mp4:2\.00-4\.00 is annotated for only 1\.00 s of"
    ):
        load_dataset(gap, ABC)


def test_single_label_rule_by_hand():
    """The window takes the label covering most of it; a tie goes to the later onset."""
    whole_seconds = {"tai chi": [(0.0, 150.0)], "yoga": [(150.0, 300.0)]}
    one = single_window_label(149.0, 151.0, whole_seconds)
    assert one.label == "yoga" and one.tied == ("tai chi", "yoga") and one.annotated_s == 2.0
    flipped = {"yoga": [(150.0, 300.0)], "tai chi": [(0.0, 150.0)]}  # not label-set order
    assert single_window_label(149.0, 151.0, flipped).label == "yoga"
    assert single_window_label(0.0, 2.0, {"a": [(0.0, 1.2)], "b": [(1.2, 2.0)]}).tied == ("a",)
    # 0.6 s of a and 0.5 s of b: 1.1 s annotated, more than half; a covers most
    assert single_window_label(0.0, 2.0, {"a": [(0.0, 0.6)], "b": [(1.0, 1.5)]}).label == "a"
    # half or less annotated: no label (the loader names the gap)
    assert single_window_label(0.0, 2.0, {"a": [(0.0, 1.0)], "b": []}).label is None
    assert single_window_label(0.0, 2.0, {"a": [(0.0, 1.0)]}, min_overlap=0.4).label == "a"


def test_whole_second_single_label_annotations_load_and_ties_are_counted(videos):
    """a.mp4 is 6 s: 2-s windows every 1 s; a over 0-3 s, b over 3-6 s (whole seconds)."""
    path = write(videos, "t.csv", "video,label,start_s,end_s\na.mp4,a,0,3\na.mp4,b,3,6\n")
    ds = load_dataset(path, ABC)
    got = [(c.start_s, c.end_s, c.labels) for c in ds.clips]
    assert got == [
        (0.0, 2.0, ("a",)),
        (1.0, 3.0, ("a",)),
        (2.0, 4.0, ("b",)),  # half each: the later one
        (3.0, 5.0, ("b",)),
        (4.0, 6.0, ("b",)),
    ]
    assert ds.n_tied == 1


def test_bad_columns_and_files(videos, tmp_path):
    cases = [
        ("c.csv", "file,labels\na.mp4,a\n", r"c\.csv: no 'video' \(or 'path'\) column"),
        ("c.csv", "video,lable\na.mp4,a\n", r"no 'labels' \(or 'label'\) column.*rename 'lable'"),
        ("c.csv", "video,labels,strat_s,end_s\na.mp4,a,0,1\n", r"rename 'strat_s'"),
        ("c.csv", "video,labels,start,end\na.mp4,a,0,1\n", r"'start' looks like 'start_s'"),
        ("c.csv", "video,path,labels\na.mp4,a.mp4,a\n", r"both 'video' and 'path'"),
        ("c.txt", "video,labels\n", r"use a \.csv or \.jsonl"),
    ]
    for name, text, message in cases:
        with pytest.raises(InputError, match=message):
            load_dataset(write(videos, name, text), ABC)
    with pytest.raises(InputError, match="not found"):
        load_dataset(videos / "nope.csv", ABC)
    with pytest.raises(InputError, match="need a 'start_s'|no 'start_s'"):
        load_dataset(write(videos, "c.csv", "path,label\na.mp4,a\n"), ABC, format="intervals")


def test_bad_jsonl_lines(videos):
    cases = [
        ('{"video": "a.mp4", "labels": ["a"]}\n\n{oops\n', r"j\.jsonl line 3: invalid JSON"),
        ('["a.mp4"]\n', r"line 1: expected a JSON object"),
        ('{"video": "a.mp4", "labels": "a"}\n', r"line 1: 'labels' must be a JSON list"),
        ('{"video": "a.mp4", "labels": ["a"], "start_s": true, "end_s": 1}\n', r"line 1: start_s"),
        ('{"labels": ["a"]}\n', r"no 'video'"),
        ('{"video": "a.mp4", "labels": ["a"]}\n{"labels": ["b"], "path": "b.mp4"}\n', "both"),
        ('{"video": "a.mp4", "labels": ["a"]}\n{"labels": ["b"]}\n', r"line 2: empty 'video'"),
    ]
    for text, message in cases:
        with pytest.raises(InputError, match=message):
            load_dataset(write(videos, "j.jsonl", text), ABC)


def test_undecodable_video_names_the_line(videos, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"")
    path = write(tmp_path, "m.csv", "path,label\nbroken.mp4,a\n")
    with pytest.raises(VideoError, match=r"m\.csv line 2: video .*broken\.mp4.* empty"):
        load_dataset(path, ABC)


def test_a_manifest_that_is_not_utf8_names_the_line(videos):
    path = videos / "latin1.csv"
    path.write_bytes("video,labels\na.mp4,a\nb.mp4,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv line 3: not UTF-8 text .*save the file"):
        load_dataset(path, ABC)
