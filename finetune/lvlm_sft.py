"""Recipe: LoRA supervised fine-tuning of a VLM to ANSWER: labels, evidence and an explanation
(LVLM-VAR's tuning step), as an adapter vLLM serves.

    vara finetune lvlm_sft data.manifest=labels.csv model.backbone=ID_OR_PATH out=runs/sft

The model reads exactly what the ``direct`` strategy sends (``model.prompt``, default
``direct.v1``: the label set, the frame times, the window's frames as images, through the
model's own chat template) and learns to reply with the window's target answer: the JSON
object every strategy produces (``finetune/sft_targets.py``: true labels; evidence and
explanation from the manifest's ``explanation`` column or a served teacher). The loss is
the language-model cross-entropy on the answer tokens only (the prompt and the images are
masked out). peft LoRA adapts the language model (``lora.target_modules``), or every
matching layer, vision tower and connector included (``lora.vision_tower: true``).

Same habits as the classifier recipes (``common``, ``loop``, ``rundir``): split by video
(and group), frame cache, a checkpoint per epoch and resume, a run card. The run directory
holds a standard PEFT adapter (``adapter/``: ``adapter_config.json`` +
``adapter_model.safetensors``), so ``vara serve BASE --lora NAME=OUT/adapter`` serves it and
``--set vlm.model=NAME`` selects it; ``sft.json`` says what it was trained for.

``model.mode: tokens`` trains the text side of LVLM-VAR instead: the model reads the action
narrative (the semantic-tokens strategy's answer prompt, ``narrative.v1``/``v2``, rendered from
the manifest's per-frame ``tags`` exactly as the graph renders the VLM's tags), text only,
and the adapter then serves as that strategy's LLM.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vara.errors import InputError
from vara.finetune import common, loop, rundir
from vara.finetune.config import Config, load_config
from vara.finetune.data import WindowFrames
from vara.finetune.lora_classifier import LoraSpec
from vara.finetune.sft_collate import Example, SftCollate
from vara.finetune.sft_targets import (
    check_sources,
    column_values,
    from_column,
    from_teacher,
    no_targets,
)
from vara.prompts.loader import load_prompt
from vara.records import write_json_atomic
from vara.tools.classifier_model import own_memory
from vara.tools.frame_batches import frame_plan, iter_frame_batches
from vara.tools.local_engine import model_source, not_loadable
from vara.tools.narrative import narrative_items, span_text, tags_text
from vara.tools.reason import AnswerInvalid, parse_tokens, time_ref, tokens_schema
from vara.types import Clip, LabelSet, SamplerSpec

__all__ = ["ModelSpec", "SftConfig", "TeacherSpec", "run"]

log = logging.getLogger(__name__)

MODES = ("frames", "tokens")


@dataclass(frozen=True)
class ModelSpec:
    backbone: str = "HuggingFaceTB/SmolVLM-256M-Instruct"  # hub id or local path (generative)
    # frames: the direct prompt + the frames | tokens: the action narrative (text only) of
    # the manifest's per-frame `tags`, as the semantic-tokens strategy shows it
    mode: str = "frames"
    prompt: str = "direct.v1"  # what the model reads: the strategy's answer prompt

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"model.mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "tokens" and self.prompt == "direct.v1":
            raise ValueError(
                "model.mode=tokens reads a narrative: set model.prompt=narrative.v1 (or v2), "
                "the semantic-tokens strategy's answer prompt"
            )


@dataclass(frozen=True)
class TeacherSpec:
    llm_url: str | None = None  # a served LLM that writes evidence + explanation targets
    model: str | None = None  # its served model name (None: the only one it serves)
    max_tokens: int = 512


@dataclass(frozen=True)
class SftConfig(Config):
    model: ModelSpec = field(default_factory=ModelSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)

    SECTIONS: ClassVar[dict[str, type]] = {
        **Config.SECTIONS,
        "model": ModelSpec,
        "lora": LoraSpec,
        "teacher": TeacherSpec,
    }


class SftModel(nn.Module):
    """The peft-wrapped generative VLM; ``model(inputs)`` -> the answer tokens' mean loss.
    Held as ``net`` (never ``config``: peft would take the wrapper for a transformers model)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(**inputs).loss


