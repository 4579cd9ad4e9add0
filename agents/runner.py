"""Run a strategy over videos: windows -> graph -> predictions.jsonl, timelines, run.json.

Each video is probed and cut into windows (``agents.inputs``); its frames are decoded in one
pass (``FrameStore.stream``) and each window's graph runs in a thread pool
(``strategy.concurrency`` windows in flight, so server requests overlap). Windows whose VLM
outputs are all in the caption cache (a re-run after a reasoning-prompt edit) skip decoding:
they run on their FramePlan alone (the graph's ``GraphSpec.cache_check``). Predictions are
appended as they finish; a re-run into the same out dir skips windows already there, and an
out dir made by another configuration is refused (``agents.rundir``). A bad video or a window
whose answer never validates becomes a ``Failure`` row and the rest continue; only an
unreachable model server stops the run, because then nothing can finish.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.graphspec import GraphSpec
from vara.agents.inputs import plan_videos, window_videos
from vara.agents.models import ModelPool, Models
from vara.agents.registry import graph_spec
from vara.agents.rundir import RunDir, RunSummary, VideoPlan, fingerprint
from vara.agents.steps import failed_step
from vara.agents.strategies import strategy_prompts
from vara.agents.video_keys import assign_keys
from vara.config import StrategyConfig
from vara.errors import StructuredOutputError, VaraError, VideoError
from vara.records import JsonlWriter
from vara.tools.cache import CaptionCache
from vara.tools.pixels import pixel_spec
from vara.tools.vlm import EndpointUnreachable
from vara.types import Clip, Failure, FrameBatch, FramePlan, LabelSet, Prediction

__all__ = ["RunAborted", "run_clips", "run_videos"]

log = logging.getLogger(__name__)


class RunAborted(EndpointUnreachable):
    """A model server stopped answering mid-run: what finished is saved (``summary``,
    run.json with status "aborted"), and a re-run of the same command resumes."""

    def __init__(self, cause: EndpointUnreachable, summary: RunSummary):
        super().__init__(str(cause))
        self.summary = summary


class _Run:
    """The window loop of one session: a graph per window, its prediction or failure."""

    def __init__(self, ctx: Context, spec: GraphSpec, rundir: RunDir, done: set[str]):
        self.ctx = ctx
        self.spec = spec
        self.graph = spec.build()
        self.writer = JsonlWriter(rundir.predictions)
        self.done = done
        self.failures: list[Failure] = []
        self.n_predicted = 0
        self.abort: EndpointUnreachable | None = None

    def label(self, plans: Sequence[VideoPlan], bar: tqdm) -> str:
        """Every video in turn, until done or a server is gone; the run's status."""
        for plan in plans:
            if self.abort:
                break
            self.video(plan, bar)
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
            self.writer.append(pred.to_dict())
            self.n_predicted += 1

    def video(self, plan: VideoPlan, bar: tqdm) -> None:
        todo = [c for c in plan.clips if c.clip_id not in self.done]
        if not todo:
            return
        bar.set_description(f"vara {self.ctx.strategy.name} {Path(plan.path).name}", refresh=False)
        inflight: dict[Future, Clip] = {}
        workers = self.ctx.strategy.concurrency
        # Decoded windows wait in the pool's queue, so a worker that frees up starts the next
        # window at once instead of waiting for it to be decoded; memory stays bounded.
        queued = 2 * workers
        with ThreadPoolExecutor(max_workers=workers) as pool:

            def submit(item: FrameBatch | FramePlan) -> None:
                while len(inflight) >= queued:
                    self._drain(inflight, bar, FIRST_COMPLETED)
                if not self.abort:
                    self.ctx.frames.put(item)
                    inflight[pool.submit(self.window, item.clip)] = item.clip

            try:
                self._submit_all(plan.path, todo, submit, bar)
            except VideoError as exc:
                self.failures.append(Failure(plan.path, "decode", str(exc)))
            finally:
                self._drain(inflight, bar, ALL_COMPLETED)

    def _submit_all(
        self, path: str, todo: list[Clip], submit: Callable[[FrameBatch | FramePlan], None], bar
    ) -> None:
        """Windows needing no pixels first, then the others as one decoding pass makes them."""
        cached = self._cached_plans(path, todo)
        for plan in cached:
            submit(plan)
        skip = {p.clip.clip_id for p in cached}
        rest = [c for c in todo if c.clip_id not in skip]
        if not rest or self.abort:
            return
        for batch in self.ctx.frames.stream(path, rest, lambda c, e: self.undecodable(c, e, bar)):
            submit(batch)
            if self.abort:
                break

    def undecodable(self, clip: Clip, exc: VideoError, bar: tqdm) -> None:
        """A window whose frames do not decode (a damaged stretch): it fails, the rest go on."""
        self.failures.append(Failure(clip.clip_id, "decode", str(exc)))
        bar.update(1)

    def _cached_plans(self, path: str, clips: list[Clip]) -> list[FramePlan]:
        """Plans of the windows whose every VLM output is cached: they need no decoding."""
        check, ctx = self.spec.cache_check, self.ctx
        if check is None or ctx.cache is None:
            return []
        cached = [p for p in ctx.frames.plans(path, clips) if p is not None and check(ctx, p)]
        ctx.stats.add(windows_not_decoded=len(cached))
        return cached

    def _drain(self, inflight: dict[Future, Clip], bar: tqdm, when: str) -> None:
        if not inflight:
            return
        finished, _ = wait(list(inflight), return_when=when)
        for fut in finished:
            clip = inflight.pop(fut)
            self.finish(clip, fut)
            bar.update(1)
            bar.set_postfix(failed=len(self.failures), refresh=False)


