"""``vara eval``: run strategies over a labelled dataset and write self-describing results.

For each strategy: ``out/<strategy>/`` gets ``clips.jsonl`` (the evaluated set with ground
truth), the runner's ``predictions.jsonl``/``failures.jsonl``/``run.json``, and
``results.json`` = run_info (config, prompts, models, counts incl. caption requests and cache
hits, timings, failures) + metrics (``vara.metrics``) + meta_info. The format is in
docs/results-format.md. Re-running resumes each strategy's missing clips; a directory that
holds a different dataset is refused. Models are connected once per endpoint and shared by
the strategies, and the caption cache lets strategies that caption the same way share
captions (caption-reason and caption-judge do): strategies run one after another, so the later
one finds the earlier one's captions. A sweep's variants of one strategy (agents/sweep.py)
run side by side instead, decoding each window once for all of them
(``agents.runner.run_clips_together``); their pixels differ, so they never share captions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vara.agents.models import ModelPool
from vara.agents.registry import graph_spec
from vara.agents.rundir import session_totals
from vara.agents.runner import run_clips_together
from vara.config import StrategyConfig
from vara.errors import ConfigError
from vara.events import event_metrics, events_from_windows
from vara.metrics import compute_metrics, evidence_summary
from vara.provenance import meta_info
from vara.records import read_jsonl, write_json_atomic, write_jsonl_atomic
from vara.tools.cache import CaptionCache
from vara.tools.datasets import Dataset
from vara.types import Clip, Failure, LabelSet, Prediction

__all__ = ["evaluate", "results_for"]


def _groups(clips: Sequence[Clip]) -> list[tuple[str, list[Clip]]]:
    by_video: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        by_video[c.video].append(c)
    return list(by_video.items())


def _check_clips(out: Path, dataset: Dataset) -> list[dict[str, Any]]:
    """The evaluated set's records; refuse a directory made from another set."""
    path = out / "clips.jsonl"
    records = [c.to_dict() for c in dataset.clips]
    if path.exists() and read_jsonl(path) != records:
        raise ConfigError(
            f"'{out}' holds results for a different dataset than {dataset.path}; use a new --out"
        )
    return records


def evaluate(
    dataset: Dataset,
    labelset: LabelSet,
    strategies: Sequence[StrategyConfig],
    out_dir: str | Path,
    *,
    prompts_dir: str | None = None,
    cache: CaptionCache | None = None,
    progress: bool = True,
    models: ModelPool | None = None,
    sweep: dict[str, dict[str, str]] | None = None,
    ray: str | None = None,
) -> list[Path]:
    """Evaluate each strategy on ``dataset``; return the results.json paths. One model pool
    (``models``, else a new one) serves every strategy. ``sweep``: strategy name -> its base
    strategy and perturbation level (agents/sweep.py), recorded in run_info. ``ray``: label on
    a Ray cluster (``agents.runner.run_clips_together``)."""
    names = [s.name for s in strategies]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"strategies {dupes} given twice: give each variant its own `name`")
    models, sweep = models or ModelPool(), sweep or {}
    for group in _side_by_side(strategies, sweep):
        outs = [Path(out_dir) / s.name for s in group]
        records = {out: _check_clips(out, dataset) for out in outs}
        summaries = run_clips_together(
            _groups(dataset.clips),
            list(zip(group, outs, strict=True)),
            labelset,
            prompts_dir=prompts_dir,
            progress=progress,
            models=models,
            cache=cache,
            # written once the runs' own checks pass: a refused run leaves no clips.jsonl
            on_start=lambda out, records=records: write_jsonl_atomic(
                out / "clips.jsonl", records[out]
            ),
            ray=ray,
        )
        for strategy, out, summary in zip(group, outs, summaries, strict=True):
            results = results_for(out, dataset, labelset, strategy, summary.failures)
            if strategy.name in sweep:
                results["run_info"]["sweep"] = sweep[strategy.name]
            write_json_atomic(out / "results.json", results)
    return [Path(out_dir) / s.name / "results.json" for s in strategies]


