"""The LoRA VLM classifier as a torch module: VLM backbone -> pooled vision-token states -> MLP.

The newborn-resuscitation study's best model: a VLM's language model reads the window's
frames (as images, after a fixed instruction), its last hidden states at the vision-token
positions are pooled (mean, or attention with a learned query) and an MLP head gives one
logit per class. ``finetune.lora_classifier`` trains it (LoRA on the backbone, the head in
full) and ``tools.classifier`` rebuilds it from a run directory; both build it here, so the
two can never disagree about the architecture.

The backbone is loaded with transformers' ``AutoModel`` (the VLM without its LM head), by
hub id or local path. Frames go through the model's own processor and chat template.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vara.errors import InputError
from vara.tools.local_engine import (
    SPURIOUS_CONFIG_WARNING,
    model_source,
    not_loadable,
    without_log_messages,
)

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "precision_autocast",
    "AttentionPool",
    "FrameEncoder",
    "MeanPool",
    "VideoClassifier",
    "load_backbone",
    "own_memory",
    "prior_bias",
    "lora_target_names",
]

POOLINGS = ("mean", "attention")


class MeanPool(nn.Module):
    """Average of the hidden states at the vision-token positions."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """A learned query attends over the vision-token states (softmax over those positions)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(hidden_size))  # zero = starts as the mean
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(hidden)
        logits = (h @ self.query) / math.sqrt(h.shape[-1])
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1).unsqueeze(-1)
        return (hidden * weights).sum(1)


PRECISIONS = ("fp32", "bf16")


def precision_autocast(device: str, precision: str):
    """The backbone's autocast for a resolved precision: bf16 autocast for "bf16", none for
    "fp32" (pooling and head stay float32 either way). Training, validation (where the
    thresholds are tuned) and inference all go through here, so scores are computed the
    same way in all three."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = device.split(":")[0]
    return torch.autocast(device_type=kind, dtype=torch.bfloat16, enabled=precision == "bf16")


class VideoClassifier(nn.Module):
    """backbone (a transformers VLM base model, maybe PEFT-wrapped) + pooling + MLP head.

    The attribute is ``backbone``, never ``config``: PEFT treats a module with a transformers
    config attribute as a transformers model and fails on it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        hidden_size: int,
        n_classes: int,
        image_token_id: int,
        pooling: str = "mean",
        head_hidden: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.image_token_id = image_token_id
        self.pool = MeanPool() if pooling == "mean" else AttentionPool(hidden_size)
        self.head = nn.Sequential(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, head_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, n_classes),
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.backbone(**inputs, use_cache=False)
        mask = inputs["input_ids"] == self.image_token_id
        if not bool(mask.any(dim=1).all()):
            raise ValueError("an input has no vision tokens: were its frames dropped?")
        # Pooling and head run in float32 whatever the backbone's precision (autocast off):
        # they are tiny, and their logits feed the loss and the tuned thresholds.
        with torch.autocast(device_type=mask.device.type, enabled=False):
            pooled = self.pool(out.last_hidden_state.float(), mask)
            return self.head(pooled)

    def head_state(self) -> dict[str, torch.Tensor]:
        """Weights trained in full (pooling + head): saved beside the PEFT adapter."""
        state = {f"pool.{k}": v for k, v in self.pool.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, module in (("pool", self.pool), ("head", self.head)):
            part = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
            module.load_state_dict(part, strict=True)

    def init_bias(self, prior: Sequence[float], multi_label: bool) -> None:
        with torch.no_grad():
            self.head[-1].bias.copy_(prior_bias(prior, multi_label))


def prior_bias(prior: Sequence[float], multi_label: bool) -> torch.Tensor:
    """A classification layer's starting bias at the class prior: logit(p) per class (BCE)
    or log p (softmax), so the first steps learn the evidence, not the base rates."""
    p = torch.tensor(prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p)) if multi_label else torch.log(p)


