"""A synthetic labelled set whose classes differ visibly, for proving that a training recipe
learns (a random-weight model cannot show it on real data).

``write_two_class_set(root)`` writes short MJPG videos of two made-up activities and a clip
manifest + label set for them: ``red bars`` (a red, horizontal bar sweeping down a dark
frame) and ``blue bars`` (a blue, vertical bar sweeping right). Colour, orientation and
motion all differ, so a model that learns anything separates them; per-video jitter (bar
width, speed, start, grain) keeps two videos of a class from being copies. Videos are split
into ``train_*`` and ``val_*`` files so a recipe can hold out whole videos
(``split.val_videos``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["TWO_CLASSES", "write_two_class_set"]

TWO_CLASSES = ("red bars", "blue bars")

_LABELSET = """name: two-class-synthetic
description: Two made-up activities that differ visibly (vara.testing.synth_classes).
multi_label: false
labels:
  - name: red bars
    description: a red horizontal bar sweeps down a dark frame
  - name: blue bars
    description: a blue vertical bar sweeps right across a dark frame
"""


def _frame(cls: int, i: int, size: tuple[int, int], rng: np.random.Generator, jitter) -> np.ndarray:
    w, h = size
    width, speed, start = jitter
    frame = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)  # dark grain
    colour = (230, 30, 30) if cls == 0 else (30, 30, 230)
    if cls == 0:
        y = int(start + speed * i) % h
        frame[y : y + width] = colour
    else:
        x = int(start + speed * i) % w
        frame[:, x : x + width] = colour
    return frame


def _write(path: Path, cls: int, n_frames: int, fps: float, size, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    jitter = (int(rng.integers(6, 14)), float(rng.uniform(2, 5)), int(rng.integers(0, 40)))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n_frames):
        out.write(cv2.cvtColor(_frame(cls, i, size, rng, jitter), cv2.COLOR_RGB2BGR))
    out.release()


def write_two_class_set(
    root: str | Path,
    *,
    n_train: int = 4,
    n_val: int = 2,
    seconds: float = 2.0,
    fps: float = 8.0,
    size: tuple[int, int] = (64, 48),
) -> tuple[Path, Path]:
    """Write ``n_train`` + ``n_val`` videos per class under ``root``; returns (manifest,
    label set YAML). The manifest lists every video as one whole-video clip."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["video,labels"]
    seed = 0
    for side, n in (("train", n_train), ("val", n_val)):
        for cls, label in enumerate(TWO_CLASSES):
            for k in range(n):
                name = f"{side}_{label.replace(' ', '_')}_{k}.avi"
                _write(root / name, cls, round(seconds * fps), fps, size, seed)
                rows.append(f"{name},{label}")
                seed += 1
    manifest = root / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n")
    labels = root / "labels.yaml"
    labels.write_text(_LABELSET)
    return manifest, labels
