"""Real-time windows on variable-frame-rate video (phone recordings).

A window labelled 100-102 s must hold frames shown in 100-102 s. The videos here are written
with PyAV at known, irregular presentation times, and every frame carries its own number
(``frame_number``), so each sampled frame is checked against the time it was written at,
not against what OpenCV reports.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vara.agents.frames import FrameStore
from vara.testing.synth_video import frame_number, write_vfr_video
from vara.tools import video, video_times
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.video import probe
from vara.tools.windows import frame_at, frame_time, make_windows, plan_frames
from vara.types import Clip, SamplerSpec, VideoInfo

pytest.importorskip("av", reason="PyAV writes the VFR test videos (pip install av)")

SIZE = (128, 96)
SPEC = SamplerSpec(n_frames=6, max_side=None)


def phone_times(seed: int = 5) -> np.ndarray:
    """~24 s as a phone records it: 6 s at 10 fps, 6 s at 30 fps, 6 s at 5 fps, then 6 s of
    jittered 20-100 ms intervals with a few 0.4 s stalls."""
    rng = np.random.default_rng(seed)
    jitter = rng.choice([0.02, 0.033, 0.05, 0.1, 0.4], size=120, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    parts = [np.arange(60) / 10, 6 + np.arange(180) / 30, 12 + np.arange(30) / 5]
    parts.append(18 + np.concatenate([[0.0], np.cumsum(jitter)[:-1]]))
    return np.round(np.concatenate(parts), 3)  # whole ms: Matroska stores ms


def _outside(times: np.ndarray, clip: Clip, idx: tuple[int, ...]) -> list[float]:
    """The written times of the frames ``idx`` that lie outside ``clip``."""
    return [float(times[i]) for i in idx if not clip.start_s - 1e-6 <= times[i] < clip.end_s]


@pytest.fixture(scope="module", params=[".mp4", ".mkv"])
def phone(request, tmp_path_factory) -> tuple[str, np.ndarray]:
    times = phone_times()
    path = tmp_path_factory.mktemp("vfr") / f"phone{request.param}"
    return str(write_vfr_video(path, timestamps_s=times, size=SIZE, gop=48, bframes=2)), times


def test_every_sampled_frame_lies_inside_its_window(phone):
    path, times = phone
    info = probe(path)
    assert info.frame_count == len(times)
    assert info.frame_times_s == pytest.approx(times, abs=1e-4)
    assert info.duration_s == pytest.approx(times[-1], abs=0.15)
    clips = make_windows(info, 2.0, 0.5)
    assert clips[-1].end_s == pytest.approx(info.duration_s)  # windows reach the real end
    batches = list(iter_frame_batches(path, clips, SPEC))
    assert [b.clip for b in batches] == clips
    for b in batches:
        # The decoded frames are the planned ones, shown inside the window when written.
        assert [frame_number(f) for f in b.frames] == list(b.frame_idx)
        assert not _outside(times, b.clip, b.frame_idx), b.clip.clip_id
        assert b.timestamps_s == pytest.approx(times[list(b.frame_idx)], abs=1e-4)
        assert len(set(b.frame_idx)) == SPEC.n_frames  # every window holds >= 6 frames
    # Windows cut in frame-index time (what vara did before) sample frames of other times.
    nominal = dataclasses.replace(info, frame_times_s=None, duration_s=info.frame_count / info.fps)
    strays = [
        _outside(times, c, plan_frames(nominal, c, SPEC)) for c in make_windows(nominal, 2.0, 0.5)
    ]
    assert sum(map(len, strays)) > len(clips)


def test_look_again_plans_and_decodes_a_part_by_its_real_time(phone):
    """look_again's path: FrameStore.add_part plans the part (no decoding), get decodes it."""
    path, times = phone
    store = FrameStore(SPEC)
    for start, end in [(6.5, 7.0), (13.0, 15.5), (22.0, 23.5), (0.0, 1.0)]:  # 13-15.5: 5 fps
        part = Clip(f"phone:{start}-{end}", path, start, end)
        store.add_part(part, 4)
        plan = store.plan(part)
        assert not _outside(times, part, plan.frame_idx)
        batch = store.get(part)
        assert [frame_number(f) for f in batch.frames] == list(plan.frame_idx)
        assert batch.timestamps_s == plan.timestamps_s
        store.drop(part.clip_id)


