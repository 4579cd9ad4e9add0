"""A robustness sweep's decoding and CLIP scoring: each window decoded once, scored at the pace
of a hand-written loop.

On a synthetic H.264 video labelled in 2-s windows (``_common.synthetic_dataset``), in ONE
run, the arms alternating in each of --rounds rounds:
  * pass:     the decoding pass alone (``agents.frame_share.label_videos`` feeding runs that
              only take their frames, no graphs): one unperturbed run vs the 4-level sweep
              (none, mask 10/30/50%). ``decode`` is decoding + resize (the one shared pass);
              ``steps`` the masks the variants then apply to the shared frames. The target
              is decode sweep/one <= 1.2; (decode + steps)/one is reported beside it.
  * in-run:   ``evaluate`` with the clip strategy: one unperturbed run, the sweep, and the four
              levels as evaluations of their own (what a sweep cost when each variant decoded
              for itself): windows decoded, decode/steps seconds from run.json's stats and wall
              seconds. Decoding there shares the cores with every variant's graphs (4x the
              graph work in the sweep), so its seconds are wall time under that load.
Then CLIP scoring of what the sweep scores (its windows, decoded once, through each level's
steps): vara's ``ClipScorer.predict`` vs clip_throughput.py's hand-written transformers loop
(same model, frames and frames per forward pass), alternating; target vara/loop >= 0.95.

    OMP_NUM_THREADS=1 .venv/bin/python bench/robustness_sweep.py --out /tmp/robustness_sweep.json
    .venv/bin/python bench/robustness_sweep.py --size 1280x720   # decoding as for HD video
    python bench/robustness_sweep.py --model openai/clip-vit-base-patch32 --device cuda  # GPU box
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import synthetic_dataset
from clip_throughput import _minimal

from vara.agents.context import RunStats
from vara.agents.frame_share import label_videos
from vara.agents.frames import FrameStore
from vara.agents.inputs import plan_videos
from vara.agents.strategies import load_strategy
from vara.agents.sweep import expand, parse_sweep
from vara.eval.runner import evaluate
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip
from vara.tools.clip_zero_shot import ClipScorer
from vara.tools.frame_batches import iter_frame_batches
from vara.tools.pixels import pixel_spec

LEVELS = "perturb=none,mask:frac=0.1,mask:frac=0.3,mask:frac=0.5"


def _figures(stats: list[dict]) -> dict[str, float]:
    """Windows decoded and seconds decoding / in pixel steps, summed over runs' stats."""
    return {
        "windows_decoded": sum(s.get("windows_decoded", 0) for s in stats),
        "decode_s": sum(s.get("decode_ms", 0) for s in stats) / 1000,
        "steps_s": sum(s.get("pixel_steps_ms", 0) for s in stats) / 1000,
    }


class _TakeFrames:
    """A run that only takes its windows' frames: the decoding pass without any graph."""

    def __init__(self, store: FrameStore):
        self.ctx = SimpleNamespace(frames=store, stats=RunStats())
        self.abort, self.failures = None, []

    def open_video(self, plan):
        return list(plan.clips)

    def submit(self, item) -> None:
        pass

    def undecodable(self, clip, exc) -> None:
        self.failures.append(exc)

    def close_video(self) -> None:
        pass


def _pass(dataset, strategy, levels: list[str] | None) -> dict[str, float]:
    """The decoding pass for one run (``levels`` None) or one per level, side by side."""
    sampler = strategy.sampler
    specs = [None] if levels is None else [pixel_spec(sampler.max_side, lv) for lv in levels]
    runs = [_TakeFrames(FrameStore(sampler, spec)) for spec in specs]
    plans = plan_videos([(dataset.clips[0].video, dataset.clips)], [])
    t0 = time.perf_counter()
    label_videos(runs, plans)
    wall = time.perf_counter() - t0
    return _figures([r.ctx.stats.snapshot() for r in runs]) | {"wall_s": wall}


def _in_run(dataset, labelset, strategy, work: Path, n: int) -> dict[str, dict]:
    """``evaluate``: the unperturbed run, the sweep, the levels run apart (fresh out dirs)."""
    variants, sweep = expand([strategy], parse_sweep(LEVELS))
    arms = {
        "one": lambda out: evaluate(dataset, labelset, [strategy], out, progress=False),
        "sweep": lambda out: evaluate(
            dataset, labelset, variants, out, progress=False, sweep=sweep
        ),
        "separate": lambda out: [
            evaluate(dataset, labelset, [v], out, progress=False) for v in variants
        ],
    }
    result = {}
    for arm, run in arms.items():
        out = work / f"{arm}{n}"
        t0 = time.perf_counter()
        run(out)
        wall = time.perf_counter() - t0
        stats = [json.loads(p.read_text())["run_info"]["stats"] for p in out.glob("*/run.json")]
        result[arm] = _figures(stats) | {"wall_s": wall}
    return result


