"""``vara run`` (label every window of videos) and ``vara eval`` (strategies on a labelled set)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vara.commands.common import (
    EXIT_FAILURES,
    EXIT_OK,
    MAX_FAILURES_SHOWN,
    add_model_flags,
    folder,
    log_to,
    open_cache,
    run_overrides,
)

__all__ = ["add"]


def _cmd_run(args: argparse.Namespace) -> int:
    from vara.agents.inputs import expand_inputs
    from vara.agents.runner import RunAborted, run_videos
    from vara.agents.strategies import load_strategy
    from vara.prompts.loader import load_labelset

    strategy = load_strategy(args.strategy, run_overrides(args))
    labelset = load_labelset(args.labels)
    videos = expand_inputs(args.videos)
    out = Path(args.out)
    log_to(out)
    try:
        summary = run_videos(
            videos,
            strategy,
            labelset,
            out,
            prompts_dir=args.prompts_dir,
            progress=not args.no_progress,
            cache=open_cache(args),
            ray=args.ray,
        )
    except RunAborted as exc:  # the summary of what finished, then the error (exit 3)
        _print_summary(exc.summary, out)
        raise
    _print_summary(summary, out)
    return EXIT_FAILURES if summary.failures else EXIT_OK


def _print_summary(summary, out: Path) -> None:
    print(
        f"{summary.n_windows} windows in {summary.n_videos} video(s): {summary.n_predicted} "
        f"predicted now, {summary.n_resumed} resumed, {len(summary.failures)} failed "
        f"({summary.wall_s:.1f} s) -> {out}/predictions.jsonl, {out}/timeline.json"
    )
    for f in summary.failures[:MAX_FAILURES_SHOWN]:
        print(f"failed [{f.stage}] {f.item}: {f.error}", file=sys.stderr)
    if len(summary.failures) > MAX_FAILURES_SHOWN:
        more = len(summary.failures) - MAX_FAILURES_SHOWN
        print(f"... and {more} more failures: see {out}/failures.jsonl", file=sys.stderr)


def _cmd_eval(args: argparse.Namespace) -> int:
    from vara.agents.strategies import load_strategy
    from vara.agents.sweep import expand, parse_sweep
    from vara.eval.runner import evaluate
    from vara.prompts.loader import load_labelset
    from vara.tools.dataset_sources import open_dataset

    labelset = load_labelset(args.labels)
    strategies = [
        load_strategy(s, run_overrides(args)) for s in args.strategy or ["caption-reason"]
    ]
    sweep = None
    if args.sweep:
        strategies, sweep = expand(strategies, parse_sweep(args.sweep))
    given = {"window_s": args.window_s, "overlap": args.overlap, "min_overlap": args.min_overlap}
    windowing = {k: v for k, v in given.items() if v is not None}  # None: the protocol's
    source = {"split": args.split, "subset": args.subset, "video_root": args.video_root}
    dataset = open_dataset(args.manifest, labelset, **source, **windowing)
    if dataset.n_tied:
        print(
            f"{dataset.n_tied} window(s) lay half on one label, half on another: each took the "
            "later one (the window rule, tools/window_rule.py)"
        )
    log_to(Path(args.out))
    paths = evaluate(
        dataset,
        labelset,
        strategies,
        args.out,
        prompts_dir=args.prompts_dir,
        cache=open_cache(args),
        progress=not args.no_progress,
        sweep=sweep,
        ray=args.ray,
    )
    return _print_results(paths, args.out)


def _print_results(paths: list[Path], out: str) -> int:
    """One line per strategy; the report command; which failures files to read."""
    status, failed = EXIT_OK, []
    head = f"{'strategy':<30} {'macro-F1':>8} {'95% CI':>15} {'exact':>6} {'halluc.':>7}"
    print(f"{head} {'quoted':>6} {'failed':>6}")
    for path in paths:
        r = json.loads(path.read_text())
        m, c = r["metrics"], r["run_info"]["counts"]
        lo, hi = m["macro_f1_ci95"] or (float("nan"), float("nan"))
        rate = m["hallucination_rate"]  # None: the model answered no clip
        halluc = "-" if rate is None else f"{rate:.3f}"
        share = m.get("evidence_verified_share")  # None: no quote could be checked
        quoted = "-" if share is None else f"{share:.3f}"
        print(
            f"{r['run_info']['strategy']:<30} {m['macro_f1']:>8.3f} [{lo:.3f}, {hi:.3f}] "
            f"{m['exact_match']:>6.3f} {halluc:>7} {quoted:>6} {c['n_failures']:>6}"
        )
        if c["n_failures"]:
            status = EXIT_FAILURES
            failed.append(str(path.parent / "failures.jsonl"))
    report = Path(out) / "report"
    print(f"results: {', '.join(str(p) for p in paths)}; report: vara compare {out} --out {report}")
    if failed:
        print(
            f"failed windows (one line each: item, stage, error): {', '.join(failed)}; "
            "re-run the same command to retry them",
            file=sys.stderr,
        )
    return status


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("run", help="label every window of videos; write predictions and timelines")
    s.add_argument(
        "videos", nargs="+", help="video files and/or directories (searched recursively)"
    )
    s.add_argument(
        "--labels", required=True, help="label set name (see `vara labels`) or a .yaml path"
    )
    s.add_argument(
        "--strategy", default="caption-reason", help="strategy name or .yaml path (%(default)s)"
    )
    s.add_argument(
        "--out", required=True, type=folder, help="output directory (a re-run resumes it)"
    )
    add_model_flags(s)
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser(
        "eval", help="evaluate strategies on a labelled manifest; write results.json"
    )
    s.add_argument(
        "manifest",
        help="clip manifest or interval annotations (.csv or .jsonl), ucf101:ROOT (class "
        "folders + split lists) or kinetics:CSV (docs/datasets.md)",
    )
    s.add_argument("--labels", required=True, help="label set name or .yaml path")
    s.add_argument(
        "--split",
        type=int,
        metavar="N",
        help="ucf101: evaluate official split N (its testlist0N.txt; default: every video)",
    )
    s.add_argument(
        "--subset",
        choices=("train", "val", "test", "all"),
        help="ucf101 with --split: which list (default test); kinetics: rows whose 'split' "
        "column is this (default: every row)",
    )
    s.add_argument(
        "--video-root",
        metavar="DIR",
        help="where videos are looked up: kinetics (default: the CSV's folder, also DIR/<label>/)"
        " and manifests' relative paths (default: the manifest's folder)",
    )
    s.add_argument(
        "--strategy",
        action="append",
        help="strategy name or .yaml (repeatable; default: caption-reason)",
    )
    s.add_argument(
        "--out", required=True, type=folder, help="output directory: one folder per strategy"
    )
    s.add_argument(
        "--min-overlap",
        type=float,
        help="intervals: a label is positive when it covers more than this share of a window "
        "(default: half, the newborn-resuscitation protocol)",
    )
    s.add_argument(
        "--sweep",
        metavar="perturb=LEVEL,...",
        help="evaluate every strategy at every perturbation level, e.g. "
        "perturb=none,mask:frac=0.1,mask:frac=0.3,mask:frac=0.5 (one results.json each; "
        "docs/robustness.md)",
    )
    add_model_flags(s)
    s.set_defaults(func=_cmd_eval)
