"""Label videos on a Ray cluster: workers run the window loop, the driver alone writes.

Why Ray Core and not Ray Data: a video's windows must be decoded in one pass on one worker
(``FrameStore.stream``), each window's graph is a few model requests to vLLM servers rather
than a batch of tensors, and the driver must see every window's answer as it finishes to
write predictions.jsonl exactly once per window id and to know, when a worker dies, which of
its windows are still to do. One streaming-generator task per (run, video) does exactly
that: the task rebuilds the run's ``Context`` on its worker (from the strategy, label set,
prompt folder and caption-cache path: nothing heavier travels), runs ``WindowLoop`` over the
video's windows still to do, and yields each prediction or failure as it finishes. Ray Data
would batch and reorder rows, and it cannot say which rows a dead worker had finished.

The driver (``label_on_ray``) keeps ``parallel`` tasks in flight (default: the cluster's
CPUs), one thread consuming each task's stream into one queue; the calling thread alone
appends to predictions.jsonl, dropping a window id it has already written. A task whose
worker dies (killed, out of memory, node lost) has the windows it had not yet sent redone
in a new task, up to ``attempts`` times; then each becomes a ``Failure`` (stage "worker").
An unreachable model server ends the run as it does locally (``RunAborted``, resumable).
Resume is the local run's: the driver sends only windows not in predictions.jsonl.

Workers reach the models the strategy names (``vlm.url`` replicas: give each node's
servers, or a load balancer's URL); a video path that is relative is read from the driver's
working directory, so across machines give absolute paths on a shared file system.
run.json's stats count ``ray_tasks``, ``ray_tasks_lost`` and ``ray_duplicates_dropped`` (the
last two where any happened), and
its ``endpoints`` merge the workers' per-replica counters (``merge_endpoint_reports``).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from tqdm import tqdm

from vara.agents.frame_share import label_videos
from vara.agents.models import ModelPool, Models
from vara.agents.registry import graph_spec
from vara.agents.rundir import VideoPlan
from vara.agents.window_loop import WindowLoop, build_context
from vara.config import StrategyConfig
from vara.errors import ConfigError, EndpointUnreachable
from vara.tools.cache import CaptionCache
from vara.tools.endpoints import endpoint_report, merge_endpoint_reports
from vara.types import Failure, LabelSet

__all__ = ["RunSpec", "label_on_ray", "ray_cluster"]

ATTEMPTS = 3  # tasks per video before its remaining windows are failures


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to rebuild one run's context (models are connected there)."""

    strategy: StrategyConfig
    labelset: LabelSet
    prompts_dir: str | None
    cache_path: str | None


@dataclass(frozen=True)
class VideoJob:
    """One task: a run's windows of one video still to do."""

    run: int  # index into the driver's runs
    spec: RunSpec
    plan: VideoPlan
    cwd: str  # the driver's: relative video paths are read from there
    attempt: int = 1


# --- on a worker ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def _worker_pool() -> ModelPool:
    """One model pool per worker process: its tasks share clients and loaded weights."""
    return ModelPool()


@lru_cache(maxsize=4)
def _worker_cache(path: str) -> CaptionCache:
    return CaptionCache(path)


class _QueueSink:
    def __init__(self, out: queue.Queue):
        self.out = out

    def append(self, record: dict[str, Any]) -> None:
        self.out.put(("prediction", record))


_END = ("end", None)


def label_video(job: VideoJob) -> Iterator[tuple[str, Any]]:
    """The task: label ``job``'s windows, yielding ("prediction", record) as each finishes,
    then ("failure", ...) for each failure, ("abort", message) if a server was lost, and
    ("stats", counters)."""
    yield "worker", {"pid": os.getpid(), "attempt": job.attempt}
    if os.path.isdir(job.cwd):
        os.chdir(job.cwd)
    s = job.spec
    spec = graph_spec(s.strategy.graph)
    cache = _worker_cache(s.cache_path) if s.cache_path else None
    ctx = build_context(s.strategy, spec, s.labelset, s.prompts_dir, _worker_pool(), cache)
    Models(ctx.vlm, ctx.llm, ctx.scorer).load()
    out: queue.Queue = queue.Queue()
    loop = WindowLoop(ctx, spec, _QueueSink(out), set(), tqdm(disable=True))
    crashed: list[BaseException] = []

    def work() -> None:
        try:
            label_videos([loop], [job.plan])
        except BaseException as exc:  # re-raised in the task below, so Ray reports it
            crashed.append(exc)
        finally:
            out.put(_END)

    thread = threading.Thread(target=work, name="vara-windows", daemon=True)
    thread.start()
    while (item := out.get()) != _END:
        yield item
    thread.join()
    if crashed:
        raise crashed[0]
    for failure in loop.failures:
        yield "failure", failure.to_dict()
    if loop.abort:
        yield "abort", str(loop.abort)
    # this worker process's counters so far (its clients serve every task it runs)
    yield "endpoints", {"pid": os.getpid(), "report": endpoint_report(_roles(ctx))}
    yield "stats", ctx.stats.snapshot()


