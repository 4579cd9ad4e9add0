"""The ``vara`` command line: probe videos, run strategies, serve models, build a tiny test VLM.

    vara probe VIDEO|DIR...
    vara run VIDEO|DIR... --labels SET [--strategy NAME|YAML] --out DIR
             [--vlm-url URL --vlm-model M] [--llm-url URL --llm-model M]
             [--window-s 2 --overlap 0.5 --frames 8] [--set key.sub=value ...]
    vara eval MANIFEST --labels SET --strategy S [--strategy S2 ...] --out DIR [same flags]
    vara compare RUN_DIR... --out DIR
    vara timeline RUN_DIR --format elan|vtt|csv|png [--out DIR] [--truth MANIFEST]
    vara review RUN_DIR [RUN_DIR2 ...] [--truth MANIFEST] --out DIR
    vara prompts list | show ID | render ID [--labels SET] | diff ID1 ID2
    vara finetune [--quiet] CONFIG [key.sub=value ...]   (CONFIG: lora_classifier, timesformer)
    vara tokens vocab RUN_DIR... --out vocab.json [--top-k 20] [--labels SET]
    vara serve MODEL [--port 8000] [--cpu] [--lora NAME=ADAPTER_DIR ...]
    vara export ADAPTER_OR_RUN_DIR --merged OUT
    vara tiny-vlm DIR
    vara labels [NAME] | vara strategies

This is the composition root: the commands live in ``vara.commands`` (one module per job),
each importing what it needs inside its function, which keeps ``vara --help`` fast.
``VaraError`` is printed as one line, no traceback. Exit status: 0 complete, 1 finished with
failures, 2 usage error, 3 aborted because a model server became unreachable (resumable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vara.commands import info, label, prompts, review, serve, timeline, tokens, train
from vara.commands.common import EXIT_ABORTED, EXIT_ERROR, EXIT_OK
from vara.errors import EndpointUnreachable, VaraError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vara", description="Video activity recognition with local VLMs."
    )
    sub = p.add_subparsers(dest="command", required=True)
    # In the order a user meets them: look at videos, label, compare, then the tooling.
    adds = (info.add_probe, label.add, timeline.add, review.add, info.add_compare, prompts.add)
    adds += (tokens.add,)
    for add in (*adds, serve.add, serve.add_export, train.add):
        add(sub)
    info.add_lists(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "no_progress", False) or getattr(args, "quiet", False):
        # transformers' and the hub's own bars (weight loading) too; read when they import.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return args.func(args)
    except EndpointUnreachable as exc:  # resumable: a server to restart, not a command to fix
        resume = "aborted: once the server answers, re-run the same command to resume"
        print(f"error: {exc}; {resume}", file=sys.stderr)
        return EXIT_ABORTED
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