def test_a_far_frame_is_sought_not_decoded_from_the_start(phone):
    path, times = phone
    src = video._inspect(path)
    assert src.time_seek
    reader = video._Reader(src, None)
    try:
        got = [frame_number(reader.read(i)[0]) for i in (len(times) - 3, 100, 5)]
    finally:
        reader.close()
    assert got == [len(times) - 3, 100, 5]
    assert reader.seeks >= 2 and reader._times is not None  # no fall back to frame 0


def test_a_seek_that_overshoots_in_a_low_rate_stretch_is_retried_further_back(phone, monkeypatch):
    """OpenCV grabs forward from the keyframe as if the file were CFR: in the 5-fps stretch
    (12-18 s, ~16 fps on average) that lands past the frame. Without the reader's estimate
    of where to ask (frames back to a keyframe: none here), the retry must still land
    before it, rather than return a later frame or decode from frame 0."""
    path, times = phone
    monkeypatch.setattr(video_times, "BACK", 0)
    src = video._inspect(path)
    idx = int(np.searchsorted(times, 17.0))
    reader = video._Reader(src, None)
    try:
        assert frame_number(reader.read(idx)[0]) == idx
    finally:
        reader.close()
    assert reader.seeks >= 2 and reader._times is not None


# --- planning by time: pure arithmetic --------------------------------------------------


def vfr_info(times: list[float]) -> VideoInfo:
    n = len(times)
    return VideoInfo("v.mp4", 20.0, n, times[-1] + 0.05, 64, 48, frame_times_s=tuple(times))


def test_plan_spreads_picks_in_time_not_in_index():
    # 1 s at 20 fps, then frames at 1.0, 1.5 and 2.5 s; clip 0-2 s, 4 picks.
    info = vfr_info([k / 20 for k in range(20)] + [1.0, 1.5, 2.5])
    clip = Clip("c", "v.mp4", 0.0, 2.0)
    # Segment centres 0.25, 0.75, 1.25, 1.75 s: frames at 0.25 and 0.75 s, then the nearest
    # of those left (1.0 s: 1.5 s must stay for the last pick), then 1.5 s.
    assert plan_frames(info, clip, SamplerSpec(n_frames=4)) == (5, 15, 20, 21)
    # Spreading in index (the CFR formula over these 22 frames) would crowd the 20-fps second.
    assert [(2 * j + 1) * 22 // 8 for j in range(4)] == [2, 8, 13, 19]


def test_plan_with_few_frames_or_none_in_the_clip():
    info = vfr_info([0.0, 0.5, 1.0, 3.0, 3.1])
    # Two frames (0.5, 1.0) for three picks: repeats, spread as in CFR video.
    assert plan_frames(info, Clip("a", "v.mp4", 0.4, 1.2), SamplerSpec(n_frames=3)) == (1, 2, 2)
    # No frame in 1.5-2.5 s (the recording stalled): the frame on screen at 1.5 s.
    assert plan_frames(info, Clip("b", "v.mp4", 1.5, 2.5), SamplerSpec(n_frames=2)) == (2, 2)
    assert frame_at(info, 2.9) == 2 and frame_at(info, 3.05) == 3 and frame_time(info, 4) == 3.1


def test_windows_of_vfr_video_end_at_its_last_frame():
    info = vfr_info([0.0, 0.5, 1.0, 3.0, 4.1])  # duration 4.15 s
    spans = [(c.start_s, c.end_s) for c in make_windows(info, 2.0, 0.5)]
    # Regular windows end at 4.0 s, before the frame at 4.1 s: a tail window covers it.
    assert spans == [(0, 2), (1, 3), (2, 4), pytest.approx((2.15, 4.15))]


def test_vara_probe_says_a_video_is_vfr_without_listing_every_frame_time(phone, capsys):
    from vara.cli import main

    path, times = phone
    assert main(["probe", path]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["variable_frame_rate"] is True and "frame_times_s" not in line
    assert line["frame_count"] == len(times)
    gaps = np.diff(times)
    assert line["frame_interval_s"] == pytest.approx([gaps.min(), gaps.max()], abs=2e-3)