def _roles(ctx: Any) -> dict[str, Any]:
    return {"vlm": ctx.vlm, "llm": ctx.llm}


# --- on the driver ---------------------------------------------------------------------


@contextmanager
def ray_cluster(address: str | None):
    """Ray, connected: to ``address`` ("auto": the running cluster; ray://HOST:PORT), else to
    $RAY_ADDRESS or a new local cluster; a cluster started here is shut down after. A cluster
    that cannot be reached is a ``ConfigError`` naming the address and the fix."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, which is not installed: pip install 'vara[ray]'"
        ) from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            where = f"at {address!r}" if address else "($RAY_ADDRESS or a new local one)"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"--ray: no Ray cluster {where} ({type(exc).__name__}: {first[:200]}); start "
                "one with `ray start --head` and pass --ray auto, or give --ray alone for a "
                "local cluster (docs/scale.md)"
            ) from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass
class _Task:
    job: VideoJob
    received: set[str] = field(default_factory=set)  # window ids the worker sent back


def _stream(ray: Any, remote: Any, task: _Task, results: queue.Queue) -> None:
    """Consume one task's stream into ``results``; ("lost", error) if its worker died."""
    try:
        for ref in remote.remote(task.job):
            results.put((task, ray.get(ref)))
    except Exception as exc:  # a dead worker, or a bug the task raised: both redo its rest
        results.put((task, ("lost", f"{type(exc).__name__}: {exc}")))
    else:
        results.put((task, ("done", None)))


def label_on_ray(
    loops: Sequence[WindowLoop],
    specs: Sequence[RunSpec],
    plans: Sequence[VideoPlan],
    *,
    parallel: int | None = None,
    attempts: int = ATTEMPTS,
) -> None:
    """Label ``plans`` for each run (``loops[i]`` with ``specs[i]``) on the Ray cluster this
    process is connected to (``ray_cluster``); each loop's sink, failures, stats, abort and bar
    are updated here as if it had run locally."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(label_video)
    width = parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
    written = [set(loop.done) for loop in loops]
    reports: list[dict[int, dict]] = [{} for _ in loops]  # per run: worker pid -> latest
    results: queue.Queue = queue.Queue()
    todo = [
        VideoJob(i, specs[i], replace(p, clips=clips), os.getcwd())
        for p in plans
        for i, loop in enumerate(loops)
        if (clips := tuple(c for c in p.clips if c.clip_id not in loop.done))
    ]
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="vara-ray") as pool:
        running = 0
        while todo or running:
            while todo and running < width:
                job = todo.pop(0)
                if loops[job.run].abort is None:
                    pool.submit(_stream, ray, remote, _Task(job), results)
                    loops[job.run].ctx.stats.add(ray_tasks=1)
                    running += 1
            if not running:
                break
            task, (kind, value) = results.get()
            loop = loops[task.job.run]
            if kind == "prediction":
                task.received.add(value["clip_id"])
                _write(loop, written[task.job.run], value)
            elif kind == "failure":
                task.received.add(value["item"])
                loop.failures.append(Failure.from_dict(value))
                loop.bar.update(1)
            elif kind == "abort":
                loop.abort = loop.abort or EndpointUnreachable(value)
            elif kind == "endpoints":
                reports[task.job.run][value["pid"]] = value["report"]
            elif kind == "stats":
                loop.ctx.stats.add(**value)
            elif kind == "lost":
                running -= 1
                loop.ctx.stats.add(ray_tasks_lost=1)
                todo.extend(_redo(task, value, loop, attempts))
            elif kind == "done":
                running -= 1
    for loop, by_pid in zip(loops, reports, strict=True):
        loop.endpoints = merge_endpoint_reports(list(by_pid.values()))


def _write(loop: WindowLoop, written: set[str], record: dict[str, Any]) -> None:
    """Append a window's prediction unless its id is already written (a redone task)."""
    if record["clip_id"] in written:
        loop.ctx.stats.add(ray_duplicates_dropped=1)
        return
    written.add(record["clip_id"])
    loop.sink.append(record)
    loop.n_predicted += 1
    loop.bar.update(1)


def _redo(task: _Task, error: str, loop: WindowLoop, attempts: int) -> list[VideoJob]:
    """The windows a lost task had not sent back: a new task, or failures after the last."""
    job = task.job
    rest = tuple(c for c in job.plan.clips if c.clip_id not in task.received)
    if not rest:
        return []
    if job.attempt < attempts:
        return [replace(job, plan=replace(job.plan, clips=rest), attempt=job.attempt + 1)]
    for clip in rest:
        message = f"Ray task lost {attempts} times, last: {error}"
        loop.failures.append(Failure(clip.clip_id, "worker", message))
        loop.bar.update(1)
    return []
