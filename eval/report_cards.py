"""The window cards of a report: which windows are worth looking at, and their thumbnails.

``select_cards`` merges the windows of all runs (equal Clips of several runs are one card),
each with what every run that saw it said (its prediction, else its failure), and ranks them:
windows with more failed or wrong runs first, then windows the runs disagree on, then
dataset order. ``add_thumbnails`` reads each card's thumbnails from the clip's video (one
decode pass per video; a missing video or a damaged stretch gives a placeholder note in
their place). ``vara.eval.report`` builds the report with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vara.errors import InputError
from vara.eval.examples import video_path
from vara.eval.report_html import Card, CardEntry, Thumbs, jpeg_bytes, label_diff
from vara.tools.video import probe, read_frames
from vara.tools.windows import plan_frames
from vara.types import Clip, Failure, PixelSpec, SamplerSpec

if TYPE_CHECKING:
    from vara.eval.report import RunResult

__all__ = ["THUMB_MAX_SIDE", "add_thumbnails", "select_cards"]

THUMB_MAX_SIDE = 160  # px, longer side of a card thumbnail
_THUMB_PIXELS = PixelSpec.resize_only(THUMB_MAX_SIDE)


def _entry(run: RunResult, name: str, clip: Clip, failures: dict[str, Failure]) -> CardEntry:
    """The run's prediction for ``clip``, else its failure (item = clip id or video)."""
    pred = run.predictions.get(clip.clip_id)
    if pred is not None:
        return CardEntry(name, prediction=pred)
    return CardEntry(name, failure=failures.get(clip.clip_id) or failures.get(clip.video))


def _priority(card: Card) -> tuple[int, int]:
    """Lower sorts first: windows with more failed or wrong runs, then runs disagreeing."""
    truth = card.clip.labels
    bad, label_sets = 0, set()
    for e in card.entries:
        if e.prediction is None:
            bad += 1
            continue
        label_sets.add(frozenset(e.prediction.labels))
        if truth is not None and any(k != "hit" for _, k in label_diff(truth, e.prediction.labels)):
            bad += 1
    return -bad, -int(len(label_sets) > 1)


def select_cards(
    runs: Sequence[RunResult], names: Sequence[str], max_cards: int
) -> tuple[list[Card], int]:
    """Up to ``max_cards`` window cards (without thumbnails), most telling first; and the total."""
    clips: dict[Clip, None] = {}  # Clip is frozen: equal windows of several runs merge
    for run in runs:
        clips.update(dict.fromkeys(run.clips))
    members = [set(run.clips) for run in runs]
    failures = [{f.item: f for f in run.failures} for run in runs]
    cards = []
    for clip in clips:
        entries = tuple(
            _entry(run, name, clip, fails)
            for run, name, has, fails in zip(runs, names, members, failures, strict=True)
            if clip in has
        )
        cards.append(Card(clip, entries))
    ranked = sorted(cards, key=_priority)  # stable: ties keep dataset order
    return ranked[:max_cards], len(cards)


def _read_thumbs(path: Path, plans: list[tuple[int, ...]]) -> list[Thumbs]:
    """Thumbnails for several windows of one video: one decode pass, per-window on error."""
    wanted = sorted({i for plan in plans for i in plan})
    try:
        frames, times = read_frames(path, wanted, pixels=_THUMB_PIXELS)
        got = dict(zip(wanted, zip(frames, times, strict=True), strict=True))
    except InputError:  # a damaged region: find out which windows it spoils
        got = {}
        for plan in plans:
            try:
                f, t = read_frames(path, plan, pixels=_THUMB_PIXELS)
                got.update(zip(plan, zip(f, t, strict=True), strict=True))
            except InputError:
                pass
    return [
        Thumbs(tuple(jpeg_bytes(got[i][0]) for i in plan), tuple(got[i][1] for i in plan))
        if all(i in got for i in plan)
        else Thumbs(note=f"no thumbnails: frames {list(plan)} of {path} do not decode")
        for plan in plans
    ]


def add_thumbnails(cards: list[Card], runs: Sequence[RunResult], n: int) -> list[Card]:
    """Cards with ``n`` thumbnails each; a missing or broken video gives a placeholder note."""
    if n <= 0:
        return cards
    by_video: dict[Path, list[int]] = {}
    for k, card in enumerate(cards):
        by_video.setdefault(video_path(card.clip.video, runs), []).append(k)
    thumbs: dict[int, Thumbs] = {}
    spec = SamplerSpec(n_frames=n, max_side=None)
    for path, idx in by_video.items():
        try:
            info = probe(path)
        except (InputError, OSError) as exc:
            thumbs.update({k: Thumbs(note=f"no thumbnails: {exc}") for k in idx})
            continue
        plans: dict[int, tuple[int, ...]] = {}
        for k in idx:
            try:
                plans[k] = plan_frames(info, cards[k].clip, spec)
            except InputError as exc:
                thumbs[k] = Thumbs(note=f"no thumbnails: {exc}")
        thumbs.update(zip(plans, _read_thumbs(path, list(plans.values())), strict=True))
    return [Card(c.clip, c.entries, thumbs[k]) for k, c in enumerate(cards)]
