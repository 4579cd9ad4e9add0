"""A trained classifier as a tool: load a ``vara finetune`` run directory, score FrameBatches.

The run directory is an on-disk contract (docs/finetune.md), read here without importing
``vara.finetune``::

    classifier.json    kind ("vlm-lora" | "timesformer" | "clip-noise"), backbone, labels,
                       multi_label, n_frames, precision ("fp32" | "bf16": the backbone's autocast in
                       validation, where the thresholds were tuned), and for vlm-lora:
                       instruction, pooling, head_hidden
    label_map.json     label -> output index
    thresholds.json    label -> decision threshold (tuned on the validation videos)
    adapter/           PEFT LoRA adapter of the backbone           (vlm-lora)
    head.safetensors   pooling + MLP head weights                   (vlm-lora)
    model/             save_pretrained TimeSformer + its processor  (timesformer)
    noise.safetensors  per-class noise + class text embeddings      (clip-noise; the CLIP
                       itself is loaded from ``backbone``, tools/clip_noise.py)

``load_run_dir`` gives the scorer of kind ``run-dir`` (``tools.scorer``), after
``check_run_dir`` compared the run with the strategy without loading weights.
``predict`` resamples each batch's frames uniformly to the trained frame count, runs the
windows in batches of ``batch_size`` and returns one ``ClassScores`` per window: sigmoid
probabilities and tuned thresholds for multi-label sets, softmax probabilities (thresholds 0:
the top class wins) for single-label sets. Scoring uses the run's recorded precision on
CUDA (bf16 autocast for runs trained with it: the thresholds were tuned on bf16 scores, and
it is the fast path on GPUs) and fp32 on CPU, unless ``precision`` names one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vara.config import ScorerSpec
from vara.errors import ConfigError, InputError
from vara.tools.batching import Batcher
from vara.tools.devices import resolve_device
from vara.tools.timesformer import load_timesformer
from vara.types import ClassScores, FrameBatch, LabelSet, SamplerSpec

__all__ = [
    "Classifier",
    "ClassifierInfo",
    "classifier_id",
    "check_run_dir",
    "check_run_kind",
    "load_classifier",
    "load_run_dir",
    "read_info",
    "resample",
]

log = logging.getLogger(__name__)

KINDS = ("vlm-lora", "timesformer", "clip-noise")
FORMAT = 1


@dataclass(frozen=True)
class ClassifierInfo:
    """classifier.json: what a run directory holds and how to rebuild its model."""

    kind: str
    backbone: str  # hub id or local path the run started from
    labels: tuple[str, ...]
    multi_label: bool
    n_frames: int
    labelset: str = ""
    max_side: int | None = None  # the frames' longer side in training (data.max_side)
    instruction: str = ""  # vlm-lora: the text after the frames
    precision: str = "fp32"  # backbone autocast of validation (thresholds); runs before it: fp32
    pooling: str = "mean"  # vlm-lora
    head_hidden: int = 256  # vlm-lora
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["labels"] = list(self.labels)
        return d


def read_info(run_dir: str | Path) -> ClassifierInfo:
    run = Path(run_dir)
    path = run / "classifier.json"
    if not path.is_file():
        raise InputError(
            f"'{run}' is not a classifier run directory (no classifier.json): pass the "
            "--out folder of `vara finetune`"
        )
    try:
        data = json.loads(path.read_text())
        data["labels"] = tuple(data["labels"])
        info = ClassifierInfo(**data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path} is unreadable or incomplete ({exc}); re-run the training"
        ) from None
    if info.kind not in KINDS or info.format != FORMAT:
        raise InputError(
            f"{path}: kind {info.kind!r} format {info.format} is not one this vara reads "
            f"(kinds {KINDS}, format {FORMAT})"
        )
    return info


def resample(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames spread uniformly over ``frames`` (repeating some when there are fewer)."""
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return frames[idx]


