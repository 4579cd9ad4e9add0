"""Scoring throughput of a trained LoRA classifier: precision and batching.

Trains a run directory through the recipe itself (``lora_classifier.run``, one optimiser
step: the weights do not matter here), loads it with ``tools.classifier.Classifier`` as
``vara eval --strategy classifier`` does, and scores the same --windows windows (random
uint8 frames at the run's frame count and size) in each arm, all in ONE run:
  * b1:    one window per call, ``batch_size`` 1 (the baseline: no batching at all);
  * b8:    one call with every window, ``batch_size`` 8 (the forward-pass batching alone);
  * conc8: --concurrency threads, each scoring one window per call, ``batch_size`` 8: how
           the runner calls it (windows in flight are batched by whoever holds the model);
each under fp32 and under bf16 autocast (``scorer.precision``). One loaded classifier
serves every arm (its ``batch_size`` and ``precision`` are set between arms), so the model
is loaded once. Each arm is warmed up by one untimed call. Also timed: the processor alone
(``FrameEncoder`` on the same windows, 8 per call), the CPU share of every arm. Reports
windows/s and the ratio to fp32-b1 of the same run, and checks that the classifier with
``precision: auto`` reproduces the run's validation scores (val_logits.npy, where the
thresholds were tuned) bit for bit.

--size tiny (default): the tiny Idefics3 VLM on CPU (checks the code; on 2 shared cores the
numbers scatter). --size 3b (CUDA only): a random-init backbone the size of Qwen2.5-VL-3B
with the stand-in processor of ``finetune_throughput.py --gpu-size`` (16 frames at 224 px,
LoRA r=16); peak GPU memory per precision is reported too.

    OMP_NUM_THREADS=1 .venv/bin/python bench/classifier_throughput.py --out /tmp/clf.json
    python bench/classifier_throughput.py --size 3b --out /tmp/clf_3b.json   # GPU box
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from finetune_throughput import (  # noqa: E402
    QWEN_SYSTEM,
    QWEN_VISION,
    QwenStandInProcessor,
    patched,
    qwen25_vl_3b_config,
    qwen_tokenizer,
    recipe_config,
    synthetic_manifest,
)

from vara.finetune import lora_classifier  # noqa: E402
from vara.finetune.data import cache_frames  # noqa: E402
from vara.prompts.loader import load_labelset, load_prompt  # noqa: E402
from vara.testing import build_tiny_vlm  # noqa: E402
from vara.tools import classifier_model  # noqa: E402
from vara.tools.classifier import Classifier  # noqa: E402
from vara.tools.datasets import load_dataset  # noqa: E402
from vara.types import SamplerSpec  # noqa: E402


def loader_for(args, work: Path, manifest: Path):
    """(backbone id for the config, load() -> (backbone, processor), device, frames, side)."""
    from transformers import AutoModel, AutoProcessor

    if args.size == "tiny":
        model_dir = build_tiny_vlm(work / "tiny-vlm")

        def load():
            kw = {"local_files_only": True}
            return (
                AutoModel.from_pretrained(model_dir, dtype=torch.float32, **kw),
                AutoProcessor.from_pretrained(model_dir, **kw),
            )

        return str(model_dir), load, "cpu", 8, 224
    labelset = load_labelset(manifest.with_name("labels.yaml"))
    text = load_prompt("classify.v1").render(domain=labelset.description, n_frames=16).user
    tokenizer = qwen_tokenizer([text, QWEN_SYSTEM, QWEN_VISION])
    config = qwen25_vl_3b_config(tokenizer, smoke=False)

    def load():
        torch.manual_seed(0)  # the same random backbone in training and scoring
        with torch.device("cuda"):
            backbone = AutoModel.from_config(config, dtype=torch.float32)
        return backbone, QwenStandInProcessor(tokenizer, 224)

    return "random-init-qwen2.5-vl-3b", load, "cuda", 16, 224


def train_run(args, work: Path) -> tuple[Path, Any, str, int, int]:
    manifest = synthetic_manifest(work, 8, (320, 240))
    backbone, load, device, frames, side = loader_for(args, work, manifest)
    overrides = [
        "train.max_steps=1",
        "train.batch_size=4",
        "train.eval_batch_size=4",
        f"data.n_frames={frames}",
        f"data.max_side={side}",
        f"train.device={device}",
        "lora.r=16",
        "lora.alpha=32",
        f"data.frames_dir={work / 'frames'}",
    ]
    cfg = recipe_config(manifest, backbone, work / "run", overrides)
    with patched(lora_classifier, "load_backbone", lambda *_a, **_k: load()):
        lora_classifier.run(cfg, progress=False)
    if device == "cuda":
        torch.cuda.empty_cache()
    return work / "run", load, device, frames, side


def val_windows(run: Path) -> list[np.ndarray]:
    """The run's validation windows, from its frame cache (data.frames_dir: kept)."""
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    labelset = load_labelset(data["labels"])
    sampler = SamplerSpec(n_frames=data["n_frames"], max_side=data["max_side"])
    clips = load_dataset(run / "val.jsonl", labelset).clips
    root = Path(data["frames_dir"])
    return [np.load(p) for p in cache_frames(clips, sampler, root, progress=False)]


