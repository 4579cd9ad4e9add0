"""Run a strategy over videos: windows -> graph -> predictions.jsonl, timeline.json/.csv, run.json.

Each video is probed and cut into windows; its frames are decoded in one pass and each
window's graph runs in a thread pool (``strategy.concurrency`` windows in flight, so server
requests overlap). Windows whose VLM outputs are all in the caption cache (a re-run after a
reasoning-prompt edit) skip decoding: they run on their FramePlan alone. Predictions are
appended as they finish; a re-run into the same ``out_dir`` skips windows already there
(and refuses an out_dir made by a different configuration).
A bad video or a window whose answer never validates becomes a ``Failure`` row and the rest
continue; only an unreachable model server stops the run, because then nothing can finish.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vara.agents.context import Context, FrameStore
from vara.agents.graph import (
    NEEDS_CLASSIFIER,
    NO_VLM,
    PIXELS_ONLY_ON_CACHE_MISS,
    SCHEMA_ROLES,
    TOOL_CALLING,
    check_strategy,
    get_graph,
)
from vara.agents.steps import failed_step
from vara.agents.video_keys import assign_keys
from vara.config import StrategyConfig
from vara.errors import ConfigError, StructuredOutputError, VaraError, VideoError
from vara.prompts.loader import PromptTemplate, load_prompt, unknown_variables
from vara.provenance import meta_info, utc_now
from vara.records import JsonlWriter, iter_jsonl, write_json_atomic, write_jsonl_atomic
from vara.timeline import WindowLabels, run_timeline, timeline_csv_rows
from vara.tools import video
from vara.tools.cache import CaptionCache
from vara.tools.chat import ChatModel, load_now
from vara.tools.classifier import Classifier, classifier_id, load_classifier
from vara.tools.vlm import EndpointUnreachable, connect
from vara.tools.windows import make_windows
from vara.types import Clip, Failure, FrameBatch, FramePlan, LabelSet, Prediction, VideoInfo

__all__ = [
    "RunSummary",
    "run_videos",
    "run_clips",
    "expand_inputs",
    "load_run_classifier",
    "VIDEO_SUFFIXES",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class RunSummary:
    out_dir: str
    n_videos: int
    n_windows: int
    n_predicted: int  # finished in this run
    n_resumed: int  # this run's windows already in predictions.jsonl from an earlier run
    failures: tuple[Failure, ...]
    wall_s: float
    stats: dict[str, int] = field(default_factory=dict)  # e.g. caption_requests, cache hits


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files as given; directories -> their video files (recursive, sorted). A video named
    twice (also via a directory) is labelled once. A missing file among others is left for
    the run to list as a failure; when no input exists at all, that is a usage error."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise VideoError(
                    f"directory '{p}' holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                )
            out.extend(str(f) for f in found)
        else:
            out.append(str(p))
    if out and not any(Path(p).exists() for p in out):
        raise VideoError(f"no such video: {', '.join(map(repr, out))}; check the path(s)")
    unique: dict[str, str] = {}
    for p in out:
        key = os.path.realpath(p)
        if key in unique:
            log.warning("video %s is named more than once (also as %s): labelled once",
                        unique[key], p)  # fmt: skip
        else:
            unique[key] = p
    return list(unique.values())


def _load_prompts(strategy: StrategyConfig, prompts_dir: str | None) -> dict[str, PromptTemplate]:
    check_strategy(strategy, strategy.name)
    prompts = {role: load_prompt(ref, prompts_dir) for role, ref in strategy.prompts.items()}
    for prompt in prompts.values():  # before any window, not once per window
        problem = unknown_variables(prompt)
        if problem:
            raise ConfigError(problem)
    for role in SCHEMA_ROLES:
        if role in prompts and prompts[role].schema is None:
            raise ConfigError(
                f"prompt {strategy.prompts[role]!r} (role {role}) names no schema file; "
                f"add `schema: <file>.schema.json` to it"
            )
    return prompts


def load_run_classifier(strategy: StrategyConfig, labelset: LabelSet) -> Classifier | None:
    """The strategy's classifier.run_dir, checked against the graph and the label set."""
    spec = strategy.classifier
    if not spec.run_dir:
        if strategy.graph in NEEDS_CLASSIFIER:
            raise ConfigError(
                f"strategy {strategy.name}: graph {strategy.graph!r} needs a trained classifier: "
                "set classifier.run_dir=RUN_DIR (the out dir of `vara finetune`)"
            )
        return None
    clf = load_classifier(
        spec.run_dir, device=spec.device, batch_size=spec.batch_size, precision=spec.precision
    )
    trained = (clf.info.n_frames, clf.info.max_side)
    sampled = (strategy.sampler.n_frames, strategy.sampler.max_side)
    if sampled[0] != trained[0] or (trained[1] is not None and sampled[1] != trained[1]):
        log.warning(
            "classifier %s was trained on %d frames per window at max side %s, but the "
            "strategy samples %s at %s; for identical inputs pass --frames %d --max-side %s",
            spec.run_dir, *trained, strategy.sampler.n_frames, strategy.sampler.max_side,
            *trained,
        )  # fmt: skip
    if tuple(clf.labels) != labelset.names:
        raise ConfigError(
            f"classifier '{spec.run_dir}' was trained on labels {list(clf.labels)}, but the "
            f"label set {labelset.name!r} has {list(labelset.names)}: pass --labels "
            f"{clf.info.labelset or 'SET'} (the set it was trained with)"
        )
    return clf


