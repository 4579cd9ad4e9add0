"""The scorer seam: a model that scores a window's frames per class, without language.

A strategy picks one with ``scorer.kind`` (``vara.config.ScorerSpec``); the graphs that use
one (classifier, classifier-explain, agentic's ``classify`` tool), the resume fingerprint and
provenance see only the ``Scorer`` protocol. A new kind is one module implementing it plus one
``ScorerKind`` entry in ``SCORERS``:

    run-dir   a ``vara finetune`` run directory: LoRA VLM + head, or TimeSformer
              (tools/classifier.py)
    clip      a zero-shot CLIP / SigLIP checkpoint and a template ensemble
              (tools/clip_zero_shot.py)
    clip-noise  a ``vara finetune clip_noise`` run: a frozen CLIP plus learned
              class-specific noise (tools/clip_noise.py, loaded as a run directory)

``DeferredScorer`` is what a run holds: its ``model_id`` is known at once (the resume check
needs it), its weights load on ``load()`` or the first ``predict``, so a refused or finished
re-run loads nothing. Labels come from scores by ``decide``: every class at or above its
threshold (multi-label), else the top class.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vara.config import ScorerSpec
from vara.errors import ConfigError, did_you_mean
from vara.tools import classifier, clip_zero_shot
from vara.types import ClassScores, FrameBatch, LabelSet, SamplerSpec

__all__ = [
    "SCORERS",
    "DeferredScorer",
    "Scorer",
    "ScorerKind",
    "check",
    "configured",
    "decide",
    "labels_for",
    "scorer_kind",
]


class Scorer(Protocol):
    """Scores windows per class. Thread-safe: windows in flight call it concurrently."""

    labels: tuple[str, ...]  # the classes its scores are in, in this order
    model_id: str  # what predictions carry: kind, name and a hash of its weights
    batch_size: int  # windows per forward pass (callers may pass more; it chunks them)

    def predict(self, batches: Sequence[FrameBatch]) -> list[ClassScores]:
        """One ClassScores per window (probabilities and decision thresholds)."""
        ...


@dataclass(frozen=True)
class ScorerKind:
    """One entry of SCORERS: how a ``scorer.kind`` is configured, named and loaded.

    ``source`` is the ScorerSpec field naming its weights (set = the scorer is configured);
    ``check`` runs before any weights load (labels against the label set, sampling against
    the strategy's), ``model_id`` reads no weights into memory.
    """

    kind: str
    source: str
    hint: str  # what to pass for ``source``, for error messages
    model_id: Callable[[ScorerSpec], str]
    check: Callable[[ScorerSpec, LabelSet, SamplerSpec], None]
    load: Callable[[ScorerSpec, LabelSet], Scorer]


SCORERS: dict[str, ScorerKind] = {
    k.kind: k
    for k in (
        ScorerKind(
            kind="run-dir",
            source="run_dir",
            hint="RUN_DIR (the out dir of `vara finetune`)",
            model_id=lambda spec: classifier.classifier_id(spec.run_dir),
            check=classifier.check_run_dir,
            load=lambda spec, labelset: classifier.load_run_dir(spec),
        ),
        ScorerKind(
            kind="clip-noise",
            source="run_dir",
            hint="RUN_DIR (the out dir of `vara finetune clip_noise`)",
            model_id=lambda spec: classifier.classifier_id(spec.run_dir),
            check=classifier.check_run_kind("clip-noise"),
            load=lambda spec, labelset: classifier.load_run_dir(spec),
        ),
        ScorerKind(
            kind="clip",
            source="model",
            hint="ID_OR_PATH (a CLIP or SigLIP checkpoint)",
            model_id=clip_zero_shot.clip_id,
            check=clip_zero_shot.check_clip,
            load=clip_zero_shot.load_clip,
        ),
    )
}


def scorer_kind(spec: ScorerSpec) -> ScorerKind:
    kind = SCORERS.get(spec.kind)
    if kind is None:
        raise ConfigError(
            f"scorer.kind {spec.kind!r} is unknown{did_you_mean(spec.kind, SCORERS)}; "
            f"known: {sorted(SCORERS)}"
        )
    return kind


def configured(spec: ScorerSpec) -> bool:
    """Whether ``spec`` names a model (its kind's source setting is set)."""
    return getattr(spec, scorer_kind(spec).source, None) is not None


def decide(
    labels: Sequence[str],
    probs: Sequence[float],
    thresholds: Sequence[float],
    multi_label: bool,
) -> tuple[str, ...]:
    """The labels a score vector stands for: every class at or above its threshold
    (multi-label), else the top class."""
    if multi_label:
        pairs = zip(labels, probs, thresholds, strict=True)
        return tuple(lab for lab, p, t in pairs if p >= t)
    return (labels[int(np.argmax(probs))],)


def labels_for(scores: ClassScores, multi_label: bool) -> tuple[str, ...]:
    """``decide`` on a ClassScores."""
    return decide(scores.labels, scores.probs, scores.thresholds, multi_label)


class DeferredScorer:
    """A configured scorer whose weights load on first use (see the module docstring)."""

    def __init__(self, spec: ScorerSpec, labelset: LabelSet):
        self.spec = spec
        self._kind = scorer_kind(spec)
        self.model_id = self._kind.model_id(spec)
        self.labelset = labelset
        self.labels = labelset.names  # ``check`` confirmed they are the label set's
        self.batch_size = spec.batch_size
        self._loaded: Scorer | None = None
        self._lock = threading.Lock()

    def load(self) -> Scorer:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._kind.load(self.spec, self.labelset)
        return self._loaded

    def predict(self, batches: Sequence[FrameBatch]) -> list[ClassScores]:
        return self.load().predict(batches)


def check(spec: ScorerSpec, labelset: LabelSet, sampler: SamplerSpec, *, who: str = "") -> None:
    """Before any weights load: ``spec`` names a model made for ``labelset``; a warning where
    it was made for other sampling than ``sampler``. ``who`` starts the error of a scorer
    that names no model (``"strategy X: graph 'classifier' "``)."""
    kind = scorer_kind(spec)
    if not configured(spec):
        raise ConfigError(f"{who}needs a scorer: set scorer.{kind.source}={kind.hint}")
    kind.check(spec, labelset, sampler)