class Classifier:
    """A loaded run directory. Thread-safe: concurrent windows share one model, and are
    batched together — whoever gets the model scores every window waiting at that moment
    (up to ``batch_size`` per forward pass), so a run with ``concurrency`` windows in
    flight fills batches without any caller waiting for a timer."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 8,
        precision: str = "auto",
    ):
        import torch

        from vara.tools.classifier_model import precision_autocast

        self.run_dir = Path(run_dir)
        self.info = read_info(self.run_dir)
        self.labels = self.info.labels
        self.batch_size = batch_size
        self.device = resolve_device(device, "scorer.device")
        self.precision = _precision(precision, self.info, self.device)
        self._autocast = precision_autocast
        self.thresholds = _thresholds(self.run_dir, self.info)
        _check_label_map(self.run_dir, self.info)
        self.model_id = classifier_id(self.run_dir, self.info)
        self._batcher = Batcher(lambda windows: self._forward(windows))  # looked up per call
        self._model, self._encode = _LOADERS[self.info.kind](self.run_dir, self.info)
        self._model.to(self.device).eval()
        self._torch = torch

    def logits(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Raw head outputs (float32) for (T, H, W, 3) uint8 windows, batched with the
        windows of concurrent callers (tools.batching)."""
        return self._batcher(windows)

    def _forward(self, windows: list[np.ndarray]) -> np.ndarray:
        n = self.info.n_frames
        out = []
        with self._torch.inference_mode(), self._autocast(self.device, self.precision):
            for i in range(0, len(windows), self.batch_size):
                chunk = [resample(w, n) for w in windows[i : i + self.batch_size]]
                inputs = {k: v.to(self.device) for k, v in self._encode(chunk).items()}
                out.append(self._model(inputs).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, batches: Sequence[FrameBatch]) -> list[ClassScores]:
        logits = self.logits([b.frames for b in batches])
        if self.info.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
        else:
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
        return [
            ClassScores(
                labels=self.labels,
                # Full precision: the tuned thresholds may sit exactly on a score.
                probs=tuple(float(p) for p in row),
                thresholds=self.thresholds,
                adapter_id=self.model_id,
            )
            for row in probs
        ]


def load_classifier(run_dir: str | Path, **kwargs: Any) -> Classifier:
    return Classifier(run_dir, **kwargs)


def load_run_dir(spec: ScorerSpec) -> Classifier:
    """The scorer of kind run-dir: ``spec.run_dir`` loaded with its device settings."""
    return Classifier(
        spec.run_dir, device=spec.device, batch_size=spec.batch_size, precision=spec.precision
    )


def check_run_dir(spec: ScorerSpec, labelset: LabelSet, sampler: SamplerSpec) -> None:
    """Before loading: the run was trained on this label set; warn where the strategy samples
    windows otherwise than training did (the scores then come from other inputs)."""
    info = read_info(spec.run_dir)
    if info.labels != labelset.names or info.multi_label != labelset.multi_label:
        raise ConfigError(
            f"classifier '{spec.run_dir}' was trained on labels {list(info.labels)} "
            f"({'multi' if info.multi_label else 'single'}-label), but the label set "
            f"{labelset.name!r} has {list(labelset.names)}: pass --labels "
            f"{info.labelset or 'SET'} (the set it was trained with)"
        )
    trained = (info.n_frames, info.max_side)
    if sampler.n_frames != trained[0] or (
        trained[1] is not None and sampler.max_side != trained[1]
    ):
        log.warning(
            "classifier %s was trained on %d frames per window at max side %s, but the "
            "strategy samples %s at %s; for identical inputs pass --frames %d --max-side %s",
            spec.run_dir,
            *trained,
            sampler.n_frames,
            sampler.max_side,
            *trained,
        )


def check_run_kind(kind: str):
    """``check_run_dir`` for a scorer kind that takes only runs of ``kind`` (clip-noise)."""

    def check(spec: ScorerSpec, labelset: LabelSet, sampler: SamplerSpec) -> None:
        info = read_info(spec.run_dir)
        if info.kind != kind:
            raise ConfigError(
                f"'{spec.run_dir}' is a {info.kind} run, not a {kind} one: pass it with "
                f"scorer.kind=run-dir, or the out dir of `vara finetune` {kind.replace('-', '_')}"
            )
        check_run_dir(spec, labelset, sampler)

    return check


