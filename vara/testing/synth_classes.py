"""A synthetic labelled set whose classes differ visibly, for proving that a training recipe
learns (a random-weight model cannot show it on real data).

``write_class_set(root, n_classes=2|3)`` writes short MJPG videos of made-up activities and
a clip manifest + label set for them: ``red bars`` (a red, horizontal bar sweeping down a
dark frame), ``blue bars`` (a blue, vertical bar sweeping right) and ``green squares`` (a
green square drifting diagonally). Colour, shape and motion all differ, so a model that
learns anything separates them; per-video jitter (size, speed, start, grain) keeps two
videos of a class from being copies. Videos are split into ``train_*`` and ``val_*`` files
so a recipe can hold out whole videos (``split.val_videos``). ``explanations=True`` adds an
``explanation`` column (what each class's videos show) for the generative recipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "CLASSES",
    "CLASS_TAGS",
    "TWO_CLASSES",
    "frame_tags",
    "write_class_set",
    "write_two_class_set",
]

# name -> what its videos show (label description and explanation)
CLASSES = {
    "red bars": "a red horizontal bar sweeps down a dark frame",
    "blue bars": "a blue vertical bar sweeps right across a dark frame",
    "green squares": "a green square drifts diagonally over a dark frame",
}
TWO_CLASSES = tuple(CLASSES)[:2]
# name -> one frame's semantic tokens (tokens.v1 fields) a tagger would give its videos:
# the class-defining tokens (actions, objects, motion) differ, the rest is shared
CLASS_TAGS = {
    "red bars": {"actions": ["sweeps down"], "objects": ["red bar"], "motion": "downward"},
    "blue bars": {"actions": ["sweeps right"], "objects": ["blue bar"], "motion": "rightward"},
    "green squares": {"actions": ["drifts"], "objects": ["green square"], "motion": "diagonal"},
}
_COLOURS = ((230, 30, 30), (30, 30, 230), (30, 210, 30))


def _labelset(names) -> str:
    lines = [
        f"name: {len(names)}-class-synthetic",
        "description: Made-up activities that differ visibly (vara.testing.synth_classes).",
        "multi_label: false",
        "labels:",
    ]
    for name in names:
        lines += [f"  - name: {name}", f"    description: {CLASSES[name]}"]
    return "\n".join(lines) + "\n"


def _frame(cls: int, i: int, size: tuple[int, int], rng: np.random.Generator, jitter) -> np.ndarray:
    w, h = size
    width, speed, start = jitter
    frame = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)  # dark grain
    colour, pos = _COLOURS[cls], int(start + speed * i)
    if cls == 0:
        frame[pos % h : pos % h + width] = colour
    elif cls == 1:
        frame[:, pos % w : pos % w + width] = colour
    else:
        y, x = pos % (h - 2 * width), pos % (w - 2 * width)
        frame[y : y + 2 * width, x : x + 2 * width] = colour
    return frame


def _write(path: Path, cls: int, n_frames: int, fps: float, size, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    jitter = (int(rng.integers(6, 14)), float(rng.uniform(2, 5)), int(rng.integers(0, 40)))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n_frames):
        out.write(cv2.cvtColor(_frame(cls, i, size, rng, jitter), cv2.COLOR_RGB2BGR))
    out.release()


def write_class_set(
    root: str | Path,
    *,
    n_classes: int = 2,
    n_train: int = 4,
    n_val: int = 2,
    seconds: float = 2.0,
    fps: float = 8.0,
    size: tuple[int, int] = (64, 48),
    explanations: bool = False,
) -> tuple[Path, Path]:
    """Write ``n_train`` + ``n_val`` videos per class under ``root``; returns (manifest,
    label set YAML). The manifest lists every video as one whole-video clip."""
    if n_classes not in (2, 3):
        raise ValueError(f"n_classes must be 2 or 3, got {n_classes}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = tuple(CLASSES)[:n_classes]
    rows = ["video,labels" + (",explanation" if explanations else "")]
    seed = 0
    for side, n in (("train", n_train), ("val", n_val)):
        for cls, label in enumerate(names):
            for k in range(n):
                name = f"{side}_{label.replace(' ', '_')}_{k}.avi"
                _write(root / name, cls, round(seconds * fps), fps, size, seed)
                rows.append(f"{name},{label}" + (f",{CLASSES[label]}" if explanations else ""))
                seed += 1
    manifest = root / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n")
    labels = root / "labels.yaml"
    labels.write_text(_labelset(names))
    return manifest, labels


def write_two_class_set(root: str | Path, **kwargs) -> tuple[Path, Path]:
    """``write_class_set`` with two classes (red bars, blue bars)."""
    return write_class_set(root, n_classes=2, **kwargs)


def frame_tags(label: str) -> dict:
    """One frame's full tag set (every tokens.v1 field) for a video of ``label``."""
    return {"actors": ["shape"], "body_parts": [], "tools": [], **CLASS_TAGS[label]}
