"""Training data shared by the recipes: manifest -> windows -> split by video -> frame cache.

Windows come from the same manifests and windowing rule as ``vara eval``
(``vara.tools.datasets.load_dataset``), so a model trains and is evaluated on identical
windows. The split is by video: every window of one video lands on the same side, so the
validation score is never inflated by near-duplicate neighbouring windows; the videos of one
group (``Clip.group``: UCF-101's gXX, one actor and scene) land on one side too. Frames are
decoded once, exactly as the classifier tool will see them at inference
(``tools.frame_batches`` with the same sampler), into one ``.npy`` per window under
``<out>/frames``; a re-run re-uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vara.errors import InputError, VideoError
from vara.records import write_json_atomic, write_jsonl_atomic
from vara.tools import frame_batches
from vara.tools.datasets import Dataset
from vara.types import Clip, LabelSet, SamplerSpec

__all__ = ["Split", "split_by_video", "targets", "cache_frames", "WindowFrames", "write_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    train: tuple[Clip, ...]
    val: tuple[Clip, ...]
    val_videos: tuple[str, ...]


def split_by_video(
    clips: Sequence[Clip],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    val_videos: Sequence[str] = (),
) -> Split:
    """Hold out whole groups of videos: the groups of ``val_videos`` (paths or file names) if
    given, else a seeded random ``val_fraction`` of the groups (at least one, and at least one
    left to train). A clip's group is ``Clip.group`` (UCF-101's gXX: the same actor and scene
    in several videos), else its video, so a split never puts one scene on both sides."""
    group_of = {c.video: c.group or c.video for c in clips}
    videos = sorted(group_of)
    groups = sorted(set(group_of.values()))
    if len(groups) < 2:
        what = "video(s)" if groups == videos else "group(s) of videos (UCF-101's gXX)"
        raise InputError(
            f"the manifest has {len(groups)} {what}; a split by video needs at least 2 "
            "(windows of one video, or videos of one group, on both sides would leak)"
        )
    if val_videos:
        held_groups = {group_of[v] for v in _named_videos(videos, val_videos)}
    else:
        if not 0 < val_fraction < 1:
            raise InputError(f"split.val_fraction must be in (0, 1), got {val_fraction}")
        order = groups[:]
        random.Random(seed).shuffle(order)
        n_val = min(len(groups) - 1, max(1, round(val_fraction * len(groups))))
        held_groups = set(order[:n_val])
    if len(held_groups) == len(groups):
        raise InputError("split.val_videos holds every video: nothing left to train on")
    held = [v for v in videos if group_of[v] in held_groups]
    if val_videos and len(held) > len(set(val_videos)):
        log.info("split.val_videos: held out %d videos, the whole groups of those named", len(held))
    is_val = set(held)
    return Split(
        train=tuple(c for c in clips if c.video not in is_val),
        val=tuple(c for c in clips if c.video in is_val),
        val_videos=tuple(held),
    )


def _named_videos(videos: Sequence[str], names: Sequence[str]) -> list[str]:
    """The videos ``split.val_videos`` names (by path or file name); raises on unknown names."""
    wanted = set(names)
    held = [v for v in videos if v in wanted or Path(v).name in wanted]
    found = {Path(v).name for v in held} | set(held)
    unknown = sorted(w for w in wanted if w not in found)
    if unknown:
        raise InputError(f"split.val_videos {unknown} are not videos of the manifest")
    return held


def targets(clips: Sequence[Clip], labelset: LabelSet) -> np.ndarray:
    """(N, C) 0/1 float32 for multi-label sets, (N,) int64 class indices for single-label."""
    index = {name: i for i, name in enumerate(labelset.names)}
    if labelset.multi_label:
        y = np.zeros((len(clips), len(index)), np.float32)
        for i, c in enumerate(clips):
            y[i, [index[lab] for lab in c.labels]] = 1.0
        return y
    return np.array([index[c.labels[0]] for c in clips], np.int64)


def _window_file(root: Path, clip: Clip, sampler: SamplerSpec) -> Path:
    """One file per window and sampler; a video replaced under the same path (another size or
    modification time) gets new files, since a frame cache may be shared by many runs."""
    try:
        st = os.stat(clip.video)
        version = [st.st_size, st.st_mtime_ns]
    except OSError:  # decoding names the missing video
        version = None
    key = json.dumps(
        [clip.video, version, clip.start_s, clip.end_s, sampler.to_dict()], sort_keys=True
    )
    return root / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"


def cache_frames(
    clips: Sequence[Clip], sampler: SamplerSpec, root: Path, *, progress: bool = True
) -> list[Path]:
    """Decode each clip's frames once (one pass per video) into ``root``; returns one .npy
    path per clip. Files already there are kept, so an interrupted run resumes."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, no permission, a full disk
        raise InputError(
            f"frame cache '{root}' cannot be made ({exc.strerror or exc}); set data.frames_dir "
            "to a writable directory"
        ) from None
    paths = [_window_file(root, c, sampler) for c in clips]
    todo: dict[str, list[tuple[Clip, Path]]] = {}
    for clip, path in zip(clips, paths, strict=True):
        if not path.exists():
            todo.setdefault(clip.video, []).append((clip, path))
    n = sum(len(v) for v in todo.values())
    with tqdm(total=n, unit="win", desc="decode frames", disable=not progress or n == 0) as bar:
        for src, items in todo.items():
            items.sort(key=lambda cp: (cp[0].start_s, cp[0].end_s))
            where = {c.clip_id: p for c, p in items}
            try:
                for batch in frame_batches.iter_frame_batches(src, [c for c, _ in items], sampler):
                    tmp = where[batch.clip.clip_id].with_suffix(".tmp.npy")
                    np.save(tmp, batch.frames)
                    tmp.replace(where[batch.clip.clip_id])
                    bar.update(1)
            except VideoError as exc:
                raise InputError(
                    f"training video '{src}' cannot be decoded ({exc}); fix or remove it "
                    "from the manifest (a training set must not silently lose windows)"
                ) from None
    return paths


class WindowFrames:
    """A torch-style dataset: (frames (T, H, W, 3) uint8, target) per cached window."""

    def __init__(self, paths: Sequence[Path], y: np.ndarray):
        if len(paths) != len(y):
            raise ValueError(f"{len(paths)} frame files for {len(y)} targets")
        self.paths = list(paths)
        self.y = y

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, Any]:
        return np.load(self.paths[i]), self.y[i]


def write_split(out: Path, dataset: Dataset, split: Split) -> None:
    """split.json (which videos hold out) and val.jsonl: the validation windows as a clip
    manifest, so ``vara eval OUT/val.jsonl`` scores exactly the held-out windows."""
    write_json_atomic(
        out / "split.json",
        {
            "manifest": dataset.path,
            "manifest_sha256": dataset.sha256,
            "train_videos": sorted({c.video for c in split.train}),
            "val_videos": list(split.val_videos),
            "n_train": len(split.train),
            "n_val": len(split.val),
        },
    )
    write_jsonl_atomic(
        out / "val.jsonl",
        (
            {"video": c.video, "start_s": c.start_s, "end_s": c.end_s, "labels": list(c.labels)}
            for c in split.val
        ),
    )