def target_regex(net: nn.Module, modules: Sequence[str], vision: bool) -> str:
    """peft ``target_modules`` as one regex over the module names, in the form vLLM's LoRA
    loader accepts (STACK-NOTES: ``.*text_model.*\\.(q_proj|v_proj)``)."""
    names = "|".join(re.escape(m) for m in modules)
    if vision:
        return rf".*\.({names})"
    decoder = net.get_decoder() if hasattr(net, "get_decoder") else None
    prefix = next((n for n, m in net.named_modules() if m is decoder), None)
    if not prefix:
        raise ValueError(
            f"cannot find the language model inside {type(net).__name__}: set "
            "lora.vision_tower: true to adapt matching layers everywhere"
        )
    return rf"{re.escape(prefix)}\..*\.({names})"


def build_model(cfg: SftConfig, labelset: LabelSet, device: str) -> tuple[SftModel, Any]:
    """The generative VLM with LoRA adapters (peft), and its processor."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source, kwargs = model_source(cfg.model.backbone)
    try:
        processor = AutoProcessor.from_pretrained(source, **kwargs)
        net = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise not_loadable(cfg.model.backbone, exc) from None
    own_memory(net)
    peft_cfg = PeftLora(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=target_regex(net, cfg.lora.target_modules, cfg.lora.vision_tower),
    )
    return SftModel(get_peft_model(net, peft_cfg)).to(device), processor


def _times(clip: Clip, sampler: SamplerSpec) -> tuple[float, ...]:
    plan = frame_plan(clip.video, clip, sampler)
    if plan is not None:
        return plan.timestamps_s
    [batch] = list(iter_frame_batches(clip.video, [clip], sampler))  # VFR: decode to know
    return batch.timestamps_s


@dataclass(frozen=True)
class Window:
    """What the prompt shows of one window: its frame times, its per-frame tags (tokens
    mode) and the refs an answer may cite."""

    times: tuple[float, ...]
    tags: tuple[dict[str, Any], ...] | None
    refs: tuple[str, ...]
    quotes: dict[str, str] | None = None  # ref -> the text it shows (tokens mode)


def _tags(cfg: SftConfig, clips: Sequence[Clip], times) -> dict[str, tuple[dict, ...]]:
    """Tokens mode: each window's per-frame tags from the manifest's ``tags`` column (a list
    of one {actors, actions, objects, body_parts, tools, motion} per frame; JSON text in a
    CSV), checked against the tokens schema for its frame count."""
    template = load_prompt("tokens.v1").schema
    values = column_values(cfg.data.manifest, clips, "tags")
    out = {}
    for clip in clips:
        raw = values.get(clip.clip_id)
        if raw is None:
            raise InputError(
                f"model.mode=tokens: window {clip.clip_id} has no 'tags' in "
                f"{cfg.data.manifest!r}; give every row its per-frame tags (docs/finetune.md)"
            )
        schema = tokens_schema(template, len(times[clip.clip_id]))
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw  # CSV: JSON text
            frames = value["frames"] if isinstance(value, dict) else value
            out[clip.clip_id] = parse_tokens(json.dumps({"frames": frames}), schema)
        except (AnswerInvalid, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"model.mode=tokens: window {clip.clip_id}'s tags: {exc}") from None
    return out


def windows(cfg: SftConfig, clips: Sequence[Clip]) -> dict[str, Window]:
    sampler = SamplerSpec(n_frames=cfg.data.n_frames, max_side=cfg.data.max_side)
    times = {c.clip_id: _times(c, sampler) for c in clips}
    if cfg.model.mode == "frames":
        return {k: Window(t, None, tuple(time_ref(x) for x in t)) for k, t in times.items()}
    tags = _tags(cfg, clips, times)
    spans = "spans" in load_prompt(cfg.model.prompt).variables
    out = {}
    for k, t in times.items():
        items, merged = narrative_items(t, tags[k])
        shown = merged if spans else items
        quotes = {i["ref"]: tags_text(i["tags"]) for i in shown}  # as the graph's sources
        out[k] = Window(t, tuple(tags[k]), tuple(quotes), quotes)
    return out


def targets(cfg: SftConfig, data, labelset: LabelSet, out: Path):
    """(target answer per clip id, Window per clip id): every window that has a target
    (sft_targets)."""
    clips = [*data.split.train, *data.split.val]
    shown = windows(cfg, clips)
    refs = {k: list(w.refs) for k, w in shown.items()}
    template = load_prompt(cfg.model.prompt).schema
    quotes = {k: w.quotes for k, w in shown.items() if w.quotes}
    got = from_column(cfg.data.manifest, clips, labelset, refs, template, quotes)
    missing = [c for c in clips if c.clip_id not in got]
    if missing:
        check_sources(missing, len(clips), cfg.teacher.llm_url, cfg.data.manifest)
        from vara.tools.vlm import OpenAIServer

        teacher = OpenAIServer(cfg.teacher.llm_url, cfg.teacher.model)
        narratives = {
            k: "\n".join(span_text(g) for g in w.tags) for k, w in shown.items() if w.tags
        }
        got |= from_teacher(
            teacher,
            missing,
            labelset,
            refs,
            out,
            narratives=narratives,
            max_tokens=cfg.teacher.max_tokens,
        )
    return got, shown


def _examples(clips, paths, got, shown) -> tuple[list[Path], list[Example]]:
    keep = [(c, p) for c, p in zip(clips, paths, strict=True) if c.clip_id in got]
    examples = [
        Example(c, shown[c.clip_id].times, got[c.clip_id].answer, shown[c.clip_id].tags)
        for c, _ in keep
    ]
    return [p for _, p in keep], examples


def sft_data(data, got, shown):
    """TrainData whose windows carry example indices (windows without a target left out)."""
    train_paths, train_ex = _examples(data.split.train, data.train.paths, got, shown)
    val_paths, val_ex = _examples(data.split.val, data.val.paths, got, shown)
    if not train_ex:
        raise no_targets(len(data.split.train))
    n = len(train_ex)
    train = WindowFrames(train_paths, np.arange(n))
    val = WindowFrames(val_paths, np.arange(n, n + len(val_ex)))
    return replace(data, train=train, val=val), [*train_ex, *val_ex]


@torch.inference_mode()
def validate(model, collate, data, loss_fn, device: str, t) -> dict[str, Any]:
    """Mean answer-token loss on the validation windows (labels are scored by ``vara
    eval`` with the adapter: generation is the real test)."""
    model.eval()
    losses = []
    for i in range(0, len(data.val), t.eval_batch_size):
        batch = collate([data.val[j] for j in range(i, min(i + t.eval_batch_size, len(data.val)))])
        inputs = {k: v.to(device) for k, v in batch["inputs"].items()}
        with loop.autocast(device, t.precision):
            losses.append(float(model(inputs)))
    return {"val_loss": float(np.mean(losses)) if losses else None}


def run(cfg: SftConfig, *, progress: bool = True) -> Path:
    """Train per ``cfg`` and write the run directory; returns its path."""
    t0 = time.perf_counter()
    device, labelset, model, processor, out, data = common.setup(
        cfg, build_model, progress=progress
    )
    got, shown = targets(cfg, data, labelset, out)
    data, examples = sft_data(data, got, shown)
    prompt = load_prompt(cfg.model.prompt)
    collate = SftCollate(processor, prompt, labelset, examples)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    log.info("trainable parameters: %d (LoRA)", sum(p.numel() for p in trainable))
    history = loop.train_loop(
        cfg,
        model,
        optimizer,
        lambda loss, y: loss,  # the model returns the answer tokens' loss itself
        collate,
        data,
        out,
        device=device,
        progress=progress,
        validate_fn=validate,
    )
    model.net.save_pretrained(str(out / "adapter"))
    info = {
        "kind": "lvlm-sft",
        "backbone": cfg.model.backbone,
        "mode": cfg.model.mode,
        "prompt": f"{prompt.id}.v{prompt.version}",
        "prompt_sha256": prompt.sha256,
        "labels": list(labelset.names),
        "labelset": labelset.name,
        "multi_label": labelset.multi_label,
        "n_frames": cfg.data.n_frames,
        "max_side": cfg.data.max_side,
        "lora_r": cfg.lora.r,
    }
    write_json_atomic(out / "sft.json", info)
    sources = [got[e.clip.clip_id].source for e in examples]
    extra = {
        "targets": {s: sources.count(s) for s in sorted(set(sources))},
        "n_train_with_target": len(data.train),
        "n_val_with_target": len(data.val),
        "trainable_parameters": sum(p.numel() for p in trainable),
    }
    card = rundir.run_card(
        cfg, data, history, wall_s=time.perf_counter() - t0, device=device, extra=extra
    )
    rundir.finish(out, cfg, card)
    return out


def main(config: str, overrides: list[str], *, progress: bool = True) -> Path:
    return run(load_config(SftConfig, config, overrides), progress=progress)
