"""The frames of the windows in flight: the agents' one way to pixels.

Every frame a graph node, a tool or the runner uses comes through the run's ``FrameStore``,
which decodes with ``tools.frame_batches`` under the run's sampler and pixel steps (``PixelSpec``):
so every strategy sees the same pixels, and every cache key, plan and prediction names them.

The runner decodes a video in one pass (``stream``) and each window's batch waits in the
store; nodes ``get`` it by clip; the runner ``drop``s it when the window is done, so memory
holds only the windows in flight. A window whose VLM outputs all come from the caption cache
needs no pixels: the runner ``put``s only its FramePlan (``plan_all``), nodes read indices
and times through ``plan``, and ``get`` decodes its frames only if something asks for them
after all (as it does for a window nobody put, e.g. a graph invoked directly). Tools look at
parts of a window with a sampler of their own (``add_part``).

Runs side by side (a sweep's variants of one strategy, ``agents.runner``) share one
decoding pass: ``shared`` is the store that decodes for all of them, under their common
sampler and its resize alone unless their pixels agree, and each run ``adopt``s a batch,
putting those resized frames through its own perturbation steps (``tools.pixels.perturb``:
the same frames a decode under its own steps gives). Runs that sample differently (frame
count, rate, max side) decode apart: ``shares_decoding`` says which may share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from vara.errors import VideoError
from vara.tools import frame_batches
from vara.tools.pixels import perturb
from vara.types import Clip, FrameBatch, FramePlan, PixelSpec, SamplerSpec

__all__ = ["FrameStore"]


class FrameStore:
    def __init__(self, sampler: SamplerSpec, pixels: PixelSpec | None = None):
        self.sampler = sampler
        self.pixels = pixels or PixelSpec.resize_only(sampler.max_side)  # None: resize only
        self._items: dict[str, FrameBatch | FramePlan] = {}
        self._lock = threading.Lock()

    @property
    def decoded(self) -> PixelSpec:
        """What decoding alone makes of a frame (the sampler's resize): what runs share."""
        return PixelSpec(self.pixels.steps[:1])

    def shares_decoding(self, other: FrameStore) -> bool:
        """Whether ``other``'s windows come from the same decoded frames as this store's."""
        return self.sampler == other.sampler and self.decoded == other.decoded

    @classmethod
    def shared(cls, stores: Sequence[FrameStore]) -> FrameStore:
        """The store to decode once for ``stores`` (which must share decoding): under their
        own pixels when they all agree, so nobody perturbs again, else the resize alone."""
        first = stores[0]
        if not all(first.shares_decoding(s) for s in stores):
            raise ValueError("FrameStore.shared: the stores sample or resize differently")
        if all(s.pixels == first.pixels for s in stores):
            return first
        return cls(first.sampler, first.decoded)

    def adopt(self, batch: FrameBatch, path: str) -> FrameBatch:
        """``batch`` (from ``shared``'s decoding of video ``path``) as this store's frames."""
        if batch.pixels == self.pixels:
            return batch
        if batch.sampler != self.sampler:
            raise ValueError(f"FrameStore.adopt: {batch.sampler} is not {self.sampler}")
        return perturb(self.pixels, batch, path)

    def put(self, item: FrameBatch | FramePlan) -> None:
        with self._lock:
            self._items[item.clip.clip_id] = item

    def plan(self, clip: Clip) -> FramePlan:
        """The window's frame indices and times, without decoding where the video allows."""
        with self._lock:
            item = self._items.get(clip.clip_id)
        if isinstance(item, FramePlan):
            return item
        if item is None and (plan := self._plan(clip, self.sampler)):
            self.put(plan)
            return plan
        return self.get(clip).plan

    def plans(self, path: str, clips: Sequence[Clip]) -> list[FramePlan | None]:
        """The plans of ``clips`` of video ``path``, not stored; None where only decoding
        tells the frame times (a video whose frame times do not increase)."""
        return [self._plan(c, self.sampler) for c in clips]

    def get(self, clip: Clip) -> FrameBatch:
        with self._lock:
            item = self._items.get(clip.clip_id)
        if isinstance(item, FrameBatch):
            return item
        planned = item if isinstance(item, FramePlan) else None
        sampler = planned.sampler if planned else self.sampler
        batch = self._decode(clip, sampler, planned.pixels if planned else self.pixels)
        self.put(batch)
        return batch

    def add_part(self, part: Clip, n_frames: int) -> None:
        """Plan ``n_frames`` of a part of a window (decoding only where planning cannot)."""
        sampler = SamplerSpec(n_frames=n_frames, max_side=self.sampler.max_side)
        self.put(self._plan(part, sampler) or self._decode(part, sampler, self.pixels))

    def stream(
        self, path: str, clips: Sequence[Clip], on_error: Callable[[Clip, VideoError], None]
    ) -> Iterator[FrameBatch]:
        """One decoding pass over ``path`` for ``clips`` (sorted by start); a window whose
        frames do not decode goes to ``on_error`` and the others follow."""
        return frame_batches.iter_frame_batches(
            path, clips, self.sampler, pixels=self.pixels, on_error=on_error
        )

    def drop(self, clip_id: str) -> None:
        with self._lock:
            self._items.pop(clip_id, None)

    def _plan(self, clip: Clip, sampler: SamplerSpec) -> FramePlan | None:
        return frame_batches.frame_plan(clip.video, clip, sampler, self.pixels)

    @staticmethod
    def _decode(clip: Clip, sampler: SamplerSpec, pixels: PixelSpec) -> FrameBatch:
        return next(
            iter(frame_batches.iter_frame_batches(clip.video, [clip], sampler, pixels=pixels))
        )
