"""Recipe: the supervised TimeSformer baseline, fine-tuned in full on labelled windows.

    vara finetune timesformer data.manifest=labels.csv out=runs/timesformer

The newborn-resuscitation study's baseline (macro-F1 0.70 vs 0.91 for the LoRA VLM): a
video transformer with divided space-time attention (transformers
``TimesformerForVideoClassification``) reads a window's frames and gives one logit per
class. It starts from a pretrained checkpoint (``model.checkpoint``, by default the
Kinetics-400 one; its 400-way layer is replaced by a fresh one per label) or, with
``model.checkpoint=null``, from random weights built from the ``model`` fields (tests,
ablations). It trains on the same manifests, windows, video split and metrics as the LoRA
recipe (``common``), so the two run directories are directly comparable. Read top to
bottom: setup (config, data, split, frames, model) -> train (epochs, validation,
thresholds) -> save (a run directory that ``tools.classifier`` loads; see docs/finetune.md).

Every weight trains (full fine-tune): the backbone at ``train.lr``, the new classification
layer at ``train.head_lr`` (it starts from scratch, so it gets the larger rate). Frames go
through the PIL ``VideoMAEImageProcessor`` (resize the short side, centre crop, normalise):
transformers' video processors need torchvision, which is absent here.

An interrupted run resumes: decoded frames stay in ``<out>/frames`` and all weights +
optimiser are checkpointed after every epoch to ``<out>/checkpoint.pt``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vara.finetune import common, loop, rundir
from vara.finetune.config import Config, load_config
from vara.tools.classifier import ClassifierInfo
from vara.tools.classifier_model import own_memory, prior_bias
from vara.tools.local_engine import model_source, not_loadable
from vara.tools.timesformer import VideoEncoder, timesformer_processor_class
from vara.types import LabelSet

__all__ = ["TimesformerConfig", "ModelSpec", "TimesformerClassifier", "run"]

log = logging.getLogger(__name__)

ATTENTION_TYPES = ("divided_space_time", "space_only", "joint_space_time")


@dataclass(frozen=True)
class ModelSpec:
    # Hub id or local path of a pretrained TimeSformer; null = random init from the fields
    # below. With a checkpoint those fields are ignored (the checkpoint's own sizes win).
    checkpoint: str | None = "facebook/timesformer-base-finetuned-k400"
    image_size: int = 224  # from config: square input side (the processor crops to it)
    patch_size: int = 16  # from config: image_size must be a multiple
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12  # hidden_size must be a multiple
    intermediate_size: int = 3072  # MLP width inside each block
    attention_type: str = "divided_space_time"  # | joint_space_time | space_only
    # Normalisation of a from-config model's processor (a checkpoint brings its own):
    # the Kinetics TimeSformer values.
    image_mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    image_std: tuple[float, ...] = (0.225, 0.225, 0.225)

    def __post_init__(self) -> None:
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}")
        if self.image_size % self.patch_size or self.hidden_size % self.num_attention_heads:
            raise ValueError(
                "image_size must be a multiple of patch_size and hidden_size of "
                f"num_attention_heads; got {self}"
            )
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need one value per RGB channel")


@dataclass(frozen=True)
class TimesformerConfig(Config):
    model: ModelSpec = field(default_factory=ModelSpec)

    SECTIONS: ClassVar[dict[str, type]] = {**Config.SECTIONS, "model": ModelSpec}


class TimesformerClassifier(nn.Module):
    """The transformers model behind the recipes' call: ``model(inputs) -> logits``.

    ``new_head``: the classification layer starts from scratch (False only when a checkpoint
    already classifies exactly these labels, e.g. a finished run's ``model/``). The attribute
    is ``net``, never ``config`` (see ``VideoClassifier``)."""

    def __init__(self, net: nn.Module, *, new_head: bool = True):
        super().__init__()
        self.net = net
        self.new_head = new_head

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(pixel_values=inputs["pixel_values"]).logits

    def init_bias(self, prior: Sequence[float], multi_label: bool) -> None:
        """Start the new classification layer at the class prior (as the LoRA head does)."""
        with torch.no_grad():
            self.net.classifier.bias.copy_(prior_bias(prior, multi_label))


def build_model(
    cfg: TimesformerConfig, labelset: LabelSet, device: str
) -> tuple[TimesformerClassifier, VideoEncoder]:
    """A TimeSformer for ``labelset``: from scratch (``model.checkpoint`` null) or from a
    checkpoint, with the PIL image processor (the checkpoint's, else one from the config)."""
    from transformers import TimesformerConfig as HFConfig
    from transformers import TimesformerForVideoClassification

    m = cfg.model
    labels = {
        "num_labels": len(labelset.labels),
        "id2label": dict(enumerate(labelset.names)),
        "label2id": {name: i for i, name in enumerate(labelset.names)},
        "problem_type": (
            "multi_label_classification" if labelset.multi_label else "single_label_classification"
        ),
    }
    if m.checkpoint is None:
        hf = HFConfig(
            image_size=m.image_size,
            patch_size=m.patch_size,
            num_frames=cfg.data.n_frames,
            hidden_size=m.hidden_size,
            num_hidden_layers=m.num_hidden_layers,
            num_attention_heads=m.num_attention_heads,
            intermediate_size=m.intermediate_size,
            attention_type=m.attention_type,
            **labels,
        )
        net, processor, new_head = TimesformerForVideoClassification(hf), None, True
    else:
        net, processor, new_head = _from_checkpoint(cfg, labelset, labels)
    if processor is None:
        side = net.config.image_size
        processor = timesformer_processor_class()(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_mean=list(m.image_mean),
            image_std=list(m.image_std),
        )
    return TimesformerClassifier(net, new_head=new_head).to(device), VideoEncoder(processor)


def _from_checkpoint(cfg: TimesformerConfig, labelset: LabelSet, labels: dict[str, Any]):
    """(net, the checkpoint's processor or None, whether the classification layer is new)."""
    from transformers import TimesformerConfig as HFConfig
    from transformers import TimesformerForVideoClassification

    m = cfg.model
    source, kwargs = model_source(m.checkpoint)
    try:
        known = HFConfig.from_pretrained(source, **kwargs).id2label
        # num_frames stays the checkpoint's: a different frame count re-samples the time
        # embeddings at every call (transformers does), instead of re-initialising them.
        net = TimesformerForVideoClassification.from_pretrained(
            source, ignore_mismatched_sizes=True, **labels, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise not_loadable(m.checkpoint, exc) from None
    # Keep the checkpoint's classification layer only when it scores exactly these labels
    # in this order; any other (Kinetics' 400 classes, another label set of the same size)
    # is replaced, as transformers initialises a new one.
    new_head = [known.get(i) for i in range(len(known))] != list(labelset.names)
    if new_head:
        with torch.no_grad():
            nn.init.trunc_normal_(net.classifier.weight, std=net.config.initializer_range)
            nn.init.zeros_(net.classifier.bias)
    own_memory(net)  # as tools.classifier does for the saved run (see own_memory)
    try:
        processor = timesformer_processor_class().from_pretrained(source, **kwargs)
    except OSError:  # a checkpoint without preprocessor_config.json
        processor = None
    if net.config.num_frames != cfg.data.n_frames:
        log.warning(
            "checkpoint %s was trained on %d frames, data.n_frames is %d: its time "
            "embeddings are resampled",
            m.checkpoint,
            net.config.num_frames,
            cfg.data.n_frames,
        )
    return net, processor, new_head


def run(cfg: TimesformerConfig, *, progress: bool = True) -> Path:
    """Train per ``cfg`` and write the run directory; returns its path."""
    # ---- setup --------------------------------------------------------------------------
    t0 = time.perf_counter()
    device, labelset, model, encoder, out, data = common.setup(cfg, build_model, progress=progress)
    if model.new_head:
        model.init_bias(common.class_prior(data.train_y, labelset), labelset.multi_label)
    head = [p for n, p in model.named_parameters() if n.startswith("net.classifier.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("net.classifier.")]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": cfg.train.lr}, {"params": head, "lr": cfg.train.head_lr}],
        weight_decay=cfg.train.weight_decay,
    )
    loss_fn = common.loss_for(cfg.train, labelset, data.train_y, device)
    collate = common.Collate(encoder)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %d (all)", n_total)

    # ---- train --------------------------------------------------------------------------
    history = loop.train_loop(
        cfg, model, optimizer, loss_fn, collate, data, out, device=device, progress=progress
    )

    # ---- save ---------------------------------------------------------------------------
    val_logits, thresholds, precision = rundir.final_scores(
        cfg, model, collate, data, labelset, device
    )
    model.net.save_pretrained(str(out / "model"))
    encoder.processor.save_pretrained(str(out / "model"))
    info = ClassifierInfo(
        kind="timesformer",
        backbone=cfg.model.checkpoint or "from-config",
        labels=labelset.names,
        multi_label=labelset.multi_label,
        n_frames=cfg.data.n_frames,
        labelset=labelset.name,
        max_side=cfg.data.max_side,
        precision=precision,
    )
    net_cfg = model.net.config
    extra: dict[str, Any] = {
        "trainable_parameters": n_total,
        "total_parameters": n_total,
        "init": "pretrained" if cfg.model.checkpoint else "random",
        "head": "new" if model.new_head else "kept",  # kept: the checkpoint had these labels
        "model_num_frames": net_cfg.num_frames,  # != n_frames: time embeddings resampled
        "image_size": net_cfg.image_size,
        "image_mean": list(encoder.processor.image_mean),
        "image_std": list(encoder.processor.image_std),
    }
    rundir.write_run(
        out,
        cfg,
        info,
        data,
        thresholds,
        val_logits,
        history,
        wall_s=time.perf_counter() - t0,
        device=device,
        extra=extra,
    )
    return out


def main(config: str, overrides: list[str], *, progress: bool = True) -> Path:
    return run(load_config(TimesformerConfig, config, overrides), progress=progress)
