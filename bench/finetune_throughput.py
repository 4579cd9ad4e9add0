"""Training throughput of the LoRA classifier recipe vs a minimal hand-written peft loop.

In ONE run, alternating the arms (round k runs recipe-then-baseline for even k and
baseline-then-recipe for odd k; --rounds of each, medians reported):
  * recipe:   ``vara.finetune.lora_classifier.run(cfg)`` itself, cfg being the packaged
              lora_classifier.yaml plus overrides (the tiny VLM, a synthetic manifest,
              1 epoch, train.max_steps = --warmup + --steps). Everything the recipe does
              runs: build_model, the param-group AdamW, loop.train_loop (tqdm bar, per-step
              loss.item() and loss list, clip_grad_norm_, autocast, the per-epoch
              validation + checkpoint), the final validation pass and the run directory.
  * baseline: the same backbone loaded with AutoModel/AutoProcessor, get_peft_model with
              the same LoRA config on the same layers, the same VideoClassifier head, a
              plain DataLoader (same windows, same shuffling seed, same batch size) whose
              collate calls the same FrameEncoder (the processor, per batch), AdamW, then
              forward / loss / backward / step / zero_grad and nothing else.
Both arms train on the same cached frames (decoded once, before any clock starts, through
the recipe's own data path ``common.load_data``) and take the same number of optimiser
steps on full batches.

What is timed: a global optimiser step post-hook (torch.optim.optimizer.
register_optimizer_step_post_hook) stamps the clock after every step of either arm, so
the recipe is measured without touching its code. samples/s = batch x (steps after the
warm-up) / (time of the last step - time of the last warm-up step): steady-state training
only, i.e. batch loading + collate (processor), forward, backward, optimiser step and the
recipe's per-step bookkeeping. Model loading, frame decoding, DataLoader start and the
warm-up steps are outside it for both arms; so are the recipe's end-of-epoch validation
and checkpoint (after its last step). Those are reported separately: the whole
``loop.train_loop`` call and the ``loop.validate`` inside it are timed by wrapping the
two functions, and "loop samples/s" = all samples / the whole train loop (warm-up included
in both arms, validation + checkpoint included for the recipe). Target: recipe/baseline
>= 0.9 on the steady-state rate. On CPU without DataLoader workers the same stamps also
give samples per CPU second of this process ("cpu ratio"), which does not count the time
other processes take from an arm (on a quiet machine the two ratios agree; on busy shared
cores contention still moves it, less than the wall clock). Loads on shared cores change
over seconds, so single rounds scatter (0.8-1.3 seen here); hence many short alternating
rounds and medians. Per-step times are in the JSON (step_ms).

The data are synthetic (vara.testing.write_test_video, MJPG .avi via OpenCV, so neither
PyAV nor ../shared is needed) with a two-class single-label label set written beside
them: two training videos, one class each over their whole length, long enough that every
timed step has a full batch, and one 5-s held-out video with both classes (2 s windows,
50 % overlap, as the recipe's defaults).

--gpu-size (CUDA only; without CUDA it prints why and skips): the same two arms once more
with a random-init backbone the size of Qwen2.5-VL-3B (the Qwen2.5-VL-3B-Instruct config:
36 x 2048 text layers, 16 heads / 2 KV heads, MLP 11008, vocab 151936; 32-layer 1280-wide
vision tower with window attention; ~3.75 B parameters), 16 frames per window at
224 x 224 px (64 vision tokens per frame, ~1.1 k tokens per window), LoRA r=16 on the
text model's q/k/v/o projections, and the recipe's defaults otherwise (fp32 weights,
bf16 autocast, batch 4), with --gpu-workers DataLoader workers in both arms (4, as the
config suggests for a GPU box: the processor costs ~20 ms of CPU per 224-px frame, ~1.2 s
per batch of 4 x 16 frames). Reports steady-state samples/s of both arms and peak GPU memory
(torch.cuda.max_memory_allocated over each whole arm: model, training, validation).
Why Qwen2.5-VL with a stand-in processor rather than an Idefics3 scaled up: the model is
the real architecture (window-attention ViT, M-RoPE) at the real size; only the
processor cannot be the real one (Qwen2_5_VLProcessor will not construct without
torchvision, and the Qwen tokenizer is not available offline). The stand-in uses
transformers' own PIL Qwen2-VL image processor (the same resize / rescale / normalise /
patchify work per frame), a small locally trained tokenizer with Qwen's special tokens,
and Qwen's chat layout (<|vision_start|><|image_pad|>x64<|vision_end|> per frame); it is
handed to the recipe by replacing ``lora_classifier.load_backbone`` for that arm, so
build_model, FrameEncoder, Collate and train_loop run unchanged. --gpu-size-smoke runs
that path on CPU with a 2-layer model of the same architecture (checks the code; its
numbers mean nothing).

Needs the package installed (``pip install -e .``; on a machine with its dependencies
already there, ``pip install -e . --no-deps``: vara.finetune lives in finetune/ through a
package-dir mapping, so PYTHONPATH alone is not enough). Never imports vllm or PyAV.

    OMP_NUM_THREADS=1 .venv/bin/python bench/finetune_throughput.py --out /tmp/ft_tp.json
    python bench/finetune_throughput.py --gpu-size --out /tmp/ft_tp_gpu.json   # GPU box
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub load (both read these once, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402

from vara.finetune import common, loop, lora_classifier  # noqa: E402
from vara.finetune.config import load_config  # noqa: E402
from vara.finetune.lora_classifier import LoraConfig  # noqa: E402
from vara.finetune.recipes import resolve_config  # noqa: E402
from vara.prompts.loader import load_labelset, load_prompt  # noqa: E402
from vara.testing import build_tiny_vlm, write_test_video  # noqa: E402
from vara.tools.classifier_model import (  # noqa: E402
    FrameEncoder,
    VideoClassifier,
    backbone_facts,
    lora_target_names,
)

FPS = 25.0

# ---- timing -----------------------------------------------------------------------------


class StepClock:
    """Clock stamps after every optimiser step of any optimizer (a global post-hook), so the
    recipe's own AdamW is timed without changing the recipe. Stamps both the wall clock and
    this process's CPU time: on a shared CPU box other processes steal wall time from
    either arm at random, CPU time (one thread, no DataLoader workers) is far steadier. On
    CUDA the GPU is synchronised at the two stamps the rate uses (the last warm-up step and
    the last step), so a loop that never syncs is not credited with queued, unfinished work.
    """

    def __init__(self, warmup: int, total: int, device: str, workers: int):
        self.warmup, self.total, self.cuda = warmup, total, _cuda(device)
        # CPU time says nothing about GPU work or work in DataLoader worker processes.
        self.cpu_valid = device == "cpu" and workers == 0
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def _hook(self, optimizer, args, kwargs) -> None:
        if self.cuda and len(self.wall) + 1 in (self.warmup, self.total):
            torch.cuda.synchronize()
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def __enter__(self) -> StepClock:
        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def rates(self, batch_size: int) -> dict[str, float]:
        """Steady-state samples per wall second, and per CPU second of this process (CPU
        device without DataLoader workers only; None otherwise)."""
        if len(self.wall) != self.total:
            raise RuntimeError(f"expected {self.total} optimiser steps, saw {len(self.wall)}")
        n = batch_size * (self.total - self.warmup)
        cpu = n / (self.cpu[-1] - self.cpu[self.warmup - 1]) if self.cpu_valid else None
        steps = np.diff(self.wall[self.warmup - 1 :])
        return {
            "samples_per_s": n / (self.wall[-1] - self.wall[self.warmup - 1]),
            "samples_per_cpu_s": cpu,
            "step_ms": [round(1000 * float(x), 2) for x in steps],
        }


@contextlib.contextmanager
def timing(module: Any, name: str, sink: list[float]):
    """Replace ``module.name`` by a wrapper that appends each call's duration to ``sink``."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def patched(module: Any, name: str, value: Any):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _cuda(device: str) -> bool:
    return device.startswith("cuda")


