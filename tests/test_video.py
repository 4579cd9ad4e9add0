"""Contract tests for vara.tools.video: exact frames on every decode path, windows, plans, errors.

Reference for "exact": a plain sequential cv2 read of the same file (frame i = the i-th
frame decoded), compared pixel for pixel. Synthetic videos (vara.testing.synth_video) carry their
frame number, so lossy codecs are also checked by reading that number back.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from vara.errors import InputError, VideoError
from vara.testing.synth_video import (
    damage_middle,
    frame_number,
    set_mp4_rotation,
    write_test_video,
    write_vfr_video,
)
from vara.tools import video
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.pixels import resize
from vara.tools.video import SEEK_GAP, probe, read_frames
from vara.tools.windows import make_windows, plan_frames
from vara.types import Clip, PixelSpec, SamplerSpec, VideoInfo

pytest.importorskip("av", reason="PyAV writes the H.264/GIF test videos (pip install av)")

SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
SIZE = (128, 96)
N_LONG = 400  # > SEEK_GAP gaps fit, and H.264 GOP 250 puts a keyframe mid-file


def plain_decode(path: Path) -> list[np.ndarray]:
    """Every frame, as a plain sequential OpenCV read gives it, in RGB."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def vids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {
        "h264.mp4": write_test_video(
            d / "h264.mp4", n_frames=N_LONG, size=SIZE, gop=250, bframes=3
        ),
        "mp4v.mp4": write_test_video(d / "mp4v.mp4", n_frames=N_LONG, size=SIZE, codec="mp4v"),
        "mjpg.avi": write_test_video(d / "mjpg.avi", n_frames=60, size=SIZE),
        "mpeg4.avi": write_test_video(
            d / "mpeg4.avi", n_frames=60, size=SIZE, codec="mpeg4", gop=20, bframes=2
        ),
        "h264.mkv": write_test_video(d / "h264.mkv", n_frames=N_LONG, size=SIZE, fps=29.97),
        "anim.gif": write_test_video(d / "anim.gif", n_frames=40, size=SIZE, fps=10),
        "faststart.mp4": write_test_video(
            d / "faststart.mp4", n_frames=100, size=SIZE, gop=25, faststart=True
        ),
    }
    rot = write_test_video(d / "rot90.mp4", n_frames=10, size=SIZE, gop=5)
    set_mp4_rotation(rot, 90)
    out["rot90.mp4"] = rot
    return out


@pytest.fixture(scope="module")
def refs(vids: dict[str, Path]) -> dict[str, list[np.ndarray]]:
    return {name: plain_decode(p) for name, p in vids.items()}


def assert_exact(frames: np.ndarray, idx, ref: list[np.ndarray]) -> None:
    assert frames.dtype == np.uint8 and frames.shape[1:] == ref[0].shape
    for k, i in enumerate(idx):
        assert np.array_equal(frames[k], ref[i]), f"frame {i} differs from the plain decode"


# --- exactness: seek path and sequential path ---------------------------------------------


@pytest.mark.parametrize("name", ["h264.mp4", "mp4v.mp4", "h264.mkv"])
def test_seek_path_is_frame_exact(vids, refs, name):
    src = video._inspect(vids[name])
    assert src.exact_seek
    reader = video._Reader(src, None)
    wanted = [3, 3 + SEEK_GAP + 1, 190, 260, 251, 399]  # 251 < 260: a backward seek too
    try:
        got = [reader.read(i) for i in wanted]
    finally:
        reader.close()
    assert reader.seeks >= 4 and reader._exact  # never fell back to sequential decoding
    assert_exact(np.stack([g[0] for g in got]), wanted, refs[name])
    assert [frame_number(g[0]) for g in got] == wanted


@pytest.mark.parametrize("name", ["h264.mp4", "mp4v.mp4"])
def test_sequential_path_is_frame_exact(vids, refs, name):
    src = video._inspect(vids[name])
    reader = video._Reader(src, None)
    wanted = list(range(0, N_LONG, 7))
    try:
        frames = np.stack([reader.read(i)[0] for i in wanted])
    finally:
        reader.close()
    assert reader.seeks == 0
    assert_exact(frames, wanted, refs[name])


