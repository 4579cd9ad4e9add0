"""A run's out dir: what makes it resumable, the sessions that built it, the files it ends with.

    predictions.jsonl   one Prediction per window, appended as windows finish (the runner)
    failures.jsonl      what did not finish in the latest session
    timeline.json/.csv  per video, consecutive windows with the same label merged into events,
                        smoothed as the strategy's ``timeline`` section says (recorded as
                        ``smoothing`` in timeline.json; vara/smoothing.py), with each
                        video's window sequence (``windows``: clip ids in time order)
    run.json            run_info (fingerprint, status, counts, every session) + meta_info

A session served over HTTP also records ``endpoints``: per role, each replica's chat requests,
errors, mean/p95 latency and times taken out (``vara.tools.endpoints``); counted since the
client connected in this process, so strategies of one ``vara eval`` that share a server
report the same totals.

The fingerprint is what must match for a re-run to resume an out dir (the strategy's
sampling and generation settings, label set, prompt hashes, model ids, pixel steps), not
URLs, timeouts or concurrency; a re-run with other settings is refused, naming what changed.
An out dir written before the fingerprint named the pixel steps and the scorer role (format
1) is read as what it meant then, so it still resumes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vara.agents.context import Context
from vara.errors import ConfigError
from vara.provenance import meta_info, utc_now
from vara.records import iter_jsonl, write_json_atomic, write_jsonl_atomic
from vara.timeline import WindowLabels, run_timeline, timeline_csv_rows
from vara.tools.endpoints import endpoint_report
from vara.types import Clip, Failure, PixelSpec, VideoInfo

__all__ = ["RunDir", "RunSummary", "VideoPlan", "fingerprint", "session_totals"]

FORMAT = 2  # of the fingerprint: 2 names the pixel steps and the scorer role
# The strategy settings that change predictions (not URLs, timeouts, concurrency).
_STRATEGY_KEYS = (
    "name",
    "graph",
    "windows",
    "sampler",
    "frames_per_caption",
    "generation",
    "max_reasks",
    "evidence",
)


@dataclass(frozen=True)
class VideoPlan:
    """One video to label: its probe and its windows, sorted by start (one decoding pass)."""

    path: str
    info: VideoInfo
    clips: tuple[Clip, ...]


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


def fingerprint(ctx: Context) -> dict[str, Any]:
    """What must match for a re-run to resume an out dir (see the module docstring)."""
    s = ctx.strategy.to_dict()
    return {
        "format": FORMAT,
        "strategy": {k: s[k] for k in _STRATEGY_KEYS},
        "labelset": ctx.labelset.to_dict(),
        "prompts": [p.to_dict() for p in ctx.prompt_refs],
        "models": ctx.model_ids(),
        "pixels": ctx.frames.pixels.canonical,
    }


def _as_current(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A format-1 fingerprint as this vara would have written it for the same run: its pixels
    were the sampler's resize, its scorer was the ``classifier`` role, a graph that asks no
    LLM (direct) listed the VLM as one, and it checked no evidence quotes."""
    if old.get("format", 1) >= FORMAT:
        return old
    models = dict(old.get("models", {}))
    if "classifier" in models:
        models["scorer"] = models.pop("classifier")
    if "llm" not in new.get("models", {}) and models.get("llm") == models.get("vlm"):
        models.pop("llm", None)
    strategy = dict(old.get("strategy", {}))
    pixels = PixelSpec.resize_only(strategy.get("sampler", {}).get("max_side")).canonical
    # Its quotes were not checked: they resume as unchecked (verified None), under the policy
    # the new run asks for.
    if "evidence" in new.get("strategy", {}):
        strategy["evidence"] = new["strategy"]["evidence"]
    return {**old, "format": FORMAT, "strategy": strategy, "models": models, "pixels": pixels}


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


def _check_resumable(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    old, new = _as_current(old, new), json.loads(json.dumps(new))  # as JSON reads it back
    if old != new:
        raise ConfigError(
            f"out dir '{out}' holds a run whose settings differ: "
            f"{', '.join(_changed_keys(old, new))}; use a new --out (resuming would mix "
            "incompatible predictions)"
        )


class RunDir:
    """One session's view of an out dir: the earlier sessions, the checks, the outputs."""

    def __init__(self, out: Path, fingerprint: dict[str, Any]):
        self.out = out
        self.fingerprint = fingerprint
        self.started = utc_now()
        previous = self._previous()
        self.sessions: list[dict[str, Any]] = list(previous.get("sessions", []))
        if previous.get("fingerprint") is not None:
            _check_resumable(out, previous["fingerprint"], fingerprint)

    @property
    def predictions(self) -> Path:
        return self.out / "predictions.jsonl"

    def done(self) -> set[str]:
        """Clip ids already in predictions.jsonl (from earlier sessions)."""
        return {r["clip_id"] for r in iter_jsonl(self.predictions)}

    def _previous(self) -> dict[str, Any]:
        """run_info of an earlier run here (its fingerprint, and the sessions it recorded: a
        session killed outright, SIGKILL or power loss, left no record of its own)."""
        path = self.out / "run.json"
        return json.loads(path.read_text()).get("run_info", {}) if path.exists() else {}

    def start(self) -> None:
        """Mark the run as running (a crash leaves that status, with the fingerprint)."""
        info = {"fingerprint": self.fingerprint, "status": "running", "sessions": self.sessions}
        write_json_atomic(self.out / "run.json", {"run_info": info})

    def finish(
        self,
        plans: Sequence[VideoPlan],
        summary: RunSummary,
        ctx: Context,
        status: str,
        endpoints: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Write timelines, failures.jsonl and run.json from predictions.jsonl as it is now;
        ``endpoints``: the replicas' stats where other processes made the requests."""
        preds = {r["clip_id"]: WindowLabels.from_record(r) for r in iter_jsonl(self.predictions)}
        smoothing = ctx.strategy.timeline
        timelines = [
            run_timeline(p.path, p.info.duration_s, [c.clip_id for c in p.clips], preds, smoothing)
            for p in plans
        ]
        doc = {
            "smoothing": smoothing.to_dict(),
            "timelines": [t.to_dict() for t in timelines],
            # Each video's window sequence, so `vara timeline` can smooth again exactly.
            "windows": [[c.clip_id for c in p.clips] for p in plans],
        }
        write_json_atomic(self.out / "timeline.json", doc)
        with open(self.out / "timeline.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(timeline_csv_rows(timelines))
        write_jsonl_atomic(self.out / "failures.jsonl", (f.to_dict() for f in summary.failures))
        session = {
            "started": self.started,
            "finished": utc_now(),
            "status": status,
            "wall_s": summary.wall_s,
            "n_predicted": summary.n_predicted,
            "stats": summary.stats,
        }
        if endpoints is None:
            endpoints = endpoint_report({"vlm": ctx.vlm, "llm": ctx.llm})
        if endpoints:
            session["endpoints"] = endpoints
        self.sessions.append(session)
        run_info = {
            "fingerprint": self.fingerprint,
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
            "endpoints": endpoints,  # this session's, per role and replica
            "totals": session_totals(self.sessions),  # over every recorded session here
            "sessions": self.sessions,
        }
        write_json_atomic(self.out / "run.json", {"run_info": run_info, "meta_info": meta_info()})
