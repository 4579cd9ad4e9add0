"""CLIP scoring throughput: vara's clip scorer vs a minimal hand-written transformers loop.

Both arms score the same windows (random frames, --frames per window) with the same model
and frames per forward pass (--batch); the loop does only processor -> get_image_features ->
normalise -> mean -> logits -> softmax, with the class embeddings computed once outside the
timing. Rounds alternate between the arms; the ratio of windows/s is reported per round and
as the median. vara's arm goes through ``ClipScorer.predict`` (batcher, pooling, ClassScores).

    OMP_NUM_THREADS=1 .venv/bin/python bench/clip_throughput.py --out /tmp/clip_bench.json
    python bench/clip_throughput.py --model openai/clip-vit-base-patch32 --device cuda  # GPU box
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vara.config import ScorerSpec
from vara.prompts.loader import load_labelset
from vara.testing import build_tiny_clip
from vara.tools.clip_zero_shot import ClipScorer
from vara.types import Clip, FrameBatch, SamplerSpec


def _windows(n: int, frames: int, size: int) -> list[FrameBatch]:
    rng = np.random.default_rng(0)
    out = []
    for w in range(n):
        f = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
        out.append(
            FrameBatch(
                Clip(f"w{w}", "v.mp4", float(w), w + 2.0),
                f,
                tuple(range(frames)),
                tuple(i / 4 for i in range(frames)),
                SamplerSpec(frames),
            )
        )
    return out


def _minimal(scorer: ClipScorer, windows: list[FrameBatch], batch: int) -> float:
    """The hand-written loop, on the scorer's own model, processor and class embeddings."""
    model, proc, classes = scorer._model, scorer._processor, scorer._classes
    frames = [f for w in windows for f in w.frames]
    start = time.perf_counter()
    with torch.inference_mode():
        embs = []
        for i in range(0, len(frames), batch):
            x = proc(images=frames[i : i + batch], return_tensors="pt").to(scorer._device)
            e = model.get_image_features(**x).pooler_output
            embs.append(e / e.norm(dim=-1, keepdim=True))
        e = torch.cat(embs).view(len(windows), -1, classes.shape[1]).mean(1)
        e = e / e.norm(dim=-1, keepdim=True)
        torch.softmax(model.logit_scale.exp() * e @ classes.T, dim=-1).cpu().numpy()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="CLIP checkpoint (default: a tiny random one built here)")
    p.add_argument("--windows", type=int, default=64)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224, help="frame side in pixels")
    p.add_argument("--batch", type=int, default=32, help="frames per forward pass")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write the results JSON here")
    args = p.parse_args()
    model = args.model or str(build_tiny_clip(Path(tempfile.mkdtemp()) / "clip"))
    spec = ScorerSpec(kind="clip", model=model, batch_size=args.batch, device=args.device)
    scorer = ClipScorer(spec, load_labelset("kinetics-sample"))
    windows = _windows(args.windows, args.frames, args.size)
    scorer.predict(windows[:2])  # warm-up
    _minimal(scorer, windows[:2], args.batch)
    rounds = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        scorer.predict(windows)
        vara_s = time.perf_counter() - t0
        loop_s = _minimal(scorer, windows, args.batch)
        rounds.append({"vara_s": vara_s, "loop_s": loop_s, "ratio": loop_s / vara_s})
    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {
        "config": vars(args) | {"model": model},
        "rounds": rounds,
        "vara_windows_per_s": args.windows / statistics.median(r["vara_s"] for r in rounds),
        "loop_windows_per_s": args.windows / statistics.median(r["loop_s"] for r in rounds),
        "ratio_median": ratio,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