@pytest.mark.parametrize("name", ["h264.mp4", "mp4v.mp4"])
@pytest.mark.parametrize(
    "window_s, overlap, spec",
    [
        (2.0, 0.5, SamplerSpec(n_frames=16, max_side=None)),  # dense: grab through
        (4.0, 0.0, SamplerSpec(n_frames=1, max_side=None)),  # 100-frame gaps: seeks
        (2.0, 0.3, SamplerSpec(n_frames=None, fps=3.0, max_side=None)),  # unaligned overlap
    ],
)
def test_iter_frame_batches_matches_plain_decode(vids, refs, name, window_s, overlap, spec):
    info = probe(vids[name])
    clips = make_windows(info, window_s, overlap)
    batches = list(iter_frame_batches(vids[name], clips, spec))
    assert [b.clip for b in batches] == clips
    for b in batches:
        assert b.frame_idx == plan_frames(info, b.clip, spec)
        assert_exact(b.frames, b.frame_idx, refs[name])
        assert b.timestamps_s == tuple(i / info.fps for i in b.frame_idx)
        assert all(b.clip.start_s <= t < b.clip.end_s for t in b.timestamps_s)


def test_read_frames_any_order_with_repeats(vids, refs):
    idx = [399, 5, 250, 5, 120]
    frames, times = read_frames(vids["h264.mp4"], idx)
    assert_exact(frames, idx, refs["h264.mp4"])
    assert times == tuple(i / 25 for i in idx)
    empty, no_times = read_frames(vids["h264.mp4"], [], pixels=PixelSpec.resize_only(64))
    assert empty.shape == (0, 48, 64, 3) and no_times == ()


# --- containers and codecs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fps, codec",
    [
        ("mjpg.avi", 25.0, "mjpg"),
        ("mpeg4.avi", 25.0, "fmp4"),
        ("h264.mkv", 30000 / 1001, "h264"),
        ("anim.gif", 10.0, "gif"),
        ("mp4v.mp4", 25.0, "fmp4"),
        ("h264.mp4", 25.0, "h264"),
    ],
)
def test_formats_readable(vids, refs, name, fps, codec):
    info = probe(vids[name])
    n = len(refs[name])
    assert (info.frame_count, info.width, info.height, info.codec) == (n, *SIZE, codec)
    assert info.fps == pytest.approx(fps) and info.duration_s == pytest.approx(n / fps)
    idx = list(range(n))
    frames, times = read_frames(vids[name], idx)
    assert_exact(frames, idx, refs[name])
    assert [frame_number(f) for f in frames] == idx
    assert times == pytest.approx([i / fps for i in idx], abs=1e-3)


def test_rgb_order(vids):
    frames, _ = read_frames(vids["mjpg.avi"], [0])
    r, g, b = frames[0, -2, 2].astype(int)  # the synthetic red patch, bottom-left
    assert r > 200 and g < 60 and b < 60


