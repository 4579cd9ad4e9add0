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

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vara.agents.frame_share import label_videos
from vara.agents.inputs import plan_videos, window_videos
from vara.agents.models import ModelPool, Models
from vara.agents.registry import graph_spec
from vara.agents.rundir import RunDir, RunSummary, fingerprint
from vara.agents.video_keys import assign_keys
from vara.agents.window_loop import WindowLoop, build_context
from vara.config import StrategyConfig
from vara.errors import ConfigError
from vara.records import JsonlWriter
from vara.tools.cache import CaptionCache
from vara.tools.vlm import EndpointUnreachable
from vara.types import Clip, Failure, LabelSet

__all__ = ["RunAborted", "run_clips", "run_clips_together", "run_videos"]


class RunAborted(EndpointUnreachable):
    """A model server stopped answering mid-run: what finished is saved (``summary``,
    run.json with status "aborted"), and a re-run of the same command resumes."""

    def __init__(self, cause: EndpointUnreachable, summary: RunSummary):
        super().__init__(str(cause))
        self.summary = summary


class _Session:
    """One strategy's run into its out dir: checks first (a refused run writes nothing),
    then ``start``, the window loop (``WindowLoop``), then ``finish`` (timelines, run.json)."""

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
        self.prompts_dir = prompts_dir
        self.ctx = build_context(strategy, self.spec, labelset, prompts_dir, models, cache)
        self.failures = list(failures)
        self.plans = plan_videos(groups, self.failures)
        self.n_videos = len({p for p, _ in groups} | {f.item for f in self.failures})
        self.rundir = RunDir(self.out, fingerprint(self.ctx))  # refuses, loading nothing
        self.total = sum(len(p.clips) for p in self.plans)
        self.todo = self.total  # windows not in predictions.jsonl yet (known at start)
        self.run: WindowLoop | None = None
        self.writer: JsonlWriter | None = None

    def start(
        self,
        on_start: Callable[[Path], None] | None,
        progress: bool,
        position: int | None,
        load: bool = True,
    ) -> WindowLoop:
        self.out.mkdir(parents=True, exist_ok=True)  # the checks passed: a refused run leaves none
        done = self.rundir.done()
        self.todo = sum(1 for p in self.plans for c in p.clips if c.clip_id not in done)
        if self.todo and load:  # a finished run re-run loads nothing; Ray workers load their own
            Models(self.ctx.vlm, self.ctx.llm, self.ctx.scorer).load()
        if on_start is not None:
            on_start(self.out)
        self.rundir.start()
        bar = _bar(self.ctx.strategy.name, self.total, self.todo, progress, position)
        self.writer = JsonlWriter(self.rundir.predictions)
        self.run = WindowLoop(self.ctx, self.spec, self.writer, done, bar)
        self.run.failures.extend(self.failures)
        return self.run

    def finish(self, status: str) -> RunSummary:
        run = self.run
        run.bar.close()
        self.writer.close()
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
        self.rundir.finish(self.plans, summary, self.ctx, status, run.endpoints)
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
    ray: str | None = None,
) -> RunSummary:
    """Label the given clips, grouped by video (any windows: from make_windows or a dataset).

    ``models`` is the pool to take the strategy's models from (``vara eval`` shares one over
    its strategies; given models replace the strategy's endpoints); ``cache`` reuses captions;
    ``failures`` are earlier ones to report with this run's; ``on_start`` is called once the
    out dir's checks pass, before the first window; ``ray`` as in ``run_clips_together``.
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
        ray=ray,
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
    ray: str | None = None,
) -> list[RunSummary]:
    """Label the given clips with each (strategy, out dir) of ``runs``, side by side,
    decoding each window once for all of them (see the module docstring); their summaries.

    The strategies must sample alike (frames, rate, max side): only their pixel steps may
    differ. The options are ``run_clips``'s, but ``on_start(out_dir)`` is called for each run
    once every run's out dir checks pass. A server lost mid-run ends every run (each saved,
    resumable) with ``RunAborted``. ``ray``: label on a Ray cluster at this address ("local":
    $RAY_ADDRESS or a new local cluster), the driver writing (``agents.ray_labels``).
    """
    pool = models or ModelPool()
    if ray is not None and pool.given:
        raise ConfigError(
            "a Ray run cannot use models given in this process: name them in the strategy "
            "(vlm.url / vlm.model) so each worker connects or loads its own"
        )
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
    with ExitStack() as stack:
        if ray is not None:  # connected once every out dir's checks passed, before any file
            from vara.agents.ray_labels import ray_cluster  # Ray is an optional extra

            stack.enter_context(ray_cluster(None if ray == "local" else ray))
        summaries = _label_all(sessions, on_start, progress, ray is not None)
    for session, summary in zip(sessions, summaries, strict=True):
        if session.run.abort:
            raise RunAborted(session.run.abort, summary) from session.run.abort
    return summaries


def _label_all(
    sessions: Sequence[_Session],
    on_start: Callable[[Path], None] | None,
    progress: bool,
    on_ray: bool,
) -> list[RunSummary]:
    """Start every session, label the videos (here or on Ray), finish each session."""
    started: list[_Session] = []
    finished = False
    try:
        for i, session in enumerate(sessions):
            where = None if len(sessions) == 1 else i  # one bar per run, stacked
            session.start(on_start, progress, where, load=not on_ray)
            started.append(session)
        if on_ray:
            _label_on_ray(sessions)
        else:
            label_videos([s.run for s in sessions], sessions[0].plans)
        finished = True
    finally:
        summaries = [s.finish(s.run.status if finished else "interrupted") for s in started]
    return summaries


def _label_on_ray(sessions: Sequence[_Session]) -> None:
    from vara.agents.ray_labels import RunSpec, label_on_ray

    specs = [
        RunSpec(
            s.ctx.strategy,
            s.ctx.labelset,
            s.prompts_dir,
            None if s.ctx.cache is None else str(s.ctx.cache.path),
        )
        for s in sessions
    ]
    label_on_ray([s.run for s in sessions], specs, sessions[0].plans)


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