def _release(device: str) -> None:
    gc.collect()
    if _cuda(device):
        torch.cuda.empty_cache()


def _reset_peak(device: str) -> None:
    if _cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    if not _cuda(device):
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


# ---- data -------------------------------------------------------------------------------


LABELSET = """\
name: bench-two
description: Synthetic test videos of two made-up activities.
multi_label: false  # single-label: the recipe picks cross-entropy
labels:
  - name: activity a
    description: The first made-up activity.
  - name: activity b
    description: The second made-up activity.
"""


def synthetic_manifest(work: Path, n_train_windows: int, size: tuple[int, int]) -> Path:
    """An interval manifest (``work/intervals.csv``) and its two-class label set
    (``work/labels.yaml``): two training videos, one class each over their whole length,
    with at least ``n_train_windows`` 2-s windows together, and a 5-s held-out video with
    both classes (a on 0-2.5 s, b after: 4 windows). MJPG .avi via OpenCV: no PyAV."""
    (work / "labels.yaml").write_text(LABELSET)
    seconds = (n_train_windows + 1) // 2 + 1  # 2-s windows every 1 s: L - 1 in L seconds
    videos = {
        name: write_test_video(
            work / f"{name}.avi", n_frames=int(secs * FPS), fps=FPS, size=size, seed=i
        )
        for i, (name, secs) in enumerate([("train0", seconds), ("train1", seconds), ("val", 5)])
    }
    rows = [
        (videos["train0"], "activity a", 0, seconds),
        (videos["train1"], "activity b", 0, seconds),
        (videos["val"], "activity a", 0, 2.5),
        (videos["val"], "activity b", 2.5, 5),
    ]
    manifest = work / "intervals.csv"
    lines = ["video,label,start_s,end_s", *(",".join(map(str, row)) for row in rows)]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def recipe_config(manifest: Path, backbone: str, out: Path, args_overrides: Sequence[str]):
    """The packaged lora_classifier.yaml + overrides, read exactly as `vara finetune` does."""
    overrides = [
        f"data.manifest={manifest}",
        f"data.labels={manifest.with_name('labels.yaml')}",
        f"model.backbone={backbone}",
        f"out={out}",
        "split.val_videos=[val.avi]",
        "train.epochs=1",
        *args_overrides,
    ]
    return load_config(LoraConfig, resolve_config("lora_classifier"), overrides)


