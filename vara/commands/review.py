"""``vara review RUN_DIR [RUN_DIR2 ...] [--truth MANIFEST] --out DIR``: the review page.

Writes a static folder (``index.html`` + ``review.js`` + ``review.css`` + frame strips +
H.264 proxies where needed) in which a person watches each video beside the runs' timeline
lanes, opens any window's card (frames, captions, labels, scores, explanation, evidence),
filters, corrects labels and exports the corrections as an interval manifest. It opens from
file:// with no server. The work is in ``vara.eval.review``; docs/review.md says how to use it.
"""

from __future__ import annotations

import argparse

from vara.commands.common import EXIT_OK, folder

__all__ = ["add"]


def _cmd(args: argparse.Namespace) -> int:
    from vara.eval.review import build_review

    s = build_review(args.run_dirs, args.out, truth=args.truth, progress=not args.no_progress)
    print(
        f"wrote {s.out_dir / 'index.html'}: {s.n_videos} video(s), {s.n_windows} window(s), "
        f"{s.n_strips} frame strip(s), {s.n_proxies} H.264 prox{'y' if s.n_proxies == 1 else 'ies'}"
    )
    for note in s.notes:
        print(f"note: {note}")
    return EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "review",
        help="a static page to watch videos beside the runs' timelines, check and correct them",
    )
    s.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="vara run out dirs, vara eval strategy dirs, or vara eval out dirs (all strategies)",
    )
    s.add_argument(
        "--truth",
        metavar="MANIFEST",
        help="clip or interval manifest (as vara eval reads) for truth lanes; default: the "
        "true labels of vara eval dirs, if any",
    )
    s.add_argument(
        "--out", required=True, metavar="DIR", type=folder, help="folder to write the page into"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd)
