"""Run-scoped context injected into every node through ``Runtime[Context]``: the strategy,
label set, prompt templates, models, and the frame store."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from vara.config import StrategyConfig
from vara.prompts.loader import PromptTemplate
from vara.tools import video
from vara.tools.cache import CaptionCache
from vara.tools.chat import ChatModel
from vara.tools.classifier import Classifier
from vara.types import Clip, FrameBatch, FramePlan, LabelSet, PromptRef, SamplerSpec

__all__ = ["Context", "FrameStore", "RunStats"]


class FrameStore:
    """Frames of the windows in flight, keyed by clip id.

    The runner decodes a video in one pass and ``put``s each window's batch; nodes ``get``
    it by clip; the runner ``drop``s it when the window is done, so memory holds only the
    windows in flight. A window whose VLM outputs all come from the caption cache needs no
    pixels: the runner ``put``s only its FramePlan, nodes read indices and times through
    ``plan``, and ``get`` decodes its frames only if something asks for them after all (as
    it does for a window nobody put, e.g. a graph invoked directly).
    """

    def __init__(self, sampler: SamplerSpec):
        self._sampler = sampler
        self._items: dict[str, FrameBatch | FramePlan] = {}
        self._lock = threading.Lock()

    def put(self, item: FrameBatch | FramePlan) -> None:
        with self._lock:
            self._items[item.clip.clip_id] = item

    def plan(self, clip: Clip) -> FramePlan:
        """The window's frame indices and times, without decoding where the video allows."""
        with self._lock:
            item = self._items.get(clip.clip_id)
        if isinstance(item, FramePlan):
            return item
        if item is None and (plan := video.frame_plan(clip.video, clip, self._sampler)):
            self.put(plan)
            return plan
        return self.get(clip).plan

    def get(self, clip: Clip) -> FrameBatch:
        with self._lock:
            item = self._items.get(clip.clip_id)
        if isinstance(item, FrameBatch):
            return item
        sampler = item.sampler if isinstance(item, FramePlan) else self._sampler
        batch = next(iter(video.iter_frame_batches(clip.video, [clip], sampler)))
        self.put(batch)
        return batch

    def drop(self, clip_id: str) -> None:
        with self._lock:
            self._items.pop(clip_id, None)


class RunStats:
    """Thread-safe counters a run reports (e.g. caption_requests, caption_cache_hits)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True, eq=False)
class Context:
    strategy: StrategyConfig
    labelset: LabelSet
    prompts: dict[str, PromptTemplate]  # role (caption, answer, reask) -> template
    vlm: ChatModel | None  # None only for graphs that never ask a VLM (classifier)
    llm: ChatModel | None  # writes the structured answer; the VLM when none is set
    frames: FrameStore
    cache: CaptionCache | None = None  # VLM outputs on frames (captions, tokens) are reused
    stats: RunStats = field(default_factory=RunStats)
    classifier: Classifier | None = None  # strategy.classifier.run_dir, loaded once per run

    def model_ids(self) -> dict[str, str]:
        """Role -> model id of every model this run uses (provenance, resume fingerprint)."""
        ids = {role: m.model_id for role, m in (("vlm", self.vlm), ("llm", self.llm)) if m}
        if self.classifier is not None:
            ids["classifier"] = self.classifier.model_id
        return ids

    @property
    def prompt_refs(self) -> tuple[PromptRef, ...]:
        return tuple(p.ref for _, p in sorted(self.prompts.items()))