# ---- the two arms -----------------------------------------------------------------------

Loader = Callable[[], tuple[nn.Module, Any]]  # -> (backbone, processor)


def recipe_arm(
    cfg: LoraConfig, frames: Path, warmup: int, *, progress: bool, load: Loader | None = None
) -> dict[str, Any]:
    """``lora_classifier.run(cfg)``, its frame cache the one decoded up front."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, frames_dir=str(frames)))
    out = Path(cfg.out)
    out.mkdir(parents=True)
    device = common.resolve_device(cfg.train.device)
    total = cfg.train.max_steps
    loops: list[float] = []
    vals: list[float] = []
    _reset_peak(device)
    with contextlib.ExitStack() as stack:
        if load is not None:
            stack.enter_context(patched(lora_classifier, "load_backbone", lambda *_a, **_k: load()))
        stack.enter_context(timing(loop, "train_loop", loops))
        stack.enter_context(timing(loop, "validate", vals))
        clock = stack.enter_context(
            StepClock(warmup, total, device, common.resolve_workers(cfg.train.num_workers, device))
        )
        t0 = time.perf_counter()
        lora_classifier.run(cfg, progress=progress)
        wall = time.perf_counter() - t0
    card = json.loads((out / "run_card.json").read_text())
    bs = cfg.train.batch_size
    result = {
        **clock.rates(bs),
        "loop_samples_per_s": bs * total / loops[0],
        "train_loop_s": loops[0],
        "validation_s": sum(vals),
        "run_s": wall,
        "peak_gpu_gib": _peak_gib(device),
        "final_train_loss": card["final"]["train_loss"],
        "trainable_parameters": card["trainable_parameters"],
        "total_parameters": card["total_parameters"],
    }
    _release(device)
    return result


def plain_collate(encoder: FrameEncoder, items) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The baseline's collate: the processor call per batch, and the targets (module-level,
    so DataLoader workers can take it under any start method)."""
    return encoder([f for f, _ in items]), torch.as_tensor(np.stack([y for _, y in items]))


