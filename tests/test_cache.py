"""The caption cache: what changes the key, what survives a reopen or a rename."""

from __future__ import annotations

import shutil

import pytest

from vara.errors import InputError
from vara.tools.cache import CachedCaption, CaptionCache, file_sha256

BASE = dict(
    frame_idx=(3, 9),
    pixels="resize(max_side=448)",
    model="m",
    prompt_sha256="p1",
    rendered="describe",
    generation={"max_tokens": 128},
)


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"not really a video, but bytes to hash" * 100)
    return path


def test_hit_after_reopen_and_after_a_rename(tmp_path, video):
    db = tmp_path / "c.sqlite"
    cache = CaptionCache(db)
    key = cache.key(video=video, **BASE)
    assert cache.get(key) is None
    cache.put(key, CachedCaption("a hand holds a mask", "m", 0.4))
    cache.close()
    again = CaptionCache(db)
    assert again.get(again.key(video=video, **BASE)) == CachedCaption(
        "a hand holds a mask", "m", 0.4
    )
    moved = tmp_path / "sub" / "renamed.mp4"
    moved.parent.mkdir()
    shutil.move(video, moved)  # same bytes, new path: the content hash still matches
    assert again.get(again.key(video=moved, **BASE)) is not None
    assert len(again) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"frame_idx": (3, 10)},
        {"pixels": "resize(max_side=224)"},
        {"model": "other"},
        {"prompt_sha256": "p2"},
        {"rendered": "describe briefly"},
        {"generation": {"max_tokens": 64}},
    ],
)
def test_every_input_of_a_caption_changes_the_key(tmp_path, video, change):
    cache = CaptionCache(tmp_path / "c.sqlite")
    cache.put(cache.key(video=video, **BASE), CachedCaption("x", "m", 0.1))
    assert cache.get(cache.key(video=video, **{**BASE, **change})) is None


def test_edited_video_bytes_miss(tmp_path, video):
    cache = CaptionCache(tmp_path / "c.sqlite")
    cache.put(cache.key(video=video, **BASE), CachedCaption("x", "m", 0.1))
    video.write_bytes(video.read_bytes() + b"more")
    assert cache.get(cache.key(video=video, **BASE)) is None
    assert file_sha256(video) == cache.video_sha256(video)


def test_unusable_cache_path_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="--no-cache"):
        CaptionCache(blocker / "c.sqlite")


def test_a_key_being_made_is_waited_for_not_made_twice(tmp_path):
    import threading
    import time

    cache = CaptionCache(tmp_path / "c.sqlite")
    calls: list[str] = []
    started = threading.Event()

    def slow() -> CachedCaption:
        calls.append("made")
        started.set()
        time.sleep(0.2)
        return CachedCaption("text", "m", 0.2)

    got = []
    first = threading.Thread(target=lambda: got.append(cache.get_or_make("k", slow)))
    first.start()
    started.wait()
    got.append(cache.get_or_make("k", slow))  # while the first is still making it
    first.join()
    assert calls == ["made"]
    assert sorted(cached for _, cached in got) == [False, True]

    def fails() -> CachedCaption:
        started.set()
        time.sleep(0.1)
        raise RuntimeError("server down")

    started.clear()
    errors = []
    maker = threading.Thread(target=lambda: errors.append(_raises(cache, "k2", fails)))
    maker.start()
    started.wait()
    # The maker fails: the waiter makes it itself rather than waiting forever.
    assert cache.get_or_make("k2", lambda: CachedCaption("ok", "m", 0.0)) == (
        CachedCaption("ok", "m", 0.0),
        False,
    )
    maker.join()
    assert errors == ["server down"]


def _raises(cache, key, make) -> str | None:
    try:
        cache.get_or_make(key, make)
    except RuntimeError as exc:
        return str(exc)
    return None


def test_a_video_is_hashed_once_by_windows_in_flight_together(tmp_path, video, monkeypatch):
    import threading
    import time

    from vara.tools import cache as cache_module

    hashed = []

    def slow_sha256(path, chunk=1 << 20):
        hashed.append(path)
        time.sleep(0.1)  # a large file
        return file_sha256(path, chunk)

    monkeypatch.setattr(cache_module, "file_sha256", slow_sha256)
    cache = CaptionCache(tmp_path / "c.sqlite")
    got = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.video_sha256(video))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hashed) == 1 and len(set(got)) == 1 and len(got) == 4