def _side_by_side(
    strategies: Sequence[StrategyConfig], sweep: dict[str, dict[str, str]]
) -> list[list[StrategyConfig]]:
    """The strategies in groups run side by side, in order: a sweep's variants of one base
    strategy that sample alike (one decode of each window feeds them all); any other
    strategy alone, so strategies that caption alike still reuse each other's captions."""
    groups: dict[tuple[str, str], list[StrategyConfig]] = {}
    for s in strategies:
        base = sweep.get(s.name, {}).get("strategy")
        key = (f"sweep:{base}", json.dumps(s.sampler.to_dict())) if base else (s.name, "")
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def results_for(
    out: Path,
    dataset: Dataset,
    labelset: LabelSet,
    strategy: StrategyConfig,
    failures: Sequence[Failure],
) -> dict[str, Any]:
    """results.json for one strategy dir, from its predictions, the runner's run.json (the
    fingerprint, and counts and timings summed over the sessions that built the predictions:
    a resumed or re-run evaluation keeps its earlier work's figures) and ``failures`` (the
    windows still failing after this session)."""
    preds = {
        p.clip_id: p
        for p in (Prediction.from_dict(r) for r in read_jsonl(out / "predictions.jsonl"))
    }
    got = [preds.get(c.clip_id) for c in dataset.clips]
    metrics = _metrics(labelset, strategy, dataset.clips, got, failures)
    # None for trimmed clips; the predicted side smoothed as the run's timeline.json is.
    timelines = events_from_windows(dataset.clips, preds, strategy.timeline)
    if timelines is not None:
        events = event_metrics(*timelines, labelset.names).to_dict()
        metrics["events"] = {**events, "smoothing": strategy.timeline.to_dict()}
    info = json.loads((out / "run.json").read_text())["run_info"]
    run_info = _run_info(info, dataset, labelset, strategy, got, failures)
    return {"run_info": run_info, "metrics": metrics, "meta_info": meta_info()}


def _metrics(
    labelset: LabelSet,
    strategy: StrategyConfig,
    clips: Sequence[Clip],
    got: Sequence[Prediction | None],
    failures: Sequence[Failure],
) -> dict[str, Any]:
    # Answers still invalid after the re-ask(s) failed as "answer"; other failures (video,
    # server, context overflow) got no answer from the model at all.
    invalid = {f.item for f in failures if f.stage == "answer"}
    answer_failed = [p is None and c.clip_id in invalid for c, p in zip(clips, got, strict=True)]
    # A graph with no schema-constrained role (classifier) has no model answer to judge:
    # its hallucination rate is None, not a perfect 0.
    writes_answers = graph_spec(strategy.graph).writes_answers
    pairs = list(zip(got, answer_failed, strict=True))
    metrics = compute_metrics(
        labelset,
        truth=[c.labels or () for c in clips],
        predicted=[p.labels if p else None for p in got],
        reasked=[(p is not None and p.attempts > 1) or f for p, f in pairs],
        answered=[writes_answers and (p is not None or f) for p, f in pairs],
        scores=_scores(labelset, got),
    )
    # Evidence quotes found in what they cite (tools/evidence.py), over the predictions made.
    metrics["evidence"] = evidence_summary([p.evidence for p in got if p is not None])
    metrics["evidence_verified_share"] = metrics["evidence"]["verified_share"]
    metrics["higher_is_better"]["evidence_verified_share"] = True
    return metrics


def _run_info(
    info: dict[str, Any],
    dataset: Dataset,
    labelset: LabelSet,
    strategy: StrategyConfig,
    got: Sequence[Prediction | None],
    failures: Sequence[Failure],
) -> dict[str, Any]:
    """From the runner's run_info: what was resolved (fingerprint) and the sums over its
    sessions; with this dataset's counts."""
    fingerprint, sessions = info["fingerprint"], info.get("sessions", [])
    totals = session_totals(sessions)
    stats = totals["stats"]
    n = len(dataset.clips)
    return {
        "strategy": strategy.name,
        "dataset": {
            "name": dataset.name,
            "path": dataset.path,
            "sha256": dataset.sha256,
            "n_clips": n,
        },
        "labelset": labelset.to_dict(),
        "config": strategy.to_dict(),
        # What the runner resolved: prompt ids + hashes, model ids, pixel steps.
        "prompts": fingerprint["prompts"],
        "models": fingerprint["models"],
        "pixels": fingerprint.get("pixels"),
        "counts": {
            "n_clips": n,
            "n_predictions": sum(p is not None for p in got),
            "n_failures": len(failures),
            "n_reasked": sum(p is not None and p.attempts > 1 for p in got),
            "caption_requests": stats.get("caption_requests", 0),
            "caption_cache_hits": stats.get("caption_cache_hits", 0),
            # windows whose VLM outputs all came from the cache: their video was not decoded
            "windows_not_decoded": stats.get("windows_not_decoded", 0),
        },
        "timings": {
            "wall_s": totals["wall_s"],
            "clips_per_s": round(totals["n_predicted"] / totals["wall_s"], 4)
            if totals["wall_s"]
            else None,
            "sessions": totals["sessions"],
        },
        "failures": [f.to_dict() for f in failures],
        "started": sessions[0]["started"] if sessions else None,
        "finished": sessions[-1]["finished"] if sessions else None,
    }


def _scores(labelset: LabelSet, got: Sequence[Prediction | None]):
    """Per-clip class scores in label-set order, or None when the strategy yields none."""
    if not any(p is not None and p.scores is not None for p in got):
        return None
    out = []
    for p in got:
        if p is None or p.scores is None:
            out.append(None)
            continue
        by_label = dict(zip(p.scores.labels, p.scores.probs, strict=True))
        out.append(tuple(by_label.get(n, 0.0) for n in labelset.names))
    return out
