"""Graph state for one window. Holds references (clip, frame indices), never pixel arrays,
so a checkpointer can store it; nodes fetch frames through the context's FrameStore."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from vara.tools.reason import Answer
from vara.types import Caption, ClassScores, Clip, Prediction

Step = Literal["finalize", "answer", "give_up"]


class WindowInput(TypedDict):
    """What a caller passes in: just the window."""

    clip: Clip


class WindowState(TypedDict, total=False):
    clip: Clip
    frame_idx: tuple[int, ...]
    timestamps_s: tuple[float, ...]
    captions: list[Caption]
    sources: dict[str, str | None]  # what the answer may cite (caption:N, t=X.XXs, tool:N)
    # -> the text behind it, which its evidence quotes must come from (None: a frame's pixels)
    raws: list[str]  # every answer text, in order
    errors: list[str]  # the validator's message for each rejected answer
    step_errors: list[str]  # rejected answers of earlier structured steps (semantic tokens)
    raw: str  # the accepted answer's text (several, as JSON, for per-class judges)
    answer: Answer | None
    scores: ClassScores | None  # per-class scores where a strategy yields them
    tags: list[dict[str, Any]]  # semantic tokens, one dict per frame
    next: Step
    model_latency_s: float
    prediction: Prediction
