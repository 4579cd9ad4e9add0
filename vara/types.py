"""Data that crosses module boundaries: frozen dataclasses with ``to_dict``/``from_dict``.

Units live in names: ``_s`` seconds, ``_idx`` frame index. Frames are RGB uint8 (T, H, W, 3).
Sequences are tuples so instances stay immutable; ``to_dict`` yields JSON-ready values and
``from_dict(to_dict(x)) == x`` for every type here (FrameBatch compares pixels too).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vara.serial import Record as _Record

__all__ = [
    "Label",
    "LabelSet",
    "Clip",
    "VideoInfo",
    "SamplerSpec",
    "PixelStep",
    "PixelSpec",
    "FramePlan",
    "FrameBatch",
    "Caption",
    "ClassScores",
    "Evidence",
    "PromptRef",
    "Prediction",
    "TimelineEvent",
    "Timeline",
    "Failure",
]


@dataclass(frozen=True)
class Label(_Record):
    name: str
    description: str
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet(_Record):
    """A closed set of activity labels plus the domain rules a prompt states and a validator checks.

    ``exclusive`` lists groups of labels that cannot be present in the same window
    (e.g. ventilation and suction); ``rules`` are the same facts in words, for prompts.
    """

    name: str
    labels: tuple[Label, ...]
    multi_label: bool
    rules: tuple[str, ...] = ()
    exclusive: tuple[tuple[str, ...], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        names = [lab.name for lab in self.labels]
        if not names:
            raise ValueError(f"label set {self.name!r} has no labels")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"label set {self.name!r} repeats labels {dupes}")
        for group in self.exclusive:
            missing = [g for g in group if g not in names]
            if missing:
                raise ValueError(
                    f"label set {self.name!r}: exclusive group {list(group)} names unknown "
                    f"labels {missing}; known: {names}"
                )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lab.name for lab in self.labels)


@dataclass(frozen=True)
class Clip(_Record):
    """A time window of one video. ``labels`` is ground truth (eval only), None when unknown.

    ``group``: videos that must stay on one side of a train/validation split (UCF-101's
    ``gXX``: one actor and scene; a Kinetics YouTube id); "" = the video is its own group.
    ``to_dict`` leaves an empty group out, so records written before it existed still match.
    """

    clip_id: str
    video: str
    start_s: float
    end_s: float
    labels: tuple[str, ...] | None = None
    group: str = ""

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s >= 0:
            raise ValueError(
                f"clip {self.clip_id!r}: need 0 <= start_s < end_s, "
                f"got {self.start_s}, {self.end_s}"
            )

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if not self.group:
            del out["group"]
        return out


@dataclass(frozen=True)
class VideoInfo(_Record):
    """What ``tools.video.probe`` reads from a container. Width/height are after rotation.

    ``frame_times_s``: where frame times are not ``i / fps`` (variable-frame-rate video, GIF),
    the presentation time of every frame, from the first (strictly increasing); windows and
    frame plans then follow it. None for constant-frame-rate video; ``to_dict`` leaves a None
    out, so records written before it existed still match.
    """

    path: str
    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    rotation_deg: int = 0
    codec: str = ""
    frame_times_s: tuple[float, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        t = self.frame_times_s
        if t is not None and len(t) != self.frame_count:
            raise ValueError(
                f"VideoInfo {self.path!r}: {len(t)} frame times for {self.frame_count} frames"
            )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.frame_times_s is None:
            del out["frame_times_s"]
        return out


@dataclass(frozen=True)
class SamplerSpec(_Record):
    """How frames are picked inside a window.

    Either ``n_frames`` uniformly spread over the window, or ``fps`` frames per second bounded
    by ``min_frames``/``max_frames``. ``max_side`` resizes so the longer side is at most that
    many pixels, keeping aspect (None keeps the decoded size).
    """

    n_frames: int | None = 8
    fps: float | None = None
    min_frames: int = 1
    max_frames: int = 64
    max_side: int | None = 448

    def __post_init__(self) -> None:
        if (self.n_frames is None) == (self.fps is None):
            raise ValueError("SamplerSpec: give exactly one of n_frames or fps")
        if self.n_frames is not None and self.n_frames < 1:
            raise ValueError(f"SamplerSpec: n_frames must be >= 1, got {self.n_frames}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"SamplerSpec: fps must be > 0, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"SamplerSpec: need 1 <= min_frames <= max_frames, got "
                f"{self.min_frames}, {self.max_frames}"
            )
        if self.max_side is not None and self.max_side < 16:
            raise ValueError(f"SamplerSpec: max_side must be >= 16 or None, got {self.max_side}")


@dataclass(frozen=True)
class PixelStep(_Record):
    """One named, parameterised pixel transform: ``resize(max_side=448)``, ``blur(sigma=2)``.

    ``params`` are (name, value) pairs, kept sorted by name so that equal steps compare and
    print alike; values are JSON scalars. ``tools.pixels`` holds what each name does.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(sorted((str(k), v) for k, v in self.params)))

    @property
    def canonical(self) -> str:
        args = ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in self.params)
        return f"{self.name}({args})"