def test_rotation_metadata_applied(vids, refs):
    info = probe(vids["rot90.mp4"])
    assert (info.rotation_deg, info.width, info.height) == (90, SIZE[1], SIZE[0])
    frames, _ = read_frames(vids["rot90.mp4"], [0, 7])
    assert frames.shape == (2, SIZE[0], SIZE[1], 3)
    assert_exact(frames, [0, 7], refs["rot90.mp4"])  # OpenCV's own read rotates too
    assert [frame_number(np.rot90(f, k=1)) for f in frames] == [0, 7]  # undo 90 deg clockwise
    r, g, b = frames[0, 2, 2].astype(int)  # bottom-left red patch turns to top-left
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate(tmp_path, suffix, caplog):
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.choice([0.02, 0.04, 0.1], size=300))
    times -= times[0]
    path = write_vfr_video(tmp_path / f"vfr{suffix}", timestamps_s=times, size=SIZE, gop=30)
    info = probe(path)
    assert info.frame_count == 300  # matroska has no count: OpenCV estimates 301 here
    # Windows follow the frames' real times, which the probe collected while counting.
    assert info.frame_times_s == pytest.approx(times, abs=1e-4)
    assert np.max(np.abs(times - np.arange(300) / info.fps)) > 0.25  # index / fps would not
    assert not [r for r in caplog.records if "frame index" in r.getMessage()]  # no warning
    src = video._inspect(path)
    assert not src.exact_seek and src.time_seek
    idx = [2, 150, 151, 290, 40]  # gaps > SEEK_GAP and a step back: time seeks
    reader = video._Reader(src, None)
    try:
        got = [reader.read(i) for i in idx]
    finally:
        reader.close()
    assert [frame_number(f) for f, _ in got] == idx
    assert [t for _, t in got] == [info.frame_times_s[i] for i in idx]
    # 150, 290 and 40 were sought (not decoded from frame 0), and no seek fell back to that
    assert reader.seeks >= 3 and reader._times is not None
    frames, got_times = read_frames(path, idx)
    assert [frame_number(f) for f in frames] == idx
    assert got_times == pytest.approx(times[idx], abs=1e-3)
    clips = make_windows(info, 3.0, 0.5)
    for b in iter_frame_batches(path, clips, SamplerSpec(n_frames=4, max_side=None)):
        assert [frame_number(f) for f in b.frames] == list(b.frame_idx)
        assert all(b.clip.start_s - 1e-6 <= t < b.clip.end_s for t in b.timestamps_s)
    # Last line of defence, for VFR that probe misses: a seek landing off the 1/fps grid
    # switches the reader to sequential decoding instead of returning the wrong frame.
    fooled = video._Source(info=src.info, exact_seek=True, t0_s=src.t0_s, declared=300)
    reader = video._Reader(fooled, None)
    try:
        got_idx = [frame_number(reader.read(i)[0]) for i in idx]
    finally:
        reader.close()
    assert got_idx == idx and reader.seeks == 1


# --- resizing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, max_side, shape",
    [
        ("h264.mp4", 64, (48, 64)),
        ("h264.mp4", 100, (75, 100)),
        ("h264.mp4", 500, (96, 128)),
        ("h264.mp4", None, (96, 128)),
        ("rot90.mp4", 64, (64, 48)),
    ],
)
def test_max_side_keeps_aspect(vids, refs, name, max_side, shape):
    frames, _ = read_frames(vids[name], [4], pixels=PixelSpec.resize_only(max_side))
    assert frames.shape == (1, *shape, 3)
    if name == "h264.mp4":
        expect = cv2.resize(refs[name][4], shape[::-1], interpolation=cv2.INTER_AREA)
        assert np.array_equal(frames[0], expect)
    upright = np.rot90(frames[0], k=1) if name == "rot90.mp4" else frames[0]
    assert frame_number(upright) == 4


def test_large_downscale_reduces_by_an_integer_box_first():
    from vara.testing.synth_video import make_frame

    img = make_frame(1234, (1280, 720))[:, :, ::-1].copy()  # BGR, as OpenCV decodes
    out = resize(img, 448)
    one_step = cv2.resize(img, (448, 252), interpolation=cv2.INTER_AREA)
    assert out.shape == (252, 448, 3)
    assert np.abs(out.astype(int) - one_step).mean() < 2.0
    assert frame_number(out[:, :, ::-1]) == 1234
    small = make_frame(7, (340, 256))
    assert np.array_equal(
        resize(small, 224), cv2.resize(small, (224, 169), interpolation=cv2.INTER_AREA)
    )
    assert resize(small, 400) is small  # never enlarges


# --- windows and plans (hand-computed) -------------------------------------------------------


def info_of(n_frames: int, fps: float = 25.0, path: str = "/data/v.mp4") -> VideoInfo:
    return VideoInfo(
        path=path,
        fps=fps,
        frame_count=n_frames,
        duration_s=n_frames / fps,
        width=SIZE[0],
        height=SIZE[1],
    )


def spans(clips):
    return [(round(c.start_s, 6), round(c.end_s, 6)) for c in clips]


def test_make_windows_regular():
    clips = make_windows(info_of(250), 2.0, 0.5)  # 10 s
    assert spans(clips) == [(k, k + 2) for k in range(9)]
    assert clips[0].clip_id == "v.mp4:0.00-2.00" and clips[-1].clip_id == "v.mp4:8.00-10.00"
    assert all(c.video == "/data/v.mp4" and c.labels is None for c in clips)


