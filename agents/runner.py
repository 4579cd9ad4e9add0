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

``run_clips_together`` runs several strategies side by side, video by video, each into its
own out dir exactly as ``run_clips`` would (resume, run.json, predictions), while one
decoding pass per video feeds them all: each window is decoded once and every run puts the
same resized frames through its own perturbation steps (``FrameStore.adopt``). It is for a
robustness sweep's variants of one strategy (eval/runner.py groups them; agents/sweep.py says
why side by side). Memory stays that of the windows in flight, per run, whatever the length
of the videos. run.json's stats say where frames came from: ``windows_decoded`` and
``decode_ms`` (this run's decoding pass: the first run wanting a window counts it),
``windows_decode_shared`` (taken from a pass another run counted) and ``pixel_steps_ms``
(this run's own steps on shared frames).
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from vara.agents.context import Context
from vara.agents.frame_share import label_videos
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

__all__ = ["RunAborted", "run_clips", "run_clips_together", "run_videos"]

log = logging.getLogger(__name__)


class RunAborted(EndpointUnreachable):
    """A model server stopped answering mid-run: what finished is saved (``summary``,
    run.json with status "aborted"), and a re-run of the same command resumes."""

    def __init__(self, cause: EndpointUnreachable, summary: RunSummary):
        super().__init__(str(cause))
        self.summary = summary


class _Run:
    """The window loop of one session: a graph per window, its prediction or failure.

    Per video: ``open_video`` submits the windows needing no pixels and says which need
    decoding, ``submit`` takes their batches as a decoding pass makes them, ``close_video``
    waits for the last ones."""

    def __init__(self, ctx: Context, spec: GraphSpec, rundir: RunDir, done: set[str], bar: tqdm):
        self.ctx = ctx
        self.spec = spec
        self.graph = spec.build()
        self.writer = JsonlWriter(rundir.predictions)
        self.done = done
        self.bar = bar
        self.failures: list[Failure] = []
        self.n_predicted = 0
        self.abort: EndpointUnreachable | None = None
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
            self.writer.append(pred.to_dict())
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


class _Session:
    """One strategy's run into its out dir: checks first (a refused run writes nothing),
    then ``start``, the window loop's ``_Run``, then ``finish`` (timelines, run.json)."""

    def __init__(
        self,
        groups: Sequence[tuple[str, Sequence[Clip]]],
        strategy: StrategyConfig,
        labelset: LabelSet,
        out_dir: str | Path,
        *,
        prompts_dir: str | None,
        models: ModelPool,
        cache: CaptionCache | None,
        failures: Sequence[Failure],
    ):
        self.t0 = time.perf_counter()
        self.out = Path(out_dir)
        self.spec = graph_spec(strategy.graph)
        self.ctx = _context(strategy, self.spec, labelset, prompts_dir, models, cache)
        self.failures = list(failures)
        self.plans = plan_videos(groups, self.failures)
        self.n_videos = len({p for p, _ in groups} | {f.item for f in self.failures})
        self.rundir = RunDir(self.out, fingerprint(self.ctx))  # refuses, loading nothing
        self.total = sum(len(p.clips) for p in self.plans)
        self.todo = self.total  # windows not in predictions.jsonl yet (known at start)
        self.run: _Run | None = None

    def start(
        self, on_start: Callable[[Path], None] | None, progress: bool, position: int | None
    ) -> _Run:
        self.out.mkdir(parents=True, exist_ok=True)  # the checks passed: a refused run leaves none
        done = self.rundir.done()
        self.todo = sum(1 for p in self.plans for c in p.clips if c.clip_id not in done)
        if self.todo:  # a finished run re-run loads nothing
            Models(self.ctx.vlm, self.ctx.llm, self.ctx.scorer).load()
        if on_start is not None:
            on_start(self.out)
        self.rundir.start()
        bar = _bar(self.ctx.strategy.name, self.total, self.todo, progress, position)
        self.run = _Run(self.ctx, self.spec, self.rundir, done, bar)
        self.run.failures.extend(self.failures)
        return self.run

    def finish(self, status: str) -> RunSummary:
        run = self.run
        run.bar.close()
        run.writer.close()
        summary = RunSummary(
            out_dir=str(self.out),
            n_videos=self.n_videos,
            n_windows=self.total,
            n_predicted=run.n_predicted,
            n_resumed=self.total - self.todo,
            failures=tuple(run.failures),
            wall_s=round(time.perf_counter() - self.t0, 3),
            stats=self.ctx.stats.snapshot(),
        )
        self.rundir.finish(self.plans, summary, self.ctx, status)
        return summary


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
    [summary] = run_clips_together(
        groups,
        [(strategy, out_dir)],
        labelset,
        prompts_dir=prompts_dir,
        progress=progress,
        models=models,
        cache=cache,
        failures=failures,
        on_start=None if on_start is None else lambda _out: on_start(),
    )
    return summary


def run_clips_together(
    groups: Sequence[tuple[str, Sequence[Clip]]],
    runs: Sequence[tuple[StrategyConfig, str | Path]],
    labelset: LabelSet,
    *,
    prompts_dir: str | None = None,
    progress: bool = True,
    models: ModelPool | None = None,
    cache: CaptionCache | None = None,
    failures: Sequence[Failure] = (),
    on_start: Callable[[Path], None] | None = None,
) -> list[RunSummary]:
    """Label the given clips with each (strategy, out dir) of ``runs``, side by side,
    decoding each window once for all of them (see the module docstring); their summaries.

    The strategies must sample alike (frames, rate, max side): only their pixel steps may
    differ. The options are ``run_clips``'s, but ``on_start(out_dir)`` is called for each run
    once every run's out dir checks pass. A server lost mid-run ends every run (each saved,
    resumable) with ``RunAborted``.
    """
    pool = models or ModelPool()
    sessions = [
        _Session(
            groups,
            strategy,
            labelset,
            out,
            prompts_dir=prompts_dir,
            models=pool,
            cache=cache,
            failures=failures,
        )
        for strategy, out in runs
    ]
    stores = [s.ctx.frames for s in sessions]
    if not all(stores[0].shares_decoding(other) for other in stores):
        names = ", ".join(s.ctx.strategy.name for s in sessions)
        raise ValueError(f"run_clips_together: {names} sample differently; run them apart")
    started: list[_Session] = []
    finished = False
    try:
        for i, session in enumerate(sessions):
            where = None if len(sessions) == 1 else i  # one bar per run, stacked
            session.start(on_start, progress, where)
            started.append(session)
        label_videos([s.run for s in sessions], sessions[0].plans)
        finished = True
    finally:
        summaries = [s.finish(s.run.status if finished else "interrupted") for s in started]
    for session, summary in zip(sessions, summaries, strict=True):
        if session.run.abort:
            raise RunAborted(session.run.abort, summary) from session.run.abort
    return summaries


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


def _bar(name: str, total: int, todo: int, progress: bool, position: int | None) -> tqdm:
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
        position=position,
        mininterval=0.1 if on_terminal else 30,
    )