@dataclass(frozen=True)
class PixelSpec(_Record):
    """Everything done to a decoded RGB frame before a model sees it, as ordered steps.

    The first step is always ``resize`` (the sampler's ``max_side``); perturbations follow.
    ``canonical`` names the spec whole; ``sha256`` is its short hash, which the caption cache
    key, the resume fingerprint and every Prediction carry, so other pixels never share
    captions or predictions with these.
    """

    steps: tuple[PixelStep, ...]

    def __post_init__(self) -> None:
        if not self.steps or self.steps[0].name != "resize":
            raise ValueError(f"PixelSpec: the first step must be resize, got {self.canonical!r}")

    @classmethod
    def resize_only(cls, max_side: int | None) -> PixelSpec:
        return cls((PixelStep("resize", (("max_side", max_side),)),))

    @property
    def max_side(self) -> int | None:
        return dict(self.steps[0].params).get("max_side")

    @property
    def canonical(self) -> str:
        return "|".join(step.canonical for step in self.steps)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:12]


def _default_pixels(record: Any) -> None:
    """FramePlan/FrameBatch: pixels default to the sampler's resize, and must agree with it."""
    if record.pixels is None:
        object.__setattr__(record, "pixels", PixelSpec.resize_only(record.sampler.max_side))
    elif record.pixels.max_side != record.sampler.max_side:
        raise ValueError(
            f"{type(record).__name__}: pixels resize to max_side {record.pixels.max_side} but "
            f"the sampler says {record.sampler.max_side}"
        )


@dataclass(frozen=True)
class FramePlan(_Record):
    """The frames a sampler takes from one clip, their timestamps and the pixel steps they
    will go through, before any decoding."""

    clip: Clip
    frame_idx: tuple[int, ...]
    timestamps_s: tuple[float, ...]
    sampler: SamplerSpec
    pixels: PixelSpec | None = None  # None: the sampler's resize only

    def __post_init__(self) -> None:
        if len(self.frame_idx) != len(self.timestamps_s):
            raise ValueError("FramePlan: frame_idx and timestamps_s differ in length")
        _default_pixels(self)


