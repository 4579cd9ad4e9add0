"""``vara tokens vocab RUN_DIR... --out vocab.json``: a closed semantic-token vocabulary.

The input is what a finished ``semantic-tokens`` run recorded: each prediction's accepted
per-frame tags (``predictions.jsonl``, the tokens step's answer in ``captions[0].text``), so
building a vocabulary asks no model anything. A RUN_DIR may be a ``vara run`` out dir, a
``vara eval`` out dir (every ``predictions.jsonl`` below it is read) or a predictions.jsonl.
A manifest is not an input: run ``vara eval MANIFEST --strategy semantic-tokens`` first
(its tags are cached, so a re-run asks the VLM nothing) and pass its out dir.

Then ``--set tokens.vocab=vocab.json`` (and ``--set prompts.answer=narrative.v2`` for the
narrative as time spans) makes the tags of a semantic-tokens run vocabulary tokens.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vara.commands.common import EXIT_OK
from vara.errors import InputError

__all__ = ["add", "run_tags"]


def run_tags(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-frame tag dicts of every semantic-tokens prediction under ``path``, and one
    source record per predictions file that had some.

    A frame shared by overlapping windows counts once per window that tagged it."""
    from vara.records import iter_jsonl

    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.glob("**/predictions.jsonl"))
    else:
        raise InputError(f"run directory {str(path)!r} not found")
    frames: list[dict[str, Any]] = []
    sources = []
    for f in files:
        found = [tags for record in iter_jsonl(f) for tags in _prediction_tags(record)]
        if found:
            frames += found
            sources.append({"path": str(f), "n_frames": len(found)})
    return frames, sources


def _prediction_tags(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The tags of one prediction record; [] when it is no semantic-tokens prediction."""
    from vara.tools.reason import TAG_FIELDS

    for caption in record.get("captions") or ():
        try:
            doc = json.loads(caption.get("text", ""))
        except (json.JSONDecodeError, TypeError):
            continue
        frames = doc.get("frames") if isinstance(doc, dict) else None
        if isinstance(frames, list) and all(isinstance(fr, dict) for fr in frames):
            return [fr for fr in frames if set(TAG_FIELDS) <= set(fr)]
    return []


def _cmd_vocab(args: argparse.Namespace) -> int:
    from vara.prompts.loader import load_labelset
    from vara.tools.vocab import build_vocabulary, write_vocabulary

    frames: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    for run in args.runs:
        f, s = run_tags(run)
        frames += f
        sources += s
    if not frames:
        raise InputError(
            f"no semantic-tokens tags in {', '.join(args.runs)}: pass the out dir of a "
            f"finished `vara run|eval ... --strategy semantic-tokens`"
        )
    labelset = load_labelset(args.labels) if args.labels else None
    given = {"top_k": args.top_k, "min_similarity": args.min_similarity}
    settings = {k: v for k, v in given.items() if v is not None}  # else the module defaults
    vocab = build_vocabulary(frames, labelset=labelset, **settings)
    path = write_vocabulary(vocab, args.out, sources)
    print(f"{path}: {len(frames)} frames from {len(sources)} file(s), sha256 {vocab.sha256[:12]}")
    for name, field in vocab.fields.items():
        hows = [m.how for m in field.mappings]
        print(
            f"  {name:<10} {len(field.tokens):>3} tokens; {hows.count('nearest')} forms mapped "
            f"to the nearest, {hows.count('other')} to other"
        )
    print(f"use it: --set tokens.vocab={path} --set prompts.answer=narrative.v2")
    return EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("tokens", help="semantic tokens: build a closed vocabulary")
    actions = s.add_subparsers(dest="action", required=True)
    v = actions.add_parser(
        "vocab", help="a closed vocabulary per tag field from finished semantic-tokens runs"
    )
    v.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run/eval out dir or predictions.jsonl"
    )
    v.add_argument("--out", required=True, help="vocabulary file to write (vocab.json)")
    # Defaults live in vara.tools.vocab (imported only when the command runs: fast --help).
    v.add_argument("--top-k", type=int, help="tokens kept per field, by frequency (20)")
    v.add_argument(
        "--min-similarity",
        type=float,
        help="difflib ratio a dropped form needs to map to its nearest kept token, else it "
        "maps to other (0.8)",
    )
    v.add_argument("--labels", help="label set whose synonyms become their label's name")
    v.set_defaults(func=_cmd_vocab)