def _precision(requested: str, info: ClassifierInfo, device: str) -> str:
    """auto = the run's recorded precision on CUDA (bf16 only where the GPU has it), fp32 on
    CPU; "fp32" / "bf16" as asked. Scores under another precision than the run's differ
    slightly from those the thresholds were tuned on: said once in the log."""
    import torch

    if requested not in ("auto", "fp32", "bf16"):
        raise InputError(f"scorer.precision must be auto, fp32 or bf16, got {requested!r}")
    if requested != "auto":
        chosen = requested
    elif device.startswith("cuda") and info.precision == "bf16":
        chosen = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    else:
        chosen = "fp32"
    if chosen != info.precision:
        log.info(
            "classifier scores under %s; its thresholds were tuned under %s, so scores near a "
            "threshold may fall on the other side of it",
            chosen,
            info.precision,
        )
    return chosen


def _thresholds(run: Path, info: ClassifierInfo) -> tuple[float, ...]:
    if not info.multi_label:
        return tuple(0.0 for _ in info.labels)
    path = run / "thresholds.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    missing = [lab for lab in info.labels if lab not in data]
    if missing:
        raise InputError(f"{path}: no threshold for {missing}; re-run the training")
    return tuple(float(data[lab]) for lab in info.labels)


def _check_label_map(run: Path, info: ClassifierInfo) -> None:
    path = run / "label_map.json"
    if path.is_file() and json.loads(path.read_text()) != {
        lab: i for i, lab in enumerate(info.labels)
    }:
        raise InputError(
            f"{path} disagrees with classifier.json's labels {list(info.labels)}: the run "
            "directory was edited or mixed from two runs; re-run the training"
        )


def classifier_id(run_dir: str | Path, info: ClassifierInfo | None = None) -> str:
    """``kind:run-name@weights-hash``: the model id predictions carry, known without loading."""
    run = Path(run_dir)
    info = info or read_info(run)
    return f"{info.kind}:{run.name}@{_weights_hash(run)}"


def _weights_hash(run: Path) -> str:
    """Short content hash of the trained weights: the id predictions carry."""
    files = sorted(p for p in run.rglob("*.safetensors") if p.is_file())
    if not files:
        raise InputError(f"'{run}' holds no weights (*.safetensors); the training did not finish")
    # Files unchanged since an earlier call (same size and mtime) are not read again: a run
    # computes the id before it loads the classifier, and the classifier computes it again.
    stamps = tuple((str(p), p.relative_to(run).as_posix(), *_stat(p)) for p in files)
    return _hash_files(stamps)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _hash_files(stamps: tuple[tuple[str, str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for path, name, *_ in stamps:
        h.update(name.encode())
        with open(path, "rb") as fh:  # streamed: a full TimeSformer is ~0.5 GB
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


def _load_vlm_lora(run: Path, info: ClassifierInfo):
    from peft import PeftModel
    from safetensors.torch import load_file

    from vara.tools.classifier_model import (
        FrameEncoder,
        VideoClassifier,
        backbone_facts,
        load_backbone,
    )

    backbone, processor = load_backbone(info.backbone)
    hidden, image_token = backbone_facts(backbone)
    backbone = PeftModel.from_pretrained(backbone, str(run / "adapter"), is_trainable=False)
    model = VideoClassifier(
        backbone,
        hidden_size=hidden,
        n_classes=len(info.labels),
        image_token_id=image_token,
        pooling=info.pooling,
        head_hidden=info.head_hidden,
    )
    model.load_head_state(load_file(str(run / "head.safetensors")))
    return model, FrameEncoder(processor, info.instruction)


def _load_clip_noise(run: Path, info: ClassifierInfo):
    from vara.tools.clip_noise import load_clip_noise

    return load_clip_noise(run, info)


_LOADERS = {
    "vlm-lora": _load_vlm_lora,
    "timesformer": lambda run, info: load_timesformer(run),
    "clip-noise": _load_clip_noise,
}