@dataclass(frozen=True, eq=False)
class FrameBatch(_Record):
    """Frames of one clip: RGB uint8 (T, H, W, 3) with their exact indices and timestamps,
    after the pixel steps ``pixels``."""

    clip: Clip
    frames: np.ndarray
    frame_idx: tuple[int, ...]
    timestamps_s: tuple[float, ...]
    sampler: SamplerSpec
    pixels: PixelSpec | None = None  # None: the sampler's resize only

    def __post_init__(self) -> None:
        _default_pixels(self)
        f = self.frames
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"FrameBatch: frames must be uint8 (T,H,W,3), got {f.dtype} {f.shape}")
        if not len(self.frame_idx) == len(self.timestamps_s) == f.shape[0]:
            raise ValueError("FrameBatch: frames, frame_idx and timestamps_s differ in length")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameBatch):
            return NotImplemented
        return (
            self.clip == other.clip
            and self.frame_idx == other.frame_idx
            and self.timestamps_s == other.timestamps_s
            and self.sampler == other.sampler
            and self.pixels == other.pixels
            and np.array_equal(self.frames, other.frames)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def plan(self) -> FramePlan:
        return FramePlan(self.clip, self.frame_idx, self.timestamps_s, self.sampler, self.pixels)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        arr = np.ascontiguousarray(self.frames)
        out["frames"] = {"shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameBatch:
        data = dict(data)
        raw = data.pop("frames")
        frames = np.frombuffer(base64.b64decode(raw["b64"]), dtype=np.uint8)
        return cls(
            clip=Clip.from_dict(data["clip"]),
            frames=frames.reshape(raw["shape"]).copy(),
            frame_idx=tuple(data["frame_idx"]),
            timestamps_s=tuple(data["timestamps_s"]),
            sampler=SamplerSpec.from_dict(data["sampler"]),
            pixels=PixelSpec.from_dict(data["pixels"]) if data.get("pixels") else None,
        )


@dataclass(frozen=True)
class Caption(_Record):
    clip_id: str
    text: str
    frame_idx: tuple[int, ...]
    timestamps_s: tuple[float, ...]
    model: str
    prompt_id: str
    prompt_hash: str
    latency_s: float
    cached: bool = False  # served from the caption cache (latency_s is the original request's)


@dataclass(frozen=True)
class ClassScores(_Record):
    labels: tuple[str, ...]
    probs: tuple[float, ...]
    thresholds: tuple[float, ...]
    adapter_id: str = ""


@dataclass(frozen=True)
class Evidence(_Record):
    """One thing a prediction rests on: ``ref`` is e.g. ``caption:1`` or ``t=2.40s``.

    ``verified``: the quote ``text`` was found in what ``ref`` says (True), was not (False),
    or cannot be checked: a frame's pixels, or text vara wrote itself (None). See
    ``tools/evidence.py``.
    """

    source: Literal["caption", "classifier", "frame", "vlm"]
    ref: str
    text: str
    verified: bool | None = None


@dataclass(frozen=True)
class PromptRef(_Record):
    """Provenance of a rendered prompt: id, version and the template file's content hash."""

    id: str
    version: int
    sha256: str


@dataclass(frozen=True)
class Prediction(_Record):
    """Labels for one window with what they rest on and where they came from.

    ``attempts`` counts model answers needed (2 = one re-ask); ``raw`` is the accepted
    answer's raw text and ``reask_errors`` the validator's message for each rejected one;
    ``models`` maps a role (``vlm``, ``llm``, ``scorer``) to a model id; ``pixels`` is the
    short hash of the pixel steps its frames went through (``PixelSpec.sha256``).
    """

    clip_id: str
    video: str
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    explanation: str
    strategy: str
    prompts: tuple[PromptRef, ...]
    models: dict[str, str]
    raw: str
    attempts: int = 1
    reask_errors: tuple[str, ...] = ()
    scores: ClassScores | None = None
    captions: tuple[Caption, ...] = ()
    latency_s: float = 0.0
    pixels: str = ""


@dataclass(frozen=True)
class TimelineEvent(_Record):
    label: str
    start_s: float
    end_s: float
    score: float | None = None
    n_windows: int = 1


@dataclass(frozen=True)
class Timeline(_Record):
    video: str
    duration_s: float
    events: tuple[TimelineEvent, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Failure(_Record):
    """Something that did not finish, kept so a run reports it instead of dying on it.

    ``item`` names the input (a video path or a clip id); ``stage`` where it failed;
    ``error`` the one-line message; ``raw`` any model text worth keeping.
    """

    item: str
    stage: str
    error: str
    raw: str = ""