def run_videos(
    videos: Sequence[str],
    strategy: StrategyConfig,
    labelset: LabelSet,
    out_dir: str | Path,
    **options: Any,
) -> RunSummary:
    """Label every window of ``videos``; ``options`` are those of ``run_clips``."""
    out = Path(out_dir)
    keys = assign_keys(videos, out)  # stable per out dir: see agents/video_keys.py
    progress = options.get("progress", True) and len(videos) > 1
    groups, failures = window_videos(videos, keys, strategy.windows, progress=progress)
    options.setdefault("on_start", lambda: keys.save(out))
    return run_clips(groups, strategy, labelset, out, failures=failures, **options)


def run_clips(
    groups: Sequence[tuple[str, Sequence[Clip]]],
    strategy: StrategyConfig,
    labelset: LabelSet,
    out_dir: str | Path,
    *,
    prompts_dir: str | None = None,
    progress: bool = True,
    models: ModelPool | None = None,
    cache: CaptionCache | None = None,
    failures: Sequence[Failure] = (),
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Label the given clips, grouped by video (any windows: from make_windows or a dataset).

    ``models`` is the pool to take the strategy's models from (``vara eval`` shares one over
    its strategies; given models replace the strategy's endpoints); ``cache`` reuses captions;
    ``failures`` are earlier ones to report with this run's; ``on_start`` is called once the
    out dir's checks pass, before the first window.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    spec = graph_spec(strategy.graph)
    ctx = _context(strategy, spec, labelset, prompts_dir, models or ModelPool(), cache)
    failures = list(failures)
    plans = plan_videos(groups, failures)
    rundir = RunDir(out, fingerprint(ctx))  # refuses another run's out dir, loading nothing
    out.mkdir(parents=True, exist_ok=True)  # once the checks passed: a refused run leaves none
    run = _Run(ctx, spec, rundir, rundir.done())
    run.failures.extend(failures)
    total = sum(len(p.clips) for p in plans)
    todo = sum(1 for p in plans for c in p.clips if c.clip_id not in run.done)
    if todo:  # a finished run re-run loads nothing
        Models(ctx.vlm, ctx.llm, ctx.scorer).load()
    if on_start is not None:
        on_start()
    rundir.start()
    status = "interrupted"  # what run.json says if an exception (e.g. Ctrl-C) ends the loop
    bar = _bar(strategy.name, total, todo, progress)
    try:
        status = run.label(plans, bar)
    finally:
        bar.close()
        run.writer.close()
        summary = RunSummary(
            out_dir=str(out),
            n_videos=len({p for p, _ in groups} | {f.item for f in failures}),
            n_windows=total,
            n_predicted=run.n_predicted,
            n_resumed=total - todo,
            failures=tuple(run.failures),
            wall_s=round(time.perf_counter() - t0, 3),
            stats=ctx.stats.snapshot(),
        )
        rundir.finish(plans, summary, ctx, status)
    if run.abort:
        raise RunAborted(run.abort, summary) from run.abort
    return summary


def _context(
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


def _bar(name: str, total: int, todo: int, progress: bool) -> tqdm:
    """A resumed run's bar starts at the windows already done; the rate and ETA count this
    session. Into a log file (nohup, a batch job), one refresh every 30 s, not a stream."""
    on_terminal = sys.stderr is not None and sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=total - todo,
        unit="win",
        desc=f"vara {name}",
        postfix=f"{total - todo} resumed" if todo < total else None,
        disable=not progress,
        mininterval=0.1 if on_terminal else 30,
    )
