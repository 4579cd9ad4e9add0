"""UCF-101 as a dataset (``vara eval ucf101:ROOT``): class folders plus the official split
lists -> one whole-video clip per listed video, labelled with its class folder.

The layout is the official archives' (``UCF101.rar`` and ``UCF101TrainTestSplits-
RecognitionTask.zip``)::

    ROOT/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi      # class folder / video
    ROOT/ucfTrainTestlist/classInd.txt                    # "1 ApplyEyeMakeup"
    ROOT/ucfTrainTestlist/trainlist01.txt                 # "ApplyEyeMakeup/v_..._g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist01.txt                  # "ApplyEyeMakeup/v_..._g01_c01.avi"

The lists may also lie in ROOT itself. ``split=N`` reads ``testlist0N.txt`` (``subset``
"test", the default), ``trainlist0N.txt`` ("train") or both ("all"). Without ``split`` every
video of the class folders is loaded, lists or not. ``gXX`` in a file name is its group:
the same actor and scene in 4-7 videos, which the official splits never put on both sides;
``Clip.group`` carries it so a fine-tuning split keeps them together too.

Paths in the lists are matched case-insensitively when the exact one is missing (the lists
and the archive disagree on some capitals, e.g. ``HandStandPushups``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from vara.errors import InputError
from vara.tools.datasets import Dataset
from vara.tools.whole_videos import (
    VIDEO_SUFFIXES,
    VideoRow,
    missing_videos_error,
    whole_video_dataset,
)
from vara.types import LabelSet

__all__ = ["LISTS_DIR", "SUBSETS", "load_ucf101", "ucf101_classes", "ucf_group"]

LISTS_DIR = "ucfTrainTestlist"  # the folder the official split archive unpacks to
SUBSETS = ("test", "train", "all")
_GROUP = re.compile(r"_(g\d+)_c\d+$", re.IGNORECASE)


def ucf_group(video: str) -> str:
    """``"g08"`` for ``.../v_ApplyEyeMakeup_g08_c01.avi``; "" for a name without one. The
    number alone is the group: split 1 tests g01-g07 of every class, so g08 is one group."""
    m = _GROUP.search(Path(video).stem)
    return m.group(1).lower() if m else ""


def load_ucf101(
    root: str | Path, labelset: LabelSet, *, split: int | None = None, subset: str | None = None
) -> Dataset:
    """A ``Dataset`` of UCF-101 videos under ``root`` (module docstring); every video is probed.
    ``sha256`` is of the split lists read (or, without a split, of the sorted video paths)."""
    tree = _Tree.at(root)
    if split is None:
        if subset not in (None, "all"):
            raise InputError(
                f"ucf101:{tree.root}: --subset {subset} picks a side of a split list; add "
                "--split N (1-3), or drop --subset to load every video of the class folders"
            )
        rows = tree.folder_rows()
        listing = "\n".join(r.video for r in rows).encode()
        name, path = "ucf101", str(tree.root)
    else:
        subset = subset or "test"
        if subset not in SUBSETS:
            raise InputError(
                f"ucf101: --subset must be one of {list(SUBSETS)}, got {subset!r} (UCF-101 has "
                "no validation list; vara finetune holds out groups of the train list itself)"
            )
        sides = ("train", "test") if subset == "all" else (subset,)
        files = [tree.list_file(side, split) for side in sides]
        listing = b"".join(f.read_bytes() for f in files)
        rows = [row for f in files for row in tree.list_rows(f)]
        name = f"ucf101-split{split}-{subset}"
        path = str(files[0] if len(files) == 1 else files[0].parent)
    fix = (
        f"make a matching label set: vara labels --from ucf101:{tree.root} --out ucf101.yaml, "
        "then pass --labels ucf101.yaml (or add the class to your label set)"
    )
    return whole_video_dataset(
        rows,
        labelset,
        name=name,
        path=path,
        sha256=hashlib.sha256(listing).hexdigest(),
        labels_fix=fix,
    )


def ucf101_classes(root: str | Path) -> tuple[str, ...]:
    """The classes in ``classInd.txt`` order when there is one, else the sorted folders
    holding videos: what ``vara labels --from ucf101:ROOT`` writes."""
    tree = _Tree.at(root)
    if tree.class_index:
        return tuple(tree.class_index.values())
    return tuple(sorted({r.label for r in tree.folder_rows()}))


@dataclass(frozen=True)
class _Tree:
    root: Path
    lists: Path | None  # the folder holding the split lists, if any
    class_index: dict[int, str]  # classInd.txt: 1 -> "ApplyEyeMakeup" ({} without one)

    @classmethod
    def at(cls, root: str | Path) -> _Tree:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise InputError(
                f"ucf101:{root}: not a directory; give the folder holding the class folders "
                "(ROOT/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi ...)"
            )
        lists = next((d for d in (path, path / LISTS_DIR) if _has_lists(d)), None)
        index = _read_class_index(lists / "classInd.txt") if lists else {}
        return cls(path, lists, index)

    def folder_rows(self) -> list[VideoRow]:
        rows = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() in VIDEO_SUFFIXES and file.is_file():
                    video = f"{folder.name}/{file.name}"
                    where = f"{self.root}/{folder.name}"
                    rows.append(VideoRow(where, video, file, folder.name, ucf_group(video)))
        if not rows:
            raise InputError(
                f"ucf101:{self.root}: no videos in its class folders; expected "
                "ROOT/ClassName/v_ClassName_gXX_cYY.avi (the unpacked UCF101.rar)"
            )
        return rows

    def list_file(self, side: str, split: int) -> Path:
        if self.lists is None:
            raise InputError(
                f"ucf101:{self.root}: --split {split} needs the official split lists "
                f"(trainlist0N.txt, testlist0N.txt, classInd.txt) in ROOT or ROOT/{LISTS_DIR}; "
                "unpack UCF101TrainTestSplits-RecognitionTask.zip there, or drop --split to "
                "load every video of the class folders"
            )
        path = self.lists / f"{side}list{split:02d}.txt"
        if not path.is_file():
            found = sorted(p.name for p in self.lists.glob("*list*.txt"))
            raise InputError(
                f"ucf101: --split {split}: {path} not found (there: {found}); pick a split "
                "whose lists are there"
            )
        return path

    def list_rows(self, path: Path) -> list[VideoRow]:
        rows, missing = [], []
        lookup = _Caseless(self.root)
        for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if not text.strip():
                continue
            where = f"{path} line {line}"
            video, folder = self._parse_line(where, text)
            file = lookup.find(video)
            label, group = self._label(folder), ucf_group(video)
            row = VideoRow(where, video, file or self.root / video, label, group)
            (rows if file else missing).append(row)
        if missing:
            raise missing_videos_error(
                missing,
                len(rows) + len(missing),
                f"unpack every class folder of UCF101.rar into {self.root}, or list only "
                "the videos you have",
            )
        return rows

    def _parse_line(self, where: str, text: str) -> tuple[str, str]:
        """(video path, class folder) of ``"Class/v_Class_g08_c01.avi 1"``; checks the index."""
        parts = text.split()
        video = parts[0].replace("\\", "/")
        folder, _, name = video.rpartition("/")
        if len(parts) > 2 or not folder or "/" in folder or not name:
            raise InputError(
                f"{where}: expected 'ClassName/v_ClassName_gXX_cYY.avi' and, in a train list, "
                f"the class number; got {text.strip()!r}"
            )
        if len(parts) == 2 and self.class_index:
            named = self.class_index.get(int(parts[1])) if parts[1].isdigit() else None
            if named is None or named.lower() != folder.lower():
                raise InputError(
                    f"{where}: class number {parts[1]!r} is {named!r} in classInd.txt, but the "
                    f"video is in folder {folder!r}; fix the line or classInd.txt"
                )
        return video, folder

    def _label(self, folder: str) -> str:
        """The class as classInd.txt spells it (folders may differ in capitals), else the folder."""
        spelt = {n.lower(): n for n in self.class_index.values()}
        return spelt.get(folder.lower(), folder)


def _has_lists(folder: Path) -> bool:
    return folder.is_dir() and (
        (folder / "classInd.txt").is_file() or any(folder.glob("*list0*.txt"))
    )


def _read_class_index(path: Path) -> dict[int, str]:
    if not path.is_file():
        return {}
    index: dict[int, str] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not text.strip():
            continue
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise InputError(
                f"{path} line {line}: expected 'NUMBER ClassName' (e.g. '1 ApplyEyeMakeup'), "
                f"got {text.strip()!r}"
            )
        number, name = int(parts[0]), parts[1]
        if number in index or name in index.values():
            raise InputError(f"{path} line {line}: {text.strip()!r} repeats a number or class")
        index[number] = name
    return index


class _Caseless:
    """Finds ``Class/file.avi`` under a root: the exact path, else one equal but for capitals
    (the folders are scanned once, only when an exact path is missing)."""

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, Path] | None = None

    def find(self, video: str) -> Path | None:
        exact = self.root / video
        if exact.is_file():
            return exact
        if self._index is None:
            self._index = {
                f"{d.name}/{f.name}".lower(): f
                for d in self.root.iterdir()
                if d.is_dir()
                for f in d.iterdir()
            }
        return self._index.get(video.lower())