def test_make_windows_tail_short_and_key():
    assert spans(make_windows(info_of(260), 2.0, 0.5)) == [
        *[(k, k + 2) for k in range(9)],
        (8.4, 10.4),
    ]
    assert spans(make_windows(info_of(250), 3.0, 0.0)) == [(0, 3), (3, 6), (6, 9), (7, 10)]
    short = make_windows(info_of(25), 2.0, 0.5, video_key="cam1")
    assert spans(short) == [(0, 1)] and short[0].clip_id == "cam1:0.00-1.00"
    # 29.97 fps: starts are k * step, never a drifting running sum
    clips = make_windows(info_of(9000, fps=30000 / 1001), 1.0, 0.0)
    assert clips[250].start_s == 250.0 and clips[-1].end_s == pytest.approx(9000 * 1001 / 30000)


@pytest.mark.parametrize(
    "window_s, overlap", [(0, 0.5), (-1, 0), (math.nan, 0), (2, 1.0), (2, -0.1), (2, 1.5)]
)
def test_make_windows_rejects_bad_arguments(window_s, overlap):
    with pytest.raises(InputError, match="window_s|overlap"):
        make_windows(info_of(250), window_s, overlap)


def clip(a: float, b: float) -> Clip:
    return Clip(clip_id=f"c:{a}-{b}", video="/data/v.mp4", start_s=a, end_s=b)


def test_plan_frames_uniform():
    info, spec = info_of(250), SamplerSpec(n_frames=16)
    expect = (1, 4, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48)  # floor((j+.5)*3.125)
    assert plan_frames(info, clip(0, 2), spec) == expect
    assert plan_frames(info, clip(1, 3), spec) == tuple(i + 25 for i in expect)
    assert plan_frames(info, clip(0, 2), SamplerSpec(n_frames=1)) == (25,)


def test_plan_frames_fps_mode_and_bounds():
    info = info_of(250)
    assert plan_frames(info, clip(0, 2), SamplerSpec(n_frames=None, fps=2.0)) == (6, 18, 31, 43)
    assert len(plan_frames(info, clip(0, 2), SamplerSpec(n_frames=None, fps=0.1))) == 1
    capped = plan_frames(info, clip(0, 2), SamplerSpec(n_frames=None, fps=100.0, max_frames=64))
    assert len(capped) == 64 and len(set(capped)) == 50  # 50 frames in the window: repeats
    assert list(capped) == sorted(capped) and 0 <= capped[0] and capped[-1] <= 49


def test_plan_frames_clips_at_video_edges():
    info = info_of(100)  # 4 s
    assert plan_frames(info, clip(3, 5), SamplerSpec(n_frames=5)) == (77, 82, 87, 92, 97)
    assert plan_frames(info, clip(1.01, 1.02), SamplerSpec(n_frames=3)) == (25, 25, 25)
    with pytest.raises(VideoError, match="after the end of video '/data/v.mp4'"):
        plan_frames(info, clip(4.0, 6.0), SamplerSpec(n_frames=3))


def test_plan_frames_distinct_whenever_the_window_has_enough_frames():
    rng = np.random.default_rng(0)
    for _ in range(500):
        fps = float(rng.choice([7.5, 25.0, 29.97, 59.94]))
        info = info_of(int(rng.integers(20, 3000)), fps=fps)
        a = float(rng.uniform(0, info.duration_s - 0.01))
        b = a + float(rng.uniform(0.01, 8))
        n = int(rng.integers(1, 40))
        c = clip(a, b)
        idx = plan_frames(info, c, SamplerSpec(n_frames=n))
        inside = [i for i in range(info.frame_count) if a <= i / fps < b]
        assert len(idx) == n and list(idx) == sorted(idx)
        if inside:
            assert inside[0] <= idx[0] and idx[-1] <= inside[-1]
        if len(inside) >= n:
            assert len(set(idx)) == n


# --- memory and ordering ---------------------------------------------------------------------


def test_memory_does_not_grow_with_video_length(tmp_path):
    def peak_bytes(n_frames: int) -> int:
        path = write_test_video(
            tmp_path / f"m{n_frames}.avi", n_frames=n_frames, size=(64, 48), noise=False
        )
        clips = make_windows(probe(path), 2.0, 0.5)
        tracemalloc.start()
        try:
            for batch in iter_frame_batches(path, clips, SamplerSpec(n_frames=16, max_side=None)):
                del batch
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak_bytes(250), peak_bytes(2000)
    frame_bytes = 64 * 48 * 3
    assert long < short * 1.3 + 50_000, (short, long)
    assert long < 200 * frame_bytes  # the 2000-frame video samples 1264 frames in all