def _round(dataset, labelset, strategy, work: Path, n: int) -> dict[str, dict]:
    steps = [list(level.steps) for level in parse_sweep(LEVELS)]
    return {
        "pass_one": _pass(dataset, strategy, None),
        "pass_sweep": _pass(dataset, strategy, steps),
        "in_run": _in_run(dataset, labelset, strategy, work, n),
    }


def _sweep_frames(dataset, strategy) -> list:
    """The windows the sweep scores: decoded once, through each level's pixel steps."""
    sampler = strategy.sampler
    plain = FrameStore(sampler)
    stores = [
        FrameStore(sampler, pixel_spec(sampler.max_side, level.steps))
        for level in parse_sweep(LEVELS)
    ]
    path = dataset.clips[0].video
    clips = sorted(dataset.clips, key=lambda c: c.start_s)
    decoded = list(iter_frame_batches(path, clips, sampler, pixels=plain.pixels))
    return [store.adopt(batch, path) for store in stores for batch in decoded]


def _scoring(scorer: ClipScorer, windows: list, batch: int, rounds: int) -> dict:
    scorer.predict(windows[:2])  # warm-up
    _minimal(scorer, windows[:2], batch)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        scorer.predict(windows)
        vara_s = time.perf_counter() - t0
        loop_s = _minimal(scorer, windows, batch)
        out.append({"vara_s": vara_s, "loop_s": loop_s, "ratio": loop_s / vara_s})
    return {
        "rounds": out,
        "n_windows": len(windows),
        "vara_windows_per_s": len(windows) / statistics.median(r["vara_s"] for r in out),
        "loop_windows_per_s": len(windows) / statistics.median(r["loop_s"] for r in out),
        "ratio_median": statistics.median(r["ratio"] for r in out),
    }


def _median(rounds: list[dict], *keys: str) -> float:
    values = []
    for r in rounds:
        for key in keys[:-1]:
            r = r[key]
        values.append(r[keys[-1]])
    return statistics.median(values)


def _summary(rounds: list[dict]) -> dict:
    one = _median(rounds, "pass_one", "decode_s")
    decode = _median(rounds, "pass_sweep", "decode_s")
    steps = _median(rounds, "pass_sweep", "steps_s")
    in_run = {
        arm: {k: _median(rounds, "in_run", arm, k) for k in rounds[0]["in_run"][arm]}
        for arm in rounds[0]["in_run"]
    }
    return {
        "pass": {
            "one_decode_s": one,
            "sweep_decode_s": decode,
            "sweep_steps_s": steps,
            "decode_ratio_sweep_over_one": decode / one,
            "decode_and_steps_ratio_sweep_over_one": (decode + steps) / one,
        },
        "in_run": in_run,
        "in_run_decode_ratio_sweep_over_one": in_run["sweep"]["decode_s"]
        / in_run["one"]["decode_s"],
        "in_run_decode_ratio_separate_over_one": in_run["separate"]["decode_s"]
        / in_run["one"]["decode_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="CLIP checkpoint (default: a tiny random one built here)")
    p.add_argument("--seconds", type=float, default=60.0, help="video length (2-s windows)")
    p.add_argument("--size", default="320x240", help="video width x height")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the decoding arms")
    p.add_argument("--clip-rounds", type=int, default=7, help="rounds of the CLIP arms")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write the results JSON here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vara-sweep-bench-"))
    model = args.model or str(build_tiny_clip(work / "clip"))
    labelset = load_labelset("kinetics-sample")
    strategy = load_strategy("clip", [f"scorer.model={model}", f"scorer.device={args.device}"])
    size = tuple(int(x) for x in args.size.split("x"))
    dataset = synthetic_dataset(work, args.seconds, labelset, size=size)
    rounds = [_round(dataset, labelset, strategy, work, n) for n in range(args.rounds)]
    scorer = ClipScorer(strategy.scorer, labelset)
    batch = strategy.scorer.batch_size
    scoring = _scoring(scorer, _sweep_frames(dataset, strategy), batch, args.clip_rounds)
    result = {
        "config": vars(args) | {"model": model, "levels": LEVELS, "batch": batch},
        "n_windows": len(dataset.clips),
        "decoding": _summary(rounds),
        "clip": {k: v for k, v in scoring.items() if k != "rounds"},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        result["rounds"] = {"decoding": rounds, "clip": scoring["rounds"]}
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
