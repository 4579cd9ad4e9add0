"""The ``clip`` scorer: zero-shot action recognition with a CLIP-family model, in-process.

Any checkpoint transformers loads with ``get_image_features`` / ``get_text_features`` (CLIP,
SigLIP, SigLIP2; hub id or local path, ``scorer.model``). Per window:

- frames are encoded in batches of ``scorer.batch_size`` frames (one forward per batch);
  the windows of concurrent callers (the run's windows in flight) are scored together
  (``tools.batching``), each frame embedding L2-normalised;
- ``pool: mean`` (default): the window's embedding is the mean of its frames' (normalised
  again), scored against the classes; ``pool: vote``: each frame is scored, and the window's
  probabilities are the mean of its frames';
- the text side is a template ensemble (``prompts/clip.v1.yaml``: one text per line,
  rendered per label); a class's embedding is the normalised mean of its texts', computed
  once per scorer (model x label set x prompt hash);
- scores: CLIP's softmax over the classes of ``logit_scale * cosine``; SigLIP's (it has a
  ``logit_bias``) sigmoid of ``logit_scale * cosine + logit_bias``. Thresholds are 0.5
  (multi-label sets; ``vara eval`` tunes per-class ones) or 0 (single-label: the top class).

``model_id`` names the checkpoint, its weights (a local directory's fingerprint) and the
prompt's id and hash, so predictions carry both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vara.config import ScorerSpec
from vara.errors import ConfigError, InputError
from vara.prompts.loader import PromptTemplate, load_prompt
from vara.tools.batching import Batcher
from vara.tools.chat import weights_fingerprint
from vara.tools.devices import resolve_device
from vara.tools.local_engine import model_source, not_loadable
from vara.types import ClassScores, FrameBatch, LabelSet, SamplerSpec

__all__ = [
    "ClipScorer",
    "check_clip",
    "class_embeddings",
    "clip_id",
    "ensemble_texts",
    "features",
    "is_sigmoid",
    "load_clip",
    "load_clip_model",
]

log = logging.getLogger(__name__)

POOLS = ("mean", "vote")


def ensemble_texts(prompt: PromptTemplate, labelset: LabelSet) -> list[list[str]]:
    """Per label, the texts its embedding averages: the prompt's non-empty lines."""
    out = []
    for label in labelset.labels:
        lines = prompt.render(label=label, labelset=labelset).user.splitlines()
        texts = [" ".join(line.split()) for line in lines if line.strip()]
        if not texts:
            raise ConfigError(f"prompt {prompt.id}.v{prompt.version} renders no text for {label}")
        out.append(texts)
    return out


def clip_id(spec: ScorerSpec) -> str:
    """``clip:NAME@WEIGHTS+PROMPT:HASH``, known without loading the model."""
    prompt = load_prompt(spec.prompt)
    weights = weights_fingerprint(spec.model) or "hub"
    name = Path(spec.model).name if Path(spec.model).expanduser().exists() else spec.model
    return f"clip:{name}@{weights}+{prompt.id}.v{prompt.version}:{prompt.sha256[:12]}"


def check_clip(spec: ScorerSpec, labelset: LabelSet, sampler: SamplerSpec) -> None:
    """Before loading: a pool this scorer has, and a prompt that renders every label."""
    if spec.pool not in POOLS:
        raise ConfigError(f"scorer.pool must be one of {POOLS}, got {spec.pool!r}")
    ensemble_texts(load_prompt(spec.prompt), labelset)


def load_clip(spec: ScorerSpec, labelset: LabelSet) -> ClipScorer:
    return ClipScorer(spec, labelset)


def load_clip_model(model: str) -> tuple[Any, Any]:
    """(model, processor) of a CLIP-family checkpoint (hub id or local path), on the CPU in
    eval mode; an InputError names a checkpoint that is not one."""
    from transformers import AutoModel, AutoProcessor

    source, kwargs = model_source(model)
    try:
        net = AutoModel.from_pretrained(source, **kwargs)
        processor = AutoProcessor.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise not_loadable(model, exc) from None
    if not hasattr(net, "get_image_features"):
        raise InputError(
            f"'{model}' is a {type(net).__name__}, not a CLIP-family model "
            "(no image/text embeddings): pass a CLIP or SigLIP checkpoint"
        )
    return net.eval(), processor