def test_unsorted_clips_rejected(vids):
    info = probe(vids["h264.mp4"])
    clips = make_windows(info, 2.0, 0.5)
    with pytest.raises(InputError, match="sorted by start_s"):
        next(iter_frame_batches(vids["h264.mp4"], clips[::-1], SamplerSpec(n_frames=2)))
    # A generator is checked as it is consumed (one clip ahead of the decoder), so batches
    # well before the bad clip still arrive.
    lazy = iter([clips[3], clips[8], clips[0]])
    batches = iter_frame_batches(vids["h264.mp4"], lazy, SamplerSpec())
    assert next(batches).clip == clips[3]
    with pytest.raises(InputError, match="sorted by start_s"):
        next(batches)


def test_mixed_length_clips_from_a_generator(vids, refs):
    """Same starts, nested and long clips: later clips want frames before earlier clips'
    last frames, so the planner must look ahead (the decoder never goes back)."""
    spans_s = [(0, 10), (0, 2), (0.5, 0.6), (1, 3), (1, 15.9), (4, 5), (12, 16)]
    clips = [clip(a, b) for a, b in spans_s]
    spec = SamplerSpec(n_frames=None, fps=5.0, min_frames=2, max_frames=30, max_side=None)
    batches = list(iter_frame_batches(vids["h264.mp4"], (c for c in clips), spec))
    info = probe(vids["h264.mp4"])
    assert [b.clip for b in batches] == clips
    for b in batches:
        assert b.frame_idx == plan_frames(info, b.clip, spec)
        assert_exact(b.frames, b.frame_idx, refs["h264.mp4"])


# --- bad inputs ------------------------------------------------------------------------------