class FrameEncoder:
    """Frames of windows -> backbone inputs: the model's chat template with one image per
    frame before a fixed instruction, then the processor (resize, normalise, tokenise)."""

    def __init__(self, processor: Any, instruction: str):
        self.processor = processor
        self.instruction = instruction
        self._templates: dict[int, str] = {}

    def text(self, n_frames: int) -> str:
        if n_frames not in self._templates:
            content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_frames)]
            content.append({"type": "text", "text": self.instruction})
            conversation = [{"role": "user", "content": content}]
            self._templates[n_frames] = self.processor.apply_chat_template(
                conversation, add_generation_prompt=False, tokenize=False
            )
        return self._templates[n_frames]

    def __call__(self, windows: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """``windows``: (T, H, W, 3) uint8 RGB arrays, all with the same T."""
        from PIL import Image

        counts = {len(w) for w in windows}
        if len(counts) != 1:
            raise ValueError(f"windows in one batch need the same frame count, got {counts}")
        text = self.text(counts.pop())
        images = [[Image.fromarray(np.ascontiguousarray(f)) for f in w] for w in windows]
        return dict(
            self.processor(
                text=[text] * len(windows), images=images, return_tensors="pt", padding=True
            )
        )


def load_backbone(model: str, *, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any]:
    """(VLM base model without LM head, processor) by hub id or local path."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    source, kwargs = model_source(model)
    try:
        with _without_spurious_warnings():
            config = AutoConfig.from_pretrained(source, **kwargs)
            processor = AutoProcessor.from_pretrained(source, **kwargs)
            if getattr(processor, "image_processor", None) is None:
                raise InputError(
                    f"model '{model}' ({config.model_type}) has no image processor here: the "
                    "classifier needs a vision-language checkpoint whose processor loads "
                    "without torchvision (Idefics3/SmolVLM), or a working torchvision"
                )
            backbone, info = AutoModel.from_pretrained(
                source, dtype=dtype, output_loading_info=True, **kwargs
            )
        _report_loading(model, info)
        backbone = own_memory(backbone)
    except ImportError as exc:
        raise InputError(f"model '{model}' needs a package that is missing here: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise not_loadable(model, exc) from exc
    return backbone, processor


# transformers' messages that are wrong for a classifier backbone, by logger:
_SPURIOUS = {
    # The base model never has the checkpoint's LM head, so every load prints the head's
    # weights as UNEXPECTED, "not ok if you expect identical arch"; _report_loading says
    # what matters instead.
    "transformers.modeling_utils": "LOAD REPORT",
    **SPURIOUS_CONFIG_WARNING,
}


def _without_spurious_warnings() -> contextlib.AbstractContextManager[None]:
    return without_log_messages(_SPURIOUS)


def _report_loading(model: str, info: dict[str, Any]) -> None:
    """Warn when backbone weights start random; the dropped LM head is expected."""
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        log.warning(
            "backbone %s: %d weight(s) are not in the checkpoint and start random: %s%s",
            model,
            len(missing),
            missing[:5],
            " ..." if len(missing) > 5 else "",
        )
    unused = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith("lm_head."))
    if unused:
        log.info("backbone %s: %d checkpoint weight(s) unused: %s", model, len(unused), unused[:5])


def own_memory(module: nn.Module) -> nn.Module:
    """Give every weight its own freshly allocated memory.

    On CPU, ``from_pretrained`` leaves weights as unaligned views into what it read, and
    MKL's small-batch kernels round differently there than on aligned memory; training and
    every reload both call this, so a reloaded model's logits match training's bit for bit.
    """
    for t in (*module.parameters(), *module.buffers()):
        t.data = t.data.clone()
    return module


def backbone_facts(backbone: nn.Module) -> tuple[int, int]:
    """(hidden size of the language model, id of the image token)."""
    config = backbone.config
    text = getattr(config, "text_config", None) or config
    token = getattr(config, "image_token_id", None)
    if token is None:
        token = getattr(config, "image_token_index", None)
    if token is None:
        raise InputError(
            f"backbone {type(backbone).__name__} names no image token id in its config: "
            "it is not a supported vision-language model"
        )
    return int(text.hidden_size), int(token)


def lora_target_names(backbone: nn.Module, modules: Sequence[str], vision: bool) -> list[str]:
    """Full names of the Linear layers LoRA adapts: those whose last name part is in
    ``modules``, inside the language model only unless ``vision``."""
    decoder = backbone.get_decoder() if hasattr(backbone, "get_decoder") else None
    prefix = next((n for n, m in backbone.named_modules() if m is decoder), None)
    if not vision and not prefix:
        raise InputError(
            f"cannot find the language model inside {type(backbone).__name__}: set "
            "lora.vision_tower: true to adapt matching layers everywhere"
        )
    names = [
        name
        for name, module in backbone.named_modules()
        if isinstance(module, nn.Linear)
        and name.rsplit(".", 1)[-1] in modules
        and (vision or name.startswith(prefix + "."))
    ]
    if not names:
        raise InputError(
            f"lora.target_modules {list(modules)} match no Linear layer of "
            f"{type(backbone).__name__}; e.g. q_proj, k_proj, v_proj, o_proj"
        )
    return names