def _fingerprint(ctx: Context) -> dict[str, Any]:
    """What must match for a re-run to resume an out_dir (not URLs, timeouts, concurrency)."""
    s = ctx.strategy.to_dict()
    return {
        "strategy": {
            k: s[k]
            for k in (
                "name",
                "graph",
                "windows",
                "sampler",
                "frames_per_caption",
                "generation",
                "max_reasks",
            )
        },
        "labelset": ctx.labelset.to_dict(),
        "prompts": [p.to_dict() for p in ctx.prompt_refs],
        "models": ctx.model_ids(),
    }


def _previous_run(out: Path) -> dict[str, Any]:
    """run_info of an earlier run in ``out`` (its fingerprint, and the sessions it recorded:
    a session killed outright, SIGKILL or power loss, left no record of its own); {} if none."""
    previous = out / "run.json"
    if not previous.exists():
        return {}
    return json.loads(previous.read_text()).get("run_info", {})


def session_totals(sessions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sums over a run's recorded sessions: wall_s, n_predicted and every stats counter."""
    stats: dict[str, int] = {}
    for s in sessions:
        for k, v in s.get("stats", {}).items():
            stats[k] = stats.get(k, 0) + v
    return {
        "sessions": len(sessions),
        "wall_s": round(sum(s["wall_s"] for s in sessions), 3),
        "n_predicted": sum(s["n_predicted"] for s in sessions),
        "stats": stats,
    }


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two fingerprints differ (``sampler.n_frames``), sorted; prompt
    lists say which prompt changed (``prompts (reason.v1 -> reason.v2)``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return sorted(
            path
            for k in set(old) | set(new)
            for path in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        )
    if old != new and _prompt_refs(old) and _prompt_refs(new):
        return [f"{prefix.rstrip('.')} ({_prompt_change(old, new)})"]
    return [prefix.rstrip(".")] if old != new else []


def _prompt_refs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(r, dict) and "id" in r for r in value)


def _prompt_change(old: list[dict], new: list[dict]) -> str:
    def by_name(refs: list[dict]) -> dict[str, dict]:
        return {f"{r['id']}.v{r.get('version')}": r for r in refs}

    o, n = by_name(old), by_name(new)
    parts = [f"{k} edited" for k in sorted(o.keys() & n.keys()) if o[k] != n[k]]
    gone, added = sorted(o.keys() - n.keys()), sorted(n.keys() - o.keys())
    if gone or added:
        parts.append(f"{', '.join(gone) or 'none'} -> {', '.join(added) or 'none'}")
    return "; ".join(parts)


def _check_resumable(out: Path, previous: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    old = previous.get("fingerprint")
    if old is not None and old != fingerprint:
        changed = _changed_keys(old, json.loads(json.dumps(fingerprint)))
        raise ConfigError(
            f"out dir '{out}' holds a run whose settings differ: {', '.join(changed)}; "
            f"use a new --out (resuming would mix incompatible predictions)"
        )


class _Run:
    """State of one run_videos call; methods are the steps."""

    def __init__(self, ctx: Context, out: Path):
        self.ctx = ctx
        self.graph = get_graph(ctx.strategy.graph)
        self.writer = JsonlWriter(out / "predictions.jsonl")
        self.done = {r["clip_id"] for r in iter_jsonl(out / "predictions.jsonl")}
        self.failures: list[Failure] = []
        self.n_predicted = 0
        self.abort: EndpointUnreachable | None = None

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

    def video(self, path: str, clips: list[Clip], bar: tqdm) -> None:
        todo = [c for c in clips if c.clip_id not in self.done]
        if not todo:
            return
        bar.set_description(f"vara {self.ctx.strategy.name} {Path(path).name}", refresh=False)
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
                cached = self._cached_plans(path, todo)
                for plan in cached:
                    submit(plan)
                skip = {p.clip.clip_id for p in cached}
                rest = [c for c in todo if c.clip_id not in skip]
                if rest and not self.abort:
                    batches = video.iter_frame_batches(
                        path, rest, self.ctx.strategy.sampler,
                        on_error=lambda clip, exc: self.undecodable(clip, exc, bar),
                    )  # fmt: skip
                    for batch in batches:
                        submit(batch)
                        if self.abort:
                            break
            except VideoError as exc:
                self.failures.append(Failure(path, "decode", str(exc)))
            finally:
                self._drain(inflight, bar, ALL_COMPLETED)

    def undecodable(self, clip: Clip, exc: VideoError, bar: tqdm) -> None:
        """A window whose frames do not decode (a damaged stretch): it fails, the rest go on."""
        self.failures.append(Failure(clip.clip_id, "decode", str(exc)))
        bar.update(1)

    def _cached_plans(self, path: str, clips: list[Clip]) -> list[FramePlan]:
        """Plans of the windows whose every VLM output is cached: they need no decoding."""
        ctx = self.ctx
        check = PIXELS_ONLY_ON_CACHE_MISS.get(ctx.strategy.graph)
        if check is None or ctx.cache is None:
            return []
        plans = [video.frame_plan(path, c, ctx.strategy.sampler) for c in clips]
        cached = [p for p in plans if p is not None and check(ctx, p)]
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
    """Label every window of ``videos``; see the module docstring for what is written.

    ``options`` are those of ``run_clips``.
    """
    out = Path(out_dir)
    keys = assign_keys(videos, out)  # stable per out dir: see agents/video_keys.py
    groups: list[tuple[str, list[Clip]]] = []
    failures: list[Failure] = []
    w = strategy.windows
    progress = options.get("progress", True) and len(videos) > 1
    for path in tqdm(videos, desc="probing", unit="video", leave=False, disable=not progress):
        if path in keys.repeats:
            continue
        try:
            info = video.probe(path)
        except VideoError as exc:
            failures.append(Failure(path, "probe", str(exc)))
            continue
        clips = make_windows(info, w.window_s, w.overlap, video_key=keys.keys[path])
        groups.append((path, clips))
    return run_clips(
        groups, strategy, labelset, out, failures=failures, on_start=lambda: keys.save(out),
        **options,
    )  # fmt: skip


def run_clips(
    groups: Sequence[tuple[str, Sequence[Clip]]],
    strategy: StrategyConfig,
    labelset: LabelSet,
    out_dir: str | Path,
    *,
    prompts_dir: str | None = None,
    progress: bool = True,
    vlm: ChatModel | None = None,
    llm: ChatModel | None = None,
    cache: CaptionCache | None = None,
    failures: Sequence[Failure] = (),
    classifier: Classifier | None = None,
    on_start: Callable[[], None] | None = None,
) -> RunSummary:
    """Label the given clips, grouped by video (any windows: from make_windows or a dataset).

    ``vlm``/``llm`` replace the strategy's endpoints (tests, reuse across strategies), and
    ``classifier`` its ``classifier.run_dir``;
    ``cache`` reuses captions; ``failures`` are earlier ones to report with this run's;
    ``on_start`` is called once the out dir's checks pass, before the first window.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    prompts = _load_prompts(strategy, prompts_dir)  # a bad prompt leaves no out dir behind
    out.mkdir(parents=True, exist_ok=True)
    failures = list(failures)
    plans = _plan(groups, failures)
    if vlm is None and strategy.graph not in NO_VLM:
        vlm = connect(strategy.vlm)
    if llm is None:
        llm = connect(strategy.llm) if strategy.llm is not None and strategy.llm.is_set else vlm
    if strategy.graph in TOOL_CALLING and not getattr(llm, "supports_tools", False):
        raise ConfigError(
            f"strategy {strategy.name}: graph {strategy.graph!r} calls tools, which needs the "
            f"LLM on a vLLM server ({llm.model_id!r} runs in-process): pass --llm-url (or "
            "--vlm-url) http://HOST:PORT/v1"
        )
    frames = FrameStore(strategy.sampler)
    ctx = Context(strategy, labelset, prompts, vlm, llm, frames, cache=cache, classifier=classifier)
    fingerprint = _fingerprint(ctx)
    if classifier is None and strategy.classifier.run_dir:  # its id, without loading it yet
        fingerprint["models"]["classifier"] = classifier_id(strategy.classifier.run_dir)
    previous = _previous_run(out)
    _check_resumable(out, previous, fingerprint)  # before a refused run loads any weights
    run = _Run(ctx, out)
    run.failures.extend(failures)
    total = sum(len(clips) for _, _, clips in plans)
    todo = sum(1 for _, _, clips in plans for c in clips if c.clip_id not in run.done)
    if todo:  # a finished run re-run loads nothing
        for model in {id(m): m for m in (vlm, llm)}.values():
            load_now(model)
        if classifier is None:
            ctx = dataclasses.replace(ctx, classifier=load_run_classifier(strategy, labelset))
            run.ctx = ctx
    if on_start is not None:
        on_start()
    sessions, started = list(previous.get("sessions", [])), utc_now()
    write_json_atomic(
        out / "run.json",
        {"run_info": {"fingerprint": fingerprint, "status": "running", "sessions": sessions}},
    )
    # A resumed run's bar starts at the windows already done; the rate and ETA count this session.
    # Into a log file (nohup, a batch job), one refresh every 30 s, not a stream of them.
    bar = tqdm(total=total, initial=total - todo, unit="win", desc=f"vara {strategy.name}",
               postfix=f"{total - todo} resumed" if todo < total else None,
               disable=not progress, mininterval=0.1 if _on_terminal() else 30)  # fmt: skip
    status = "interrupted"  # what run.json says if an exception (e.g. Ctrl-C) ends the loop
    try:
        for path, _, clips in plans:
            if run.abort:
                break
            run.video(path, clips, bar)
        status = "complete_with_failures" if run.failures else "complete"
        status = "aborted" if run.abort else status
    finally:
        bar.close()
        run.writer.close()
        summary = RunSummary(
            out_dir=str(out),
            n_videos=len({path for path, _ in groups} | {f.item for f in failures}),
            n_windows=total,
            n_predicted=run.n_predicted,
            n_resumed=total - todo,
            failures=tuple(run.failures),
            wall_s=round(time.perf_counter() - t0, 3),
            stats=ctx.stats.snapshot(),
        )
        session = {"started": started, "finished": utc_now(), "status": status,
                   "wall_s": summary.wall_s, "n_predicted": summary.n_predicted,
                   "stats": summary.stats}  # fmt: skip
        _write_outputs(
            out, plans, summary, ctx, fingerprint, status=status, sessions=[*sessions, session]
        )
    if run.abort:
        raise run.abort
    return summary


def _on_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _plan(
    groups: Sequence[tuple[str, Sequence[Clip]]], failures: list[Failure]
) -> list[tuple[str, VideoInfo, list[Clip]]]:
    """Probe each video (cached) and sort its clips by start, as one decoding pass needs;
    a video that cannot be probed is appended to ``failures``."""
    plans = []
    for path, clips in groups:
        try:
            info = video.probe(path)
        except VideoError as exc:
            failures.append(Failure(path, "probe", str(exc)))
            continue
        plans.append((path, info, sorted(clips, key=lambda c: (c.start_s, c.end_s))))
    return plans


def _write_outputs(
    out: Path,
    plans: list[tuple[str, VideoInfo, list[Clip]]],
    summary: RunSummary,
    ctx: Context,
    fingerprint: dict[str, Any],
    *,
    status: str,
    sessions: list[dict[str, Any]],
) -> None:
    preds = {
        r["clip_id"]: WindowLabels.from_record(r) for r in iter_jsonl(out / "predictions.jsonl")
    }
    timelines = [
        run_timeline(path, info.duration_s, [c.clip_id for c in clips], preds)
        for path, info, clips in plans
    ]
    write_json_atomic(out / "timeline.json", {"timelines": [t.to_dict() for t in timelines]})
    with open(out / "timeline.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(timeline_csv_rows(timelines))
    write_jsonl_atomic(out / "failures.jsonl", (f.to_dict() for f in summary.failures))
    run_info = {
        "fingerprint": fingerprint,
        "status": status,
        "config": ctx.strategy.to_dict(),
        "n_videos": summary.n_videos,
        "n_windows": summary.n_windows,
        "n_predictions": len(preds),
        "n_predicted_this_run": summary.n_predicted,
        "n_resumed": summary.n_resumed,
        "n_failures": len(summary.failures),
        "failures": [f.to_dict() for f in summary.failures],
        "wall_s": summary.wall_s,  # this session's
        "stats": summary.stats,  # this session's
        "totals": session_totals(sessions),  # over every recorded session of this out dir
        "sessions": sessions,
    }
    write_json_atomic(out / "run.json", {"run_info": run_info, "meta_info": meta_info()})
