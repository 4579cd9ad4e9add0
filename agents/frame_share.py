"""One decoding pass per video feeding several runs side by side: each window decoded once.

The variants of a robustness sweep (agents/sweep.py) differ only in the perturbation steps
after the resize, so they can all start from the same resized frames. ``label_videos`` runs
them together, video by video: every run submits the windows it needs no pixels for, then
one pass (``FrameStore.shared``) decodes the windows any run still needs, and each batch goes
to every run wanting it, through that run's own steps (``FrameStore.adopt``), into that run's
own window pool. The runs (``agents.window_loop.WindowLoop``) keep their own out dirs, resume sets,
cache keys and failures; only the decoding is shared.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from vara.agents.context import Context
from vara.agents.frames import FrameStore
from vara.agents.rundir import VideoPlan
from vara.errors import VideoError
from vara.tools.vlm import EndpointUnreachable
from vara.types import Clip, Failure, FrameBatch, FramePlan

__all__ = ["Taker", "label_videos"]


class Taker(Protocol):
    """A run's window loop as the decoding pass sees it (``agents.window_loop.WindowLoop``)."""

    ctx: Context
    abort: EndpointUnreachable | None
    failures: list[Failure]

    def open_video(self, plan: VideoPlan) -> list[Clip]:
        """Start the video's windows not done yet; the ones to decode, in plan order."""
        ...

    def submit(self, item: FrameBatch | FramePlan) -> None: ...

    def undecodable(self, clip: Clip, exc: VideoError) -> None: ...

    def close_video(self) -> None:
        """Wait for the video's windows in flight."""
        ...


def label_videos(runs: Sequence[Taker], plans: Sequence[VideoPlan]) -> None:
    """Every video in turn for every run, until done or every run's server is gone."""
    for plan in plans:
        live = [r for r in runs if not r.abort]
        if not live:
            return
        wants: dict[str, list[Taker]] = {}  # clip id -> the runs that need its frames
        opened: list[Taker] = []
        try:
            for run in live:
                opened.append(run)
                for clip in run.open_video(plan):
                    wants.setdefault(clip.clip_id, []).append(run)
            clips = [c for c in plan.clips if c.clip_id in wants]
            if clips:
                _decode_once(plan.path, clips, wants)
        finally:
            for run in opened:
                run.close_video()


def _decode_once(path: str, clips: list[Clip], wants: dict[str, list[Taker]]) -> None:
    """One decoding pass over ``path`` for ``clips``, each window handed to every run wanting
    it, through that run's own pixel steps.

    Counted in each run's stats: ``windows_decoded`` and ``decode_ms`` (decoding and resize;
    the pass's steps too where it decodes under the run's own pixels) by the first run
    wanting a window, ``windows_decode_shared`` by the others, and ``pixel_steps_ms`` by each
    run putting shared frames through its own steps. A sweep's figures are the sums over its
    variants."""
    takers = list(dict.fromkeys(run for runs in wants.values() for run in runs))
    source = FrameStore.shared([r.ctx.frames for r in takers])
    decoding = dict.fromkeys(takers, 0.0)  # seconds
    steps = {r: 0.0 for r in takers if r.ctx.frames.pixels != source.pixels}

    def undecodable(clip: Clip, exc: VideoError) -> None:
        for run in wants[clip.clip_id]:
            run.undecodable(clip, exc)

    try:
        t = time.perf_counter()
        for batch in source.stream(path, clips, undecodable):
            runs = [r for r in wants[batch.clip.clip_id] if not r.abort]
            if runs:
                decoding[runs[0]] += time.perf_counter() - t
                runs[0].ctx.stats.add(windows_decoded=1)
            for run in runs:
                t = time.perf_counter()
                item = run.ctx.frames.adopt(batch, path)
                if run in steps:
                    steps[run] += time.perf_counter() - t
                if run is not runs[0]:
                    run.ctx.stats.add(windows_decode_shared=1)
                run.submit(item)
            if all(r.abort for r in takers):
                break
            t = time.perf_counter()
    except VideoError as exc:
        for run in takers:
            run.failures.append(Failure(path, "decode", str(exc)))
    finally:
        for run in takers:
            run.ctx.stats.add(decode_ms=round(1000 * decoding[run]))
        for run, seconds in steps.items():
            run.ctx.stats.add(pixel_steps_ms=round(1000 * seconds))