def baseline_arm(
    load: Loader, data: common.TrainData, cfg: LoraConfig, instruction: str, warmup: int
) -> dict[str, Any]:
    """The minimal loop: same model, same collate, same batches; nothing but the steps."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model

    device = common.resolve_device(cfg.train.device)
    t, lo = cfg.train, cfg.lora
    _reset_peak(device)
    common.seed_everything(cfg.seed)
    backbone, processor = load()
    hidden, image_token = backbone_facts(backbone)
    targets = lora_target_names(backbone, lo.target_modules, lo.vision_tower)
    backbone = get_peft_model(
        backbone,
        PeftLora(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=targets),
    )
    model = VideoClassifier(
        backbone,
        hidden_size=hidden,
        n_classes=len(data.labelset.labels),
        image_token_id=image_token,
        pooling=cfg.model.pooling,
        head_hidden=cfg.model.head_hidden,
        dropout=cfg.model.dropout,
    ).to(device)
    collate = functools.partial(plain_collate, FrameEncoder(processor, instruction))
    workers = common.resolve_workers(t.num_workers, device)
    loader = torch.utils.data.DataLoader(
        data.train,
        batch_size=t.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.seed),
        num_workers=workers,
    )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    # bf16 autocast on CUDA, as the recipe's precision=auto does; off on CPU.
    amp = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=_cuda(device))
    model.train()
    total = t.max_steps
    with StepClock(warmup, total, device, workers) as clock:
        t0 = time.perf_counter()
        for step, (inputs, y) in enumerate(loader, 1):
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with amp:
                logits = model(inputs)
            loss = loss_fn(logits.float(), y.to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step == total:
                break
        if _cuda(device):
            torch.cuda.synchronize()
        loop_s = time.perf_counter() - t0
    result = {
        **clock.rates(t.batch_size),
        "loop_samples_per_s": t.batch_size * total / loop_s,
        "train_loop_s": loop_s,
        "final_train_loss": loss.item(),
        "peak_gpu_gib": _peak_gib(device),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    del model, optimizer, backbone, loader
    _release(device)
    return result


# row key -> the per-arm rate it divides (recipe / baseline)
RATIOS = {
    "ratio": "samples_per_s",
    "cpu_ratio": "samples_per_cpu_s",
    "loop_ratio": "loop_samples_per_s",
}


def compare(
    label: str,
    cfg_for: Callable[[str], LoraConfig],
    load: Loader,
    work: Path,
    rounds: int,
    warmup: int,
    *,
    progress: bool,
    recipe_load: Loader | None = None,
) -> dict[str, Any]:
    """Decode the frames once, then ``rounds`` alternating rounds of both arms."""
    data_cfg = cfg_for(str(work / "data"))
    Path(data_cfg.out).mkdir(parents=True)
    labelset = load_labelset(data_cfg.data.labels)
    data = common.load_data(data_cfg, Path(data_cfg.out), labelset, progress=False)
    frames = Path(data_cfg.out) / "frames"
    t = data_cfg.train
    need = t.batch_size * t.max_steps
    if len(data.train) < need:
        raise SystemExit(f"{label}: {len(data.train)} training windows < {need} needed")
    instruction = load_prompt(data_cfg.model.instruction).render(
        domain=data.labelset.description, n_frames=data_cfg.data.n_frames
    )
    rows = []
    for k in range(rounds):
        row: dict[str, Any] = {}
        order = ("recipe", "baseline") if k % 2 == 0 else ("baseline", "recipe")
        for arm in order:
            if arm == "recipe":
                cfg = cfg_for(str(work / f"recipe-{k}"))
                row["recipe"] = recipe_arm(cfg, frames, warmup, progress=progress, load=recipe_load)
            else:
                row["baseline"] = baseline_arm(load, data, data_cfg, instruction.user, warmup)
        if row["recipe"]["trainable_parameters"] != row["baseline"]["trainable_parameters"]:
            raise SystemExit(f"{label}: the arms train different parameter counts: {row}")
        for name, key in RATIOS.items():
            a, b = row["recipe"][key], row["baseline"][key]
            row[name] = a / b if a is not None and b is not None else None
        row["order"] = list(order)
        cpu = "" if row["cpu_ratio"] is None else f" (per CPU second {row['cpu_ratio']:.3f})"
        print(
            f"[{label}] round {k + 1}/{rounds} ({' then '.join(order)}): "
            f"recipe {row['recipe']['samples_per_s']:.3f} samples/s, "
            f"baseline {row['baseline']['samples_per_s']:.3f} samples/s, "
            f"ratio {row['ratio']:.3f}{cpu}",
            flush=True,
        )
        rows.append(row)

    def med(values) -> float | None:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def arm(name: str, key: str) -> float | None:
        return med(r[name].get(key) for r in rows)

    return {
        "label": label,
        "rounds": rows,
        "windows": {"train": len(data.train), "val": len(data.val)},
        "steps": {"warmup": warmup, "timed": t.max_steps - warmup, "batch_size": t.batch_size},
        "recipe_samples_per_s": arm("recipe", "samples_per_s"),
        "baseline_samples_per_s": arm("baseline", "samples_per_s"),
        "ratio": med(r["ratio"] for r in rows),
        "recipe_samples_per_cpu_s": arm("recipe", "samples_per_cpu_s"),
        "baseline_samples_per_cpu_s": arm("baseline", "samples_per_cpu_s"),
        "cpu_ratio": med(r["cpu_ratio"] for r in rows),
        "recipe_loop_samples_per_s": arm("recipe", "loop_samples_per_s"),
        "baseline_loop_samples_per_s": arm("baseline", "loop_samples_per_s"),
        "loop_ratio": med(r["loop_ratio"] for r in rows),
        "recipe_validation_s": arm("recipe", "validation_s"),
        "recipe_peak_gpu_gib": arm("recipe", "peak_gpu_gib"),
        "baseline_peak_gpu_gib": arm("baseline", "peak_gpu_gib"),
        "trainable_parameters": rows[0]["recipe"]["trainable_parameters"],
        "total_parameters": rows[0]["recipe"]["total_parameters"],
    }


# ---- the tiny model ---------------------------------------------------------------------


def tiny(args, work: Path) -> dict[str, Any]:
    from transformers import AutoModel, AutoProcessor

    model_dir = build_tiny_vlm(work / "tiny-vlm")
    total = args.warmup + args.steps
    manifest = synthetic_manifest(work, args.batch_size * total, (320, 240))
    overrides = [
        f"train.max_steps={total}",
        f"train.batch_size={args.batch_size}",
        f"data.n_frames={args.frames}",
        f"train.device={args.device}",
    ]

    def cfg_for(out: str) -> LoraConfig:
        return recipe_config(manifest, str(model_dir), Path(out), overrides)

    def load() -> tuple[nn.Module, Any]:
        kw = {"local_files_only": True}
        return (
            AutoModel.from_pretrained(model_dir, dtype=torch.float32, **kw),
            AutoProcessor.from_pretrained(model_dir, **kw),
        )

    return compare(
        "tiny",
        cfg_for,
        load,
        work / "tiny",
        args.rounds,
        args.warmup,
        progress=not args.no_progress,
    )


# ---- the Qwen2.5-VL-3B-sized model (--gpu-size) -----------------------------------------

QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_VISION = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def qwen_tokenizer(corpus: Sequence[str]):
    """Byte-level BPE trained on the prompt text, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=list(QWEN_SPECIAL),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(corpus) * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )


