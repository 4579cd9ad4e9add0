"""``vara probe``, ``vara labels``, ``vara strategies`` and ``vara compare``: look at inputs,
the packaged label sets and strategies, and compare evaluation runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vara.commands.common import EXIT_FAILURES, EXIT_OK, folder
from vara.errors import InputError, VaraError

__all__ = ["add_compare", "add_lists", "add_probe"]


def _probe_line(info) -> dict:
    """A probe as one JSON line: a variable-frame-rate video says so and gives its frame
    times' range, not the thousands of times themselves (``VideoInfo.frame_times_s``)."""
    out = info.to_dict()
    times = out.pop("frame_times_s", None)
    if times is not None:
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        out["variable_frame_rate"] = True
        out["frame_interval_s"] = [round(min(gaps), 4), round(max(gaps), 4)] if gaps else None
    return out


def _cmd_probe(args: argparse.Namespace) -> int:
    from vara.agents.inputs import expand_inputs
    from vara.tools.video import probe

    status = EXIT_OK
    for path in expand_inputs(args.videos):  # folders: their videos, as `vara run` takes them
        try:
            print(json.dumps(_probe_line(probe(path))))
        except VaraError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_FAILURES
    return status


def _cmd_compare(args: argparse.Namespace) -> int:
    from vara.eval.report import find_runs, write_report

    md, html = write_report(find_runs(args.runs), args.out, max_cards=args.max_cards)
    print(f"wrote {html} and {md}")
    return EXIT_OK


def _cmd_labels(args: argparse.Namespace) -> int:
    from vara.prompts.loader import list_labelsets, load_labelset

    if args.source or args.out:
        return _labels_from(args)
    if not args.name:
        print("\n".join(list_labelsets()))
        return EXIT_OK
    if args.name == "check":  # vara labels check FILE...: validate, run nothing
        if not args.files:
            raise InputError("vara labels check needs a label-set file, e.g. my-labels.yaml")
        for path in args.files:
            ls = load_labelset(path)
            kind = "multi-label" if ls.multi_label else "single-label"
            print(f"{path}: ok, {ls.name!r}, {len(ls.labels)} labels, {kind}")
        return EXIT_OK
    if args.files:
        raise InputError(f"vara labels {args.name} takes no more arguments (got {args.files})")
    ls = load_labelset(args.name)
    kind = "multi-label" if ls.multi_label else "single-label"
    print(f"{ls.name} ({kind}): {ls.description}")
    for lab in ls.labels:
        print(f"  - {lab.name}: {lab.description}")
    for rule in ls.rules:
        print(f"  rule: {rule}")
    return EXIT_OK


def _labels_from(args: argparse.Namespace) -> int:
    """``vara labels --from ucf101:ROOT [--out FILE]``: a label set of a dataset's classes,
    written as a file (the user may refine its descriptions) and validated as it is loaded."""
    from vara.prompts.loader import load_labelset
    from vara.tools.dataset_sources import labelset_yaml, source_classes

    if not args.source:
        raise InputError("vara labels --out FILE needs --from ucf101:ROOT or --from kinetics:CSV")
    if args.name or args.files:
        raise InputError("vara labels --from SOURCE takes no label-set name; drop it")
    out = Path(args.out) if args.out else None
    if out is not None and (out.suffix not in (".yaml", ".yml") or out.exists()):
        why = "exists (it may hold edited descriptions)" if out.exists() else "is not .yaml"
        raise InputError(f"--out {str(out)!r} {why}; give a new .yaml path")
    kind, origin, classes = source_classes(args.source)
    text = labelset_yaml(kind, origin, classes, name=out.stem if out else kind)
    if out is None:
        print(text, end="")
        return EXIT_OK
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    ls = load_labelset(out)
    print(f"wrote {out}: {ls.name!r}, {len(ls.labels)} labels, single-label; use --labels {out}")
    return EXIT_OK


def _cmd_strategies(args: argparse.Namespace) -> int:
    from vara.agents.strategies import list_strategies, load_strategy

    for name in list_strategies():
        print(f"{name}: {load_strategy(name).description}")
    return EXIT_OK


def add_probe(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("probe", help="print fps, frame count, duration, size, rotation of videos")
    s.add_argument(
        "videos", nargs="+", help="video files and/or directories (searched recursively)"
    )
    s.set_defaults(func=_cmd_probe)


def add_compare(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("compare", help="Markdown + single-file HTML report comparing eval runs")
    s.add_argument("runs", nargs="+", help="vara eval output dirs (or single strategy dirs)")
    s.add_argument("--out", required=True, type=folder, help="report directory")
    s.add_argument(
        "--max-cards", type=int, default=24, help="per-window cards to show (%(default)s)"
    )
    s.set_defaults(func=_cmd_compare)


def add_lists(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "labels",
        help="list label sets, show one, check files (vara labels check FILE...), or make one "
        "from a dataset (vara labels --from ucf101:ROOT --out ucf101.yaml)",
    )
    s.add_argument("name", nargs="?", help="label set name or .yaml path, or 'check'")
    s.add_argument("files", nargs="*", help="with check: label-set files to validate")
    s.add_argument(
        "--from",
        dest="source",
        metavar="SOURCE",
        help="make a single-label set of a dataset's classes: ucf101:ROOT (classInd.txt or the "
        "class folders) or kinetics:CSV (its labels); docs/datasets.md",
    )
    s.add_argument("--out", metavar="FILE", help="with --from: write it here (default: print it)")
    s.set_defaults(func=_cmd_labels)

    s = sub.add_parser("strategies", help="list strategies")
    s.set_defaults(func=_cmd_strategies)
