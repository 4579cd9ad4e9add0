"""Where ``vara eval`` and ``vara finetune`` get a labelled dataset: a manifest path
(``tools/datasets.py``) or a ``SOURCE:PATH`` spec naming a public dataset in its own layout.

    runs/manifest.csv              a clip or interval manifest (CSV / JSONL)
    ucf101:ROOT                    UCF-101 class folders + split lists (tools/ucf101.py)
    kinetics:CSV                   a Kinetics annotation CSV + downloaded videos (tools/kinetics.py)

``open_dataset`` routes a spec with its options (``split`` for UCF-101, ``subset`` for both
sources, ``video_root`` for Kinetics and manifests) and refuses an option a source cannot
honour rather than ignoring it. ``source_classes`` and ``labelset_yaml`` make the label set
a source needs (``vara labels --from ucf101:ROOT --out ucf101.yaml``): UCF-101's CamelCase
class names are not in any packaged set, and a label set is a file the user can refine.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from vara.errors import InputError
from vara.tools.datasets import Dataset, load_dataset
from vara.tools.kinetics import kinetics_classes, load_kinetics
from vara.tools.ucf101 import load_ucf101, ucf101_classes
from vara.types import LabelSet

__all__ = ["Source", "labelset_yaml", "open_dataset", "parse_source", "source_classes"]

_EXAMPLES = {"ucf101": "ucf101:data/UCF-101", "kinetics": "kinetics:data/kinetics400/validate.csv"}
_SETTING = {
    "ucf101": "Short YouTube videos, each of one person or group doing one action (UCF-101).",
    "kinetics": "Ten-second YouTube clips, each of one human action (Kinetics).",
}


@dataclass(frozen=True)
class Source:
    kind: Literal["manifest", "ucf101", "kinetics"]
    path: str


def parse_source(spec: str | Path) -> Source:
    """``ucf101:ROOT`` / ``kinetics:CSV`` / a manifest path; a misspelt prefix is an error."""
    text = str(spec)
    for kind, example in _EXAMPLES.items():
        if text.startswith(f"{kind}:"):
            path = text[len(kind) + 1 :]
            if not path:
                raise InputError(f"{text!r}: give a path after '{kind}:', e.g. {example}")
            return Source(kind, path)  # type: ignore[arg-type]
    head, sep, _ = text.partition(":")
    near = difflib.get_close_matches(head.lower(), list(_EXAMPLES), 1, 0.6)
    if sep and len(head) > 1 and near and not Path(text).exists():
        raise InputError(
            f"{text!r}: unknown dataset source {head!r} (did you mean {near[0]!r}?); give "
            f"{' or '.join(_EXAMPLES.values())}, or a manifest path"
        )
    return Source("manifest", text)


def open_dataset(
    spec: str | Path,
    labelset: LabelSet,
    *,
    split: int | None = None,
    subset: str | None = None,
    video_root: str | Path | None = None,
    **manifest: Any,
) -> Dataset:
    """The labelled clips of ``spec`` (module docstring). ``manifest``: ``load_dataset``'s
    windowing options, for manifests only (the sources' clips are whole videos)."""
    src = parse_source(spec)
    if src.kind == "ucf101":
        if video_root is not None:
            raise InputError(
                f"ucf101:{src.path} reads its videos from its class folders; drop --video-root"
            )
        return load_ucf101(src.path, labelset, split=split, subset=subset)
    if split is not None:
        raise InputError(
            f"--split {split} picks one of UCF-101's numbered splits; {str(spec)!r} has "
            "none (a Kinetics CSV's rows are picked with --subset train|val|test)"
        )
    if src.kind == "kinetics":
        return load_kinetics(src.path, labelset, video_root=video_root, subset=subset)
    if subset is not None:
        raise InputError(
            f"--subset {subset} picks rows of ucf101:ROOT or kinetics:CSV; a manifest "
            f"({str(spec)!r}) holds exactly what is evaluated: drop --subset"
        )
    return load_dataset(src.path, labelset, root=video_root, **manifest)


def source_classes(spec: str | Path) -> tuple[str, str, tuple[str, ...]]:
    """(kind, resolved path, class names) of a ``ucf101:`` or ``kinetics:`` spec."""
    src = parse_source(spec)
    if src.kind == "manifest":
        raise InputError(
            f"{str(spec)!r}: classes come from a dataset source; give "
            f"{' or '.join(_EXAMPLES.values())}"
        )
    path = str(Path(src.path).expanduser().resolve())
    classes = ucf101_classes(src.path) if src.kind == "ucf101" else kinetics_classes(src.path)
    return src.kind, path, classes


def labelset_yaml(kind: str, origin: str, classes: Sequence[str], *, name: str) -> str:
    """A single-label label-set file of ``classes``: descriptions are the names in words
    (``ApplyEyeMakeup`` -> "apply eye makeup", also a synonym so an answer in words maps
    back); the header says to write better ones, since prompts show them to the model."""
    labels = []
    for cls in classes:
        words = _words(cls)
        entry: dict[str, Any] = {"name": cls, "description": words}
        if words.lower() != cls.lower():
            entry["synonyms"] = [words]
        labels.append(entry)
    body = {"name": name, "description": _SETTING[kind], "multi_label": False, "labels": labels}
    head = (
        f"# Made by `vara labels --from {kind}:{origin}`: {len(classes)} classes.\n"
        "# Each description is the class name in words; prompts show descriptions to the\n"
        "# model, so saying what each action looks like can help. Check: vara labels check FILE\n"
    )
    return head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def _words(name: str) -> str:
    """CamelCase -> lower-case words (``YoYo`` -> "yo yo"); names with spaces stay."""
    if " " in name or "_" in name:
        return name.replace("_", " ")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).lower()