def is_sigmoid(net: Any) -> bool:
    """SigLIP-style (a ``logit_bias``: sigmoid per class) rather than CLIP's softmax."""
    return getattr(net, "logit_bias", None) is not None


def features(out: Any) -> Any:
    """L2-normalised embeddings from ``get_image_features`` / ``get_text_features`` (in
    transformers 5 a model output whose ``pooler_output`` is the projected embedding)."""
    emb = getattr(out, "pooler_output", out)
    return emb / emb.norm(dim=-1, keepdim=True)


def class_embeddings(net: Any, processor: Any, texts: list[list[str]]) -> Any:
    """(K, D) class embeddings: per class the normalised mean of its texts' embeddings."""
    import torch

    flat = [t for group in texts for t in group]
    padding = "max_length" if is_sigmoid(net) else True  # SigLIP was trained on fixed length
    tokens = processor(text=flat, padding=padding, truncation=True, return_tensors="pt")
    device = next(net.parameters()).device
    with torch.inference_mode():
        emb = features(net.get_text_features(**tokens.to(device)))
    out, start = [], 0
    for group in texts:  # the mean over each class's ensemble, normalised again
        mean = emb[start : start + len(group)].mean(dim=0)
        out.append(mean / mean.norm())
        start += len(group)
    return torch.stack(out)


class ClipScorer:
    """A loaded CLIP-family model scoring windows against a label set (the Scorer protocol)."""

    def __init__(self, spec: ScorerSpec, labelset: LabelSet):
        import torch

        self.spec, self.labelset = spec, labelset
        self.labels = labelset.names
        self.model_id = clip_id(spec)
        self.batch_size = spec.batch_size
        self.prompt = load_prompt(spec.prompt)
        self._model, self._processor = load_clip_model(spec.model)
        self._device = resolve_device(spec.device, "scorer.device")
        self._model.to(self._device).eval()
        self._torch = torch
        self._sigmoid = is_sigmoid(self._model)
        self._batcher = Batcher(self._score)
        self.texts = ensemble_texts(self.prompt, labelset)
        self._classes = class_embeddings(self._model, self._processor, self.texts)

    def _frame_embeddings(self, frames: list[np.ndarray]) -> Any:
        torch, chunks = self._torch, []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):  # one forward per batch of frames
                pixels = self._processor(
                    images=frames[i : i + self.batch_size], return_tensors="pt"
                )
                chunks.append(features(self._model.get_image_features(**pixels.to(self._device))))
        return torch.cat(chunks)

    def _probs(self, emb: Any) -> np.ndarray:
        logits = self._model.logit_scale.exp() * emb @ self._classes.T
        if self._sigmoid:
            return self._torch.sigmoid(logits + self._model.logit_bias).float().cpu().numpy()
        return self._torch.softmax(logits, dim=-1).float().cpu().numpy()

    def _score(self, batches: list[FrameBatch]) -> np.ndarray:
        """Probabilities of each window: its frames' embeddings pooled (mean), or its
        frames' probabilities averaged (vote)."""
        frames = [f for b in batches for f in b.frames]
        with self._torch.inference_mode():
            emb = self._frame_embeddings(frames)
            if self.spec.pool == "mean":
                means, start = [], 0
                for b in batches:
                    m = emb[start : start + len(b.frames)].mean(dim=0)
                    means.append(m / m.norm())
                    start += len(b.frames)
                return self._probs(self._torch.stack(means))
            per_frame, start, rows = self._probs(emb), 0, []
            for b in batches:
                rows.append(per_frame[start : start + len(b.frames)].mean(axis=0))
                start += len(b.frames)
            return np.stack(rows)

    def predict(self, batches: Sequence[FrameBatch]) -> list[ClassScores]:
        probs = self._batcher(batches)  # with the windows of concurrent callers
        threshold = 0.5 if self.labelset.multi_label else 0.0
        return [
            ClassScores(
                labels=self.labels,
                probs=tuple(float(p) for p in row),
                thresholds=(threshold,) * len(self.labels),
                adapter_id=self.model_id,
            )
            for row in probs
        ]
