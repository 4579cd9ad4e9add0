"""``vara prompts list | show | render | diff``: inspect, render and compare prompt versions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from vara.commands.common import EXIT_OK
from vara.errors import InputError, did_you_mean

__all__ = ["add"]


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


def add(sub: argparse._SubParsersAction) -> None:
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