class QwenStandInProcessor:
    """What FrameEncoder uses of a processor, for Qwen2.5-VL without torchvision: Qwen's chat
    layout, transformers' PIL Qwen2-VL image processor (every frame resized to
    ``image_size`` square, rescaled, normalised, patchified: grid 1 x s/14 x s/14), one
    <|image_pad|> per merged 2x2 patch, and mm_token_type_ids as Qwen2_5_VLProcessor
    returns them (the model's M-RoPE positions need them)."""

    def __init__(self, tokenizer, image_size: int):
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        self.tokenizer = tokenizer
        pixels = image_size * image_size
        self.image_processor = Qwen2VLImageProcessorPil(min_pixels=pixels, max_pixels=pixels)
        self.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def apply_chat_template(self, conversation, add_generation_prompt=False, tokenize=False):
        text = QWEN_SYSTEM
        for message in conversation:
            body = "".join(
                QWEN_VISION if p["type"] == "image" else p["text"] for p in message["content"]
            )
            text += f"<|im_start|>{message['role']}\n{body}<|im_end|>\n"
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def __call__(self, *, text, images, return_tensors="pt", padding=True):
        flat = [image for window in images for image in window]
        pix = self.image_processor(flat, return_tensors="pt")
        merge = self.image_processor.merge_size**2
        counts = iter((pix["image_grid_thw"].prod(-1) // merge).tolist())
        expanded = []
        for prompt in text:
            pieces = prompt.split("<|image_pad|>")
            out = pieces[0]
            for piece in pieces[1:]:
                out += "<|image_pad|>" * next(counts) + piece
            expanded.append(out)
        enc = self.tokenizer(expanded, padding=padding, return_tensors=return_tensors)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "pixel_values": pix["pixel_values"],
            "image_grid_thw": pix["image_grid_thw"],
            "mm_token_type_ids": (enc["input_ids"] == self.image_token_id).int(),
        }


def qwen25_vl_3b_config(tokenizer, smoke: bool):
    """The Qwen2.5-VL-3B-Instruct architecture (config.json of the hub checkpoint), with the
    special-token ids of the stand-in tokenizer; ``smoke``: 2 narrow text + vision layers."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "default",
            "mrope_section": [16, 24, 24],
            "rope_theta": 1000000.0,
        },
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
        hidden_act="silu",
    )
    if smoke:  # head_dim stays 128 (M-RoPE sections 16+24+24 = 64 pairs)
        text.update(
            num_hidden_layers=2,
            vocab_size=4096,
            hidden_size=256,
            intermediate_size=512,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
        vision.update(
            depth=2,
            fullatt_block_indexes=[1],
            hidden_size=128,
            intermediate_size=256,
            num_heads=2,
            out_hidden_size=256,
        )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=True,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def gpu_size(args, work: Path) -> dict[str, Any]:
    from transformers import AutoModel

    device = "cpu" if args.gpu_size_smoke else "cuda"
    frames, side = args.gpu_frames, args.gpu_image_size
    total = args.gpu_warmup + args.gpu_steps
    manifest = synthetic_manifest(work, args.gpu_batch_size * total, (side, side))
    labelset = load_labelset(manifest.with_name("labels.yaml"))
    instruction = load_prompt("classify.v1").render(domain=labelset.description, n_frames=frames)
    tokenizer = qwen_tokenizer([instruction.user, QWEN_SYSTEM, QWEN_VISION])
    config = qwen25_vl_3b_config(tokenizer, args.gpu_size_smoke)
    overrides = [
        f"train.max_steps={total}",
        f"train.batch_size={args.gpu_batch_size}",
        f"data.n_frames={frames}",
        f"data.max_side={side}",
        f"train.device={device}",
        f"train.num_workers={args.gpu_workers}",
        "train.eval_batch_size=4",
        "lora.r=16",
        "lora.alpha=32",
    ]

    def cfg_for(out: str) -> LoraConfig:
        return recipe_config(manifest, "random-init-qwen2.5-vl-3b", Path(out), overrides)

    def load() -> tuple[nn.Module, Any]:
        # Initialised on the device itself: a CPU init of 3.75 B parameters takes minutes.
        with torch.device(device):
            backbone = AutoModel.from_config(config, dtype=torch.float32)
        return backbone, QwenStandInProcessor(tokenizer, side)

    result = compare(
        "qwen2.5-vl-3b-size",
        cfg_for,
        load,
        work / "gpu",
        args.gpu_rounds,
        args.gpu_warmup,
        progress=not args.no_progress,
        recipe_load=load,
    )
    result["setup"] = {
        "model": "Qwen2.5-VL-3B architecture, random init"
        + (" (SMOKE: 2+2 layers)" if args.gpu_size_smoke else ""),
        "frames": frames,
        "image_px": side,
        "lora_r": 16,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
    }
    return result


# ---- report -----------------------------------------------------------------------------


def table(results: list[dict[str, Any]], target: float) -> str:
    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    def ok(v):
        return "-" if v is None else ("yes" if v >= target else "NO")

    cols = [
        ("model", 20),
        ("rounds", 6),
        ("recipe/s", 9),
        ("base/s", 9),
        ("ratio", 6),
        (f">={target}", 6),
        ("cpu ratio", 9),
        ("loop ratio", 10),
        ("val s", 6),
        ("peak GiB r/b", 13),
    ]

    def line(cells) -> str:  # first column left-aligned, the others right-aligned
        pairs = enumerate(zip(cells, cols, strict=True))
        return " ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, (_, w)) in pairs)

    lines = [line([name for name, _ in cols])]
    lines.append("-" * len(lines[0]))
    for r in results:
        peak = f"{f(r['recipe_peak_gpu_gib'], '.2f')}/{f(r['baseline_peak_gpu_gib'], '.2f')}"
        cells = [
            r["label"],
            len(r["rounds"]),
            f(r["recipe_samples_per_s"]),
            f(r["baseline_samples_per_s"]),
            f(r["ratio"]),
            ok(r["ratio"]),
            f(r["cpu_ratio"]),
            f(r["loop_ratio"]),
            f(r["recipe_validation_s"], ".2f"),
            peak,
        ]
        lines.append(line(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="alternating rounds of each arm on the tiny model (0: skip it)",
    )
    ap.add_argument("--warmup", type=int, default=5, help="untimed optimiser steps per arm")
    ap.add_argument("--steps", type=int, default=30, help="timed optimiser steps per arm")
    ap.add_argument("--batch-size", type=int, default=4, help="windows per step (recipe default)")
    ap.add_argument("--frames", type=int, default=8, help="frames per window (recipe default)")
    ap.add_argument("--device", default="auto", help="tiny model's device: auto | cpu | cuda")
    ap.add_argument(
        "--no-progress",
        action="store_true",
        help="recipe arm without its tqdm bar (default: on, as `vara finetune`)",
    )
    ap.add_argument("--target", type=float, default=0.9, help="recipe/baseline ratio to meet")
    ap.add_argument(
        "--gpu-size",
        action="store_true",
        help="also the Qwen2.5-VL-3B-sized backbone (CUDA only; skipped otherwise)",
    )
    ap.add_argument(
        "--gpu-size-smoke",
        action="store_true",
        help="run the --gpu-size path on CPU with 2+2 layers (code check only)",
    )
    ap.add_argument("--gpu-rounds", type=int, default=1, help="rounds of each arm, 3B size")
    ap.add_argument("--gpu-warmup", type=int, default=2, help="untimed steps per arm, 3B size")
    ap.add_argument("--gpu-steps", type=int, default=8, help="timed steps per arm, 3B size")
    ap.add_argument("--gpu-batch-size", type=int, default=4, help="windows per step, 3B size")
    ap.add_argument("--gpu-frames", type=int, default=16, help="frames per window, 3B size")
    ap.add_argument("--gpu-image-size", type=int, default=224, help="frame side in px, 3B size")
    ap.add_argument(
        "--gpu-workers",
        type=int,
        default=4,
        help="DataLoader workers (both arms), 3B size; the config suggests 4 on GPUs",
    )
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (videos, frame cache, run dirs; ~400 MB)",
    )
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load reports of the headless AutoModel, per arm
    if args.warmup < 1 or args.gpu_warmup < 1:
        ap.error("--warmup and --gpu-warmup must be >= 1 (the rate starts at a step's stamp)")
    work = Path(tempfile.mkdtemp(prefix="vara-ft-throughput-"))
    t0 = time.perf_counter()
    results, notes = [], []
    run_gpu = args.gpu_size_smoke or (args.gpu_size and torch.cuda.is_available())
    if args.gpu_size and not run_gpu:
        notes.append("--gpu-size skipped: no CUDA device (torch.cuda.is_available() is False)")
        print(notes[-1], flush=True)
    if args.rounds > 0:
        results.append(tiny(args, work))
    if run_gpu:
        try:
            results.append(gpu_size(args, work))
        except torch.cuda.OutOfMemoryError as exc:
            notes.append(
                f"--gpu-size: CUDA out of memory ({str(exc).splitlines()[0]}); "
                "try a smaller --gpu-batch-size"
            )
    wall = time.perf_counter() - t0
    print()
    if results:
        print(table(results, args.target))
    for r in results:
        print(
            f"{r['label']}: {r['steps']['timed']} timed steps x batch {r['steps']['batch_size']} "
            f"after {r['steps']['warmup']} warm-up, {r['trainable_parameters']:,} trainable of "
            f"{r['total_parameters']:,} parameters; ratio = median of per-round "
            f"recipe/baseline steady-state samples/s"
        )
    for note in notes:
        print(note)
    if args.keep:
        print(f"total wall time {wall:.1f} s (work dir kept: {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
        print(f"total wall time {wall:.1f} s")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "results": results,
                    "notes": notes,
                    "wall_s": wall,
                    "args": vars(args),
                    "torch_threads": torch.get_num_threads(),
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