def score_arm(clf: Classifier, windows: list[np.ndarray], mode: str, concurrency: int) -> float:
    """Seconds to score every window in ``mode`` (b1 | b8 | conc8)."""
    if mode == "b1":
        t0 = time.perf_counter()
        for w in windows:
            clf.logits([w])
        return time.perf_counter() - t0
    if mode == "b8":
        t0 = time.perf_counter()
        clf.logits(windows)
        return time.perf_counter() - t0
    todo = list(range(len(windows)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            clf.logits([windows[i]])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("tiny", "3b"), default="tiny")
    ap.add_argument("--windows", type=int, default=32, help="windows scored per arm")
    ap.add_argument("--concurrency", type=int, default=8, help="threads of the conc8 arm")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if args.size == "3b" and not torch.cuda.is_available():
        raise SystemExit("--size 3b needs a CUDA device (torch.cuda.is_available() is False)")
    work = Path(tempfile.mkdtemp(prefix="vara-clf-throughput-"))
    t_start = time.perf_counter()
    try:
        run, load, device, frames, side = train_run(args, work)
        with patched(classifier_model, "load_backbone", lambda *_a, **_k: load()):
            clf = Classifier(run, device=device, batch_size=8)  # precision: auto
        auto = clf.precision
        rng = np.random.default_rng(0)
        windows = [
            rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
            for _ in range(args.windows)
        ]
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(windows), 8):
            clf._encode(windows[i : i + 8])
        encode = {"s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        print(f"processor alone: {args.windows / encode['s']:.2f} windows/s", flush=True)
        rows: list[dict[str, Any]] = []
        for precision in ("fp32", "bf16"):
            clf.precision = precision
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            for mode in ("b1", "b8", "conc8"):
                clf.batch_size = 1 if mode == "b1" else 8
                score_arm(clf, windows[: min(8, len(windows))], mode, args.concurrency)  # warm-up
                c0 = time.process_time()
                seconds = score_arm(clf, windows, mode, args.concurrency)
                row = {
                    "precision": precision,
                    "mode": mode,
                    "s": seconds,
                    "cpu_s": time.process_time() - c0,
                    "windows_per_s": args.windows / seconds,
                }
                rows.append(row)
                print(
                    f"{precision} {mode:5s}: {row['windows_per_s']:.2f} windows/s "
                    f"({seconds:.2f} s, CPU {row['cpu_s']:.2f} s)",
                    flush=True,
                )
            if device == "cuda":
                peak = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                for r in rows[-3:]:
                    r["peak_gpu_gib"] = peak
        # Same windows, both precisions: how far apart the scores are (the thresholds were
        # tuned under the run's own; see docs/finetune.md).
        clf.batch_size = 8
        clf.precision = "fp32"
        a = clf.logits(windows)
        clf.precision = "bf16"
        b = clf.logits(windows)
        diff = float(np.abs(a - b).max())
        # The run's validation scores (val_logits.npy, where the thresholds were tuned) under
        # the precision `auto` picks, in the training's eval batches: bit for bit?
        clf.precision = auto
        clf.batch_size = 4  # = train.eval_batch_size
        want = np.load(run / "val_logits.npy")
        got = clf.logits(val_windows(run))
        check = {
            "run_precision": clf.info.precision,
            "auto_precision": clf.precision,
            "val_logits_identical": bool(np.array_equal(got, want)),
            "val_logits_max_abs_diff": float(np.abs(got - want).max()),
        }
        print(
            f"validation scores under auto ({clf.precision}; run: {clf.info.precision}): "
            f"identical {check['val_logits_identical']}, max |diff| "
            f"{check['val_logits_max_abs_diff']:.2e}",
            flush=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["windows_per_s"]
    print(f"\n{'precision':9s} {'mode':6s} {'windows/s':>10s} {'vs fp32 b1':>10s}")
    for r in rows:
        r["ratio_to_fp32_b1"] = r["windows_per_s"] / base
        print(
            f"{r['precision']:9s} {r['mode']:6s} {r['windows_per_s']:10.2f} "
            f"{r['ratio_to_fp32_b1']:10.2f}"
        )
    print(f"max |logit fp32 - bf16| over {args.windows} windows: {diff:.4f}")
    wall = time.perf_counter() - t_start
    print(f"total wall time {wall:.1f} s")
    if args.out:
        device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        args.out.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "device": device_name,
                    "frames": frames,
                    "side": side,
                    "windows": args.windows,
                    "concurrency": args.concurrency,
                    "encode": encode,
                    "rows": rows,
                    "max_abs_logit_diff_fp32_bf16": diff,
                    "validation_check": check,
                    "wall_s": wall,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
