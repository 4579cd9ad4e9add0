"""Robustness sweeps: one strategy variant per (strategy, perturbation level).

``vara eval ... --strategy clip --strategy caption-reason --sweep
perturb=none,mask:frac=0.1,mask:frac=0.3`` evaluates every strategy at every level: the
variant ``clip@mask-frac0.3`` is the ``clip`` strategy with that level's pixel steps added
after its own (``pixels.perturb``), in its own out dir with its own results.json, which
records the base strategy and the level (``run_info.sweep``) for ``vara compare``.

Each window is decoded once per sweep: the variants of one strategy run side by side, video
by video, one decoding pass feeding them all (``agents.frame_share``), and each puts the same
resized frames through its own steps; its caption-cache keys, resume and results.json are
what a run of its own would have. Side by side rather than one variant after another over a
cache of decoded windows: memory stays that of the windows in flight (per variant) however
many hours of video, no disk cache has to be sized, written and read back, and a crashed
sweep resumes per variant as any run does. The price: the variants' ``wall_s`` is the time
they took together. Strategies run one after another as before, each with its own decoding:
they may sample differently, and strategies that caption alike reuse each other's captions.

A level is ``none``, one pixel step (``mask:frac=0.3,shape=ellipse``) or several joined by
``+`` (``mask:frac=0.3+blur:1``). Levels are separated by commas; a comma followed by
``key=value`` continues the step before it, so steps keep their own parameter lists.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vara.config import PixelConfig, StrategyConfig
from vara.errors import ConfigError
from vara.tools.pixels import pixel_spec

__all__ = ["SweepLevel", "expand", "parse_sweep"]


@dataclass(frozen=True)
class SweepLevel:
    text: str  # as the user wrote it: "mask:frac=0.3" or "none"
    steps: tuple[str, ...]  # pixel steps ("" for none)

    @property
    def slug(self) -> str:
        """A name fit for a folder: ``mask-frac0.3``."""
        if not self.steps:
            return "none"
        text = "+".join(step.replace(":", "-", 1) for step in self.steps)
        return re.sub(r"[^A-Za-z0-9.+_-]+", "", text.replace("=", "").replace(",", "_"))[:80]


def parse_sweep(text: str) -> tuple[SweepLevel, ...]:
    """``perturb=LEVEL,LEVEL,...`` -> the levels, each checked as pixel steps."""
    axis, sep, levels = text.partition("=")
    if axis != "perturb" or not sep:
        raise ConfigError(
            f"--sweep {text!r}: expected perturb=LEVEL,LEVEL,... (e.g. perturb=none,mask:frac=0.3)"
        )
    pieces: list[str] = []
    for piece in (p.strip() for p in levels.split(",")):
        if pieces and "=" in piece and ":" not in piece.split("=", 1)[0]:
            pieces[-1] += "," + piece  # key=value continues the step before it
        elif piece:
            pieces.append(piece)
    out = []
    for piece in pieces:
        steps = () if piece == "none" else tuple(s.strip() for s in piece.split("+"))
        pixel_spec(None, steps)  # raises on an unknown step or parameter
        out.append(SweepLevel(piece, steps))
    if len({level.slug for level in out}) != len(out):
        raise ConfigError(f"--sweep {text!r}: a level is given twice")
    return tuple(out)


def expand(
    strategies: Sequence[StrategyConfig], levels: Sequence[SweepLevel]
) -> tuple[list[StrategyConfig], dict[str, dict[str, str]]]:
    """Every strategy at every level, named ``STRATEGY@LEVEL``, and for each variant name
    its base strategy and level (``run_info.sweep``)."""
    variants, sweep = [], {}
    for s in strategies:
        for level in levels:
            name = f"{s.name}@{level.slug}"
            pixels = PixelConfig((*s.pixels.perturb, *level.steps))
            variants.append(dataclasses.replace(s, name=name, pixels=pixels))
            sweep[name] = {"strategy": s.name, "level": level.text}
    return variants, sweep
