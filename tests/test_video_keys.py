"""Stable video keys per out dir (videos.json): resume from any path, never another video's
predictions for a file of the same name, keys independent of the other inputs."""

from __future__ import annotations

import json
import os

import pytest

from vara.agents.video_keys import assign_keys, fingerprint
from vara.errors import InputError


def _video(path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def test_keys_follow_the_content_not_the_path_or_the_other_inputs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    a = _video(tmp_path / "day1" / "GOPR0001.MP4", b"first" * 1000)
    keys = assign_keys([a], out)
    assert keys.keys == {a: "GOPR0001.MP4"}
    out.mkdir()
    keys.save(out)

    # The same file by a relative path, from another working directory: same key.
    monkeypatch.chdir(tmp_path / "day1")
    assert assign_keys(["GOPR0001.MP4"], out).keys == {"GOPR0001.MP4": "GOPR0001.MP4"}
    monkeypatch.chdir(tmp_path)

    # Another video of the same name later: its own key; the first keeps its own when both
    # are given (directory order does not matter).
    b = _video(tmp_path / "day2" / "GOPR0001.MP4", b"second" * 1000)
    assert assign_keys([b], out).keys == {b: "day2/GOPR0001.MP4"}
    both = assign_keys([b, a], out)
    assert both.keys == {b: "day2/GOPR0001.MP4", a: "GOPR0001.MP4"}
    both.save(out)
    registry = json.loads((out / "videos.json").read_text())["videos"]
    assert registry["day2/GOPR0001.MP4"] == {"fingerprint": fingerprint(b), "path": b}

    # A copy of a labelled video: labelled once, under the first input's key.
    copy = _video(tmp_path / "copy" / "renamed.mp4", b"first" * 1000)
    keys = assign_keys([copy, a], out)
    assert keys.keys == {copy: "GOPR0001.MP4"} and keys.repeats == {a: copy}


def test_two_new_videos_of_one_name_both_get_their_folder(tmp_path):
    a = _video(tmp_path / "cam1" / "clip.mp4", b"a" * 10)
    b = _video(tmp_path / "cam2" / "clip.mp4", b"b" * 10)
    assert assign_keys([a, b], tmp_path / "out").keys == {a: "cam1/clip.mp4", b: "cam2/clip.mp4"}
    missing = str(tmp_path / "nosuch.mp4")  # left for the probe to report
    assert assign_keys([missing], tmp_path / "out").keys == {missing: "nosuch.mp4"}


def test_fingerprint_reads_only_the_ends_but_sees_size_and_ends(tmp_path):
    big = bytearray(os.urandom(3 << 20))
    path = tmp_path / "v.mp4"
    path.write_bytes(bytes(big))
    first = fingerprint(path)
    big[len(big) // 2] ^= 1  # the middle is not read
    path.write_bytes(bytes(big))
    assert fingerprint(path) == first
    big[-1] ^= 1
    path.write_bytes(bytes(big))
    assert fingerprint(path) != first
    path.write_bytes(bytes(big) + b"x")
    assert fingerprint(path).startswith(f"{len(big) + 1}-")


def test_an_out_dir_from_before_videos_json_keeps_its_keys(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    a = _video(tmp_path / "x" / "a.mp4", b"a" * 10)
    rows = [
        {"clip_id": "a.mp4:0.00-2.00", "video": a},
        {"clip_id": "gone.mp4:0.00-2.00", "video": str(tmp_path / "gone.mp4")},
    ]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    moved = _video(tmp_path / "y" / "a.mp4", b"a" * 10)
    other = _video(tmp_path / "z" / "a.mp4", b"z" * 10)
    keys = assign_keys([other, moved], out)
    assert keys.keys == {moved: "a.mp4", other: "z/a.mp4"}
    # Its video no longer where it was: the name is trusted, as before videos.json.
    gone = _video(tmp_path / "w" / "gone.mp4", b"g" * 10)
    assert assign_keys([gone], out).keys == {gone: "gone.mp4"}


@pytest.mark.parametrize(
    "text", ["{not json", '{"other": 1}', '{"videos": [1]}', '{"videos": {"a.mp4": 3}}']
)
def test_a_damaged_videos_json_is_one_error_naming_the_fix(tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "videos.json").write_text(text)
    a = _video(tmp_path / "a.mp4", b"a" * 10)
    with pytest.raises(InputError, match=r"videos.json is damaged .*delete it and re-run"):
        assign_keys([a], out)
    (out / "videos.json").unlink()  # as the message says: keys come from the predictions
    assert assign_keys([a], out).keys == {a: "a.mp4"}
