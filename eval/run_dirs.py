"""Which run directories a report command was given: each path a run dir or a folder of them.

``vara compare`` (results.json dirs) and ``vara review`` (run dirs with predictions) take the
same kind of arguments: a run dir, or a ``vara eval`` out dir holding one per strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from vara.errors import InputError

__all__ = ["run_dirs"]


def run_dirs(
    paths: Iterable[str | Path], is_run: Callable[[Path], bool], none_found: str, fix: str
) -> list[Path]:
    """The run dirs under ``paths``, in order, each once: a path that ``is_run``, else its
    subdirectories that are. A path that is not a directory, or holds no run, is an
    InputError: ``{path} {none_found}: {fix}``."""
    dirs: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            raise InputError(f"{path} is not a directory: {fix}")
        found = [path] if is_run(path) else sorted(d for d in path.iterdir() if is_run(d))
        if not found:
            raise InputError(f"{path} {none_found}: {fix}")
        for d in found:
            if d.resolve() not in seen:
                seen.add(d.resolve())
                dirs.append(d)
    return dirs