def one_line_error(path: Path, call=probe) -> str:
    with pytest.raises(VideoError) as err:
        call(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    assert "not found" in one_line_error(tmp_path / "nope.mp4")


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    assert "empty (0 bytes)" in one_line_error(path)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a shopping list, not a video\n" * 50)
    assert "cannot be opened" in one_line_error(path)


def test_directory(tmp_path):
    assert "not a file" in one_line_error(tmp_path)


def test_truncated_mp4_without_index(vids, tmp_path):
    data = vids["h264.mp4"].read_bytes()  # moov at the end: a cut loses the index
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 7 // 10])
    assert "truncated" in one_line_error(path)


def test_truncated_mp4_decodes_what_exists(vids, refs, tmp_path):
    data = vids["faststart.mp4"].read_bytes()  # moov first: a cut keeps the early frames
    path = tmp_path / "cut_fast.mp4"
    path.write_bytes(data[: len(data) * 7 // 10])
    info = probe(path)
    assert 30 < info.frame_count < 100
    last = info.frame_count - 1
    frames, _ = read_frames(path, [0, last // 2, last])
    assert_exact(frames, [0, last // 2, last], refs["faststart.mp4"])
    msg = one_line_error(path, lambda p: read_frames(p, [last, 95]))
    assert "declares 100 frames" in msg and "truncated" in msg
    # A seek past the decodable end lands on an earlier frame: that must be an error.
    claimed = dataclasses.replace(info, frame_count=100)
    reader = video._Reader(video._Source(claimed, exact_seek=True, t0_s=0.0, declared=100), None)
    with pytest.raises(VideoError, match="cut_fast.mp4.*truncated"):
        reader.read(95)
    reader.close()
    batches = list(iter_frame_batches(path, make_windows(info, 1.0, 0.5), SamplerSpec(n_frames=4)))
    assert batches[-1].clip.end_s == pytest.approx(info.duration_s)
    for b in batches:
        assert [frame_number(f) for f in b.frames] == list(b.frame_idx)


def test_zeroed_frames_have_no_decodable_frames(vids, tmp_path):
    data = bytearray(vids["faststart.mp4"].read_bytes())
    at = data.find(b"mdat")
    data[at + 4 :] = bytes(len(data) - at - 4)
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    assert "0 decodable frames" in one_line_error(path)


def test_out_of_range_index(vids):
    msg = one_line_error(vids["mjpg.avi"], lambda p: read_frames(p, [0, 60]))
    assert "0..59" in msg


# --- real clips ------------------------------------------------------------------------------


def shared_clips() -> list[str]:
    manifest = SHARED_VIDEOS / "manifest.csv"
    if manifest.is_file():
        with manifest.open() as f:
            return [row["path"] for row in csv.DictReader(f)]
    if SHARED_VIDEOS.is_dir():
        return sorted(p.name for p in SHARED_VIDEOS.iterdir() if p.suffix in {".mp4", ".avi"})
    return []


@pytest.mark.skipif(not SHARED_VIDEOS.is_dir(), reason=f"real clips not found at {SHARED_VIDEOS}")
@pytest.mark.parametrize("name", shared_clips() or ["<none>"])
def test_real_clips(name):
    path = SHARED_VIDEOS / name
    ref = plain_decode(path)
    info = probe(path)
    assert info.frame_count == len(ref) and info.fps > 0
    assert (info.height, info.width) == ref[0].shape[:2]
    spec = SamplerSpec(n_frames=8, max_side=224)
    clips = make_windows(info, 2.0, 0.5)
    batches = list(iter_frame_batches(path, clips, spec))
    assert len(batches) == len(clips)
    for b in batches:
        assert b.frames.shape[0] == 8 and max(b.frames.shape[1:3]) == 224
        for k, i in enumerate(b.frame_idx):
            w, h = b.frames.shape[2], b.frames.shape[1]
            assert np.array_equal(
                b.frames[k], cv2.resize(ref[i], (w, h), interpolation=cv2.INTER_AREA)
            )
    sparse = [0, len(ref) // 2, len(ref) - 1]
    frames, _ = read_frames(path, sparse)
    assert_exact(frames, sparse, ref)


def test_make_windows_adds_a_tail_only_for_uncovered_frames():
    ntsc = 30000 / 1001
    # 300 frames = 10.01 s: the last frame starts at 9.977 s, inside the 8-10 s window.
    assert spans(make_windows(info_of(300, fps=ntsc), 2.0, 0.5))[-1] == (8, 10)
    # 301 frames: frame 300 starts at 10.01 s, after every regular window -> a tail window.
    last = make_windows(info_of(301, fps=ntsc), 2.0, 0.5)[-1]
    assert last.end_s == pytest.approx(301 / ntsc) and last.start_s == pytest.approx(301 / ntsc - 2)


def test_a_large_batch_is_probed_once_per_video(tmp_path, monkeypatch):
    """The runner probes every video, then again as it decodes each: a batch larger than a
    small probe cache would be probed (VFR: decoded whole) again and again."""
    paths = [
        write_test_video(tmp_path / f"v{i}.avi", n_frames=2, size=(16, 16), noise=False)
        for i in range(150)
    ]
    opened = []
    real = video._inspect_uncached
    monkeypatch.setattr(video, "_inspect_uncached", lambda p: opened.append(p) or real(p))
    for _ in range(2):
        for p in paths:
            video.probe(p)
    assert len(opened) == len(paths)


def test_a_damaged_stretch_fails_only_the_windows_that_need_it(tmp_path):
    """3 KB of garbage mid-file: the windows over it fail, those after it still decode
    (by seeking past the damage), instead of the whole rest of the video being lost."""
    path = damage_middle(
        write_test_video(tmp_path / "v.mp4", n_frames=500, codec="h264", gop=25, bframes=0)
    )
    clips = make_windows(probe(path), 2.0, 0.5)
    spec = SamplerSpec(n_frames=4)
    with pytest.raises(VideoError, match="corrupt"):  # without on_error: stops at the damage
        list(iter_frame_batches(path, clips, spec))
    failed: list[tuple[str, str]] = []
    batches = list(
        iter_frame_batches(
            path, clips, spec, on_error=lambda clip, exc: failed.append((clip.clip_id, str(exc)))
        )
    )
    assert 0 < len(failed) <= 4 and all("corrupt" in why for _, why in failed)
    assert len(batches) + len(failed) == len(clips)
    assert batches[-1].clip == clips[-1]  # the video's end decodes
    for b in batches:
        assert [frame_number(f) for f in b.frames] == list(b.frame_idx)
