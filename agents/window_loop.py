"""The window loop of one run, and the run's context: what labels the windows of each video.

``WindowLoop`` runs a strategy's graph per window in a thread pool and hands each prediction
to its sink as it finishes (the run's predictions.jsonl; on a Ray worker, the stream back to
the driver, ``agents.ray_labels``); a window that fails becomes a ``Failure`` and the rest go
on. ``build_context`` makes the run's one ``Context``. ``agents.runner`` drives both.
"""

from __future__ import annotations

import logging
import traceback
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm import tqdm

from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.graphspec import GraphSpec
from vara.agents.models import ModelPool
from vara.agents.rundir import VideoPlan
from vara.agents.steps import failed_step
from vara.agents.strategies import strategy_prompts
from vara.config import StrategyConfig
from vara.errors import StructuredOutputError, VaraError, VideoError
from vara.tools.cache import CaptionCache
from vara.tools.pixels import pixel_spec
from vara.tools.vlm import EndpointUnreachable
from vara.types import Clip, Failure, FrameBatch, FramePlan, LabelSet, Prediction

__all__ = ["Sink", "WindowLoop", "build_context"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where finished predictions go, one record each (``vara.records.JsonlWriter``)."""

    def append(self, record: dict[str, Any]) -> None: ...


class WindowLoop:
    """The window loop of one session: a graph per window, its prediction or failure.

    Per video: ``open_video`` submits the windows needing no pixels and says which need
    decoding, ``submit`` takes their batches as a decoding pass makes them, ``close_video``
    waits for the last ones."""

    def __init__(self, ctx: Context, spec: GraphSpec, sink: Sink, done: set[str], bar: tqdm):
        self.ctx = ctx
        self.spec = spec
        self.graph = spec.build()
        self.sink = sink
        self.done = done
        self.bar = bar
        self.failures: list[Failure] = []
        self.n_predicted = 0
        self.abort: EndpointUnreachable | None = None
        # per role and replica, when the requests were made in other processes (Ray workers);
        # None: this process's clients say (run.json's ``endpoints``)
        self.endpoints: dict[str, list[dict[str, Any]]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[Future, Clip] = {}

    @property
    def status(self) -> Literal["aborted", "complete_with_failures", "complete"]:
        if self.abort:
            return "aborted"
        return "complete_with_failures" if self.failures else "complete"

    def window(self, clip: Clip) -> Prediction:
        try:
            result = self.graph.invoke({"clip": clip}, context=self.ctx)
            return result["prediction"]
        finally:
            self.ctx.frames.drop(clip.clip_id)

    def finish(self, clip: Clip, fut: Future) -> None:
        try:
            pred = fut.result()
        except EndpointUnreachable as exc:
            self.abort = self.abort or exc
            self.failures.append(Failure(clip.clip_id, "model", str(exc)))
        except StructuredOutputError as exc:
            self.failures.append(Failure(clip.clip_id, "answer", str(exc), "\n---\n".join(exc.raw)))
        except VaraError as exc:  # named by the graph step that failed, e.g. "tokens: ..."
            step = failed_step(exc)
            message = f"{step}: {exc}" if step else str(exc)
            self.failures.append(Failure(clip.clip_id, "window", message))
        except Exception as exc:  # a bug must not cost the other windows; keep the trace
            log.error("window %s crashed:\n%s", clip.clip_id, traceback.format_exc())
            self.failures.append(Failure(clip.clip_id, "internal", f"{type(exc).__name__}: {exc}"))
        else:
            self.sink.append(pred.to_dict())
            self.n_predicted += 1

    def open_video(self, plan: VideoPlan) -> list[Clip]:
        """Start ``plan``'s windows not done yet: those needing no pixels now; returns the
        ones to decode (in ``plan``'s order), for ``submit``."""
        todo = [c for c in plan.clips if c.clip_id not in self.done]
        if not todo or self.abort:
            return []
        name = f"vara {self.ctx.strategy.name} {Path(plan.path).name}"
        self.bar.set_description(name, refresh=False)
        self._pool = ThreadPoolExecutor(max_workers=self.ctx.strategy.concurrency)
        try:
            cached = self._cached_plans(plan.path, todo)
        except VideoError as exc:
            self.failures.append(Failure(plan.path, "decode", str(exc)))
            return []
        for item in cached:
            self.submit(item)
        skip = {p.clip.clip_id for p in cached}
        return [] if self.abort else [c for c in todo if c.clip_id not in skip]

    def submit(self, item: FrameBatch | FramePlan) -> None:
        # Decoded windows wait in the pool's queue, so a worker that frees up starts the next
        # window at once instead of waiting for it to be decoded; memory stays bounded.
        while len(self._inflight) >= 2 * self.ctx.strategy.concurrency:
            self._drain(FIRST_COMPLETED)
        if not self.abort:
            self.ctx.frames.put(item)
            self._inflight[self._pool.submit(self.window, item.clip)] = item.clip

    def undecodable(self, clip: Clip, exc: VideoError) -> None:
        """A window whose frames do not decode (a damaged stretch): it fails, the rest go on."""
        self.failures.append(Failure(clip.clip_id, "decode", str(exc)))
        self.bar.update(1)

    def close_video(self) -> None:
        """Wait for the video's windows in flight."""
        if self._pool is None:
            return
        try:
            self._drain(ALL_COMPLETED)
        finally:
            self._pool.shutdown()
            self._pool = None

    def _cached_plans(self, path: str, clips: list[Clip]) -> list[FramePlan]:
        """Plans of the windows whose every VLM output is cached: they need no decoding."""
        check, ctx = self.spec.cache_check, self.ctx
        if check is None or ctx.cache is None:
            return []
        cached = [p for p in ctx.frames.plans(path, clips) if p is not None and check(ctx, p)]
        ctx.stats.add(windows_not_decoded=len(cached))
        return cached

    def _drain(self, when: str) -> None:
        if not self._inflight:
            return
        finished, _ = wait(list(self._inflight), return_when=when)
        for fut in finished:
            clip = self._inflight.pop(fut)
            self.finish(clip, fut)
            self.bar.update(1)
            self.bar.set_postfix(failed=len(self.failures), refresh=False)


def build_context(
    strategy: StrategyConfig,
    spec: GraphSpec,
    labelset: LabelSet,
    prompts_dir: str | None,
    pool: ModelPool,
    cache: CaptionCache | None,
) -> Context:
    """The run's one Context: prompts checked, models chosen (not loaded), pixels set."""
    prompts = strategy_prompts(strategy, prompts_dir)
    models = pool.models_for(strategy, spec, labelset)
    pixels = pixel_spec(strategy.sampler.max_side, strategy.pixels.perturb)
    frames = FrameStore(strategy.sampler, pixels)
    return Context(
        strategy, labelset, prompts, models.vlm, models.llm, frames, cache, scorer=models.scorer
    )
