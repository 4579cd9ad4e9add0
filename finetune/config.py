"""Configs of the training recipes: frozen dataclass sections, loaded from YAML plus
``key.sub=value`` overrides (``vara finetune CONFIG key=value ...``). A recipe's config
subclasses ``Config`` and adds its own sections (``model``, ``lora``) to ``SECTIONS``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from vara.config import apply_overrides
from vara.errors import ConfigError, did_you_mean

__all__ = ["Config", "DataSpec", "SplitSpec", "TrainSpec", "load_config"]


@dataclass(frozen=True)
class DataSpec:
    # clips or interval manifest (CSV/JSONL), ucf101:ROOT or kinetics:CSV, as for vara eval
    manifest: str | None = None
    split: int | None = None  # ucf101: train on official split N's list (null: every video)
    subset: str | None = None  # ucf101 + split: train (default) | test | all; kinetics: a split
    video_root: str | None = None  # kinetics videos / manifest-relative paths (null: its folder)
    labels: str = "newborn-resuscitation"  # packaged label set or a YAML path
    format: str = "auto"  # auto | clips | intervals
    window_s: float = 2.0  # interval manifests: window length (the study's 2 s)
    overlap: float = 0.5  # ... and overlap (50 %)
    min_overlap: float = 0.5  # a label is positive above this fraction of the window
    n_frames: int = 8  # frames per window the model sees; more = finer motion, more memory
    max_side: int = 448  # frames are resized so the longer side is at most this
    # Decoded frames (~10 GB per hour of video at the defaults). null: <out>/frames, removed
    # when the run finishes. A directory: kept, and shared by every run on the same windows.
    frames_dir: str | None = None


@dataclass(frozen=True)
class SplitSpec:
    val_fraction: float = 0.2  # share of VIDEOS held out (never windows of one video)
    val_videos: tuple[str, ...] = ()  # or name the held-out videos explicitly


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 5
    batch_size: int = 4  # windows per optimiser micro-step
    grad_accum: int = 1  # micro-steps per optimiser step (effective batch = product)
    eval_batch_size: int = 8
    lr: float = 2.0e-4  # LoRA / backbone learning rate
    head_lr: float = 1.0e-3  # head (and pooling) learning rate
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # gradient clipping; 0 = off
    precision: str = "auto"  # auto = bf16 autocast where the GPU supports it, else fp32
    loss: str = "auto"  # auto = BCE with pos_weight (multi-label sets), CE (single-label)
    device: str = "auto"  # auto = cuda if available, else cpu
    # DataLoader workers that decode + preprocess batches; auto = 4 on CUDA (capped by the
    # CPU count), 0 on CPU, where workers would take cores from the training itself.
    num_workers: int | str = "auto"
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("train: epochs, batch_size and grad_accum must be >= 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.loss not in ("auto", "bce", "ce"):
            raise ValueError(f"train.loss must be auto, bce or ce, got {self.loss!r}")
        w = self.num_workers
        if w != "auto" and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
            raise ValueError(f"train.num_workers must be auto or an integer >= 0, got {w!r}")


@dataclass(frozen=True)
class Config:
    recipe: str
    out: str = "runs/finetune"  # the run directory
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    split: SplitSpec = field(default_factory=SplitSpec)
    train: TrainSpec = field(default_factory=TrainSpec)

    SECTIONS: ClassVar[dict[str, type]] = {"data": DataSpec, "split": SplitSpec, "train": TrainSpec}

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _coerce(hint: Any, value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: make it the float the field wants."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and "float" in str(hint):
        try:
            return float(value)
        except ValueError:
            return value  # the dataclass' own check (or the optimiser) names the field
    return value


_TYPES: dict[str, Any] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "None": lambda v: v is None,
}


def _type_ok(hint: Any, value: Any) -> bool:
    """``value`` fits the field's annotation (``int``, ``str | None``, ``tuple[str, ...]``...);
    an annotation this does not know passes (the dataclass' own checks still run)."""
    for alt in str(hint).split("|"):
        alt = alt.strip()
        base = alt.split("[")[0]
        if base in ("tuple", "list"):
            if isinstance(value, (tuple, list)):
                return True
        elif base not in _TYPES or _TYPES[base](value):
            return True
    return False


def _section(cls: type, name: str, values: Any, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {name} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        hint = did_you_mean(unknown[0], known) if len(unknown) == 1 else ""
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} in {name}{hint}; known: {sorted(known)}"
        )
    values = {k: _coerce(known[k].type, v) for k, v in values.items()}
    for k, v in values.items():  # sections (DataSpec ...) pass here: checked one by one
        if not _type_ok(known[k].type, v):
            key = k if name == "config" else f"{name}.{k}"
            default = known[k].default
            hint = "" if default is dataclasses.MISSING else f" (default: {key}={default})"
            raise ConfigError(f"{source}: {key} must be {known[k].type}, got {v!r}{hint}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {name}: {exc}") from None


def load_config(cls: type, path: str | Path, overrides: Sequence[str] = ()):
    """YAML file + ``key.sub=value`` overrides -> the recipe's frozen config."""
    src = Path(path)
    if not src.is_file():
        raise ConfigError(f"finetune config '{src}' not found")
    data = yaml.safe_load(src.read_text()) or {}
    data = apply_overrides(data, list(overrides), example="train.epochs=3")
    where = f"{src} + command-line overrides" if overrides else str(src)
    top = {f.name for f in dataclasses.fields(cls)} - set(cls.SECTIONS)
    unknown = sorted(set(data) - top - set(cls.SECTIONS))
    if unknown:
        hint = did_you_mean(unknown[0], top | set(cls.SECTIONS)) if len(unknown) == 1 else ""
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}{hint}; known: {sorted(top | set(cls.SECTIONS))}"
        )
    kwargs = {k: v for k, v in data.items() if k in top}
    for name, section in cls.SECTIONS.items():
        kwargs[name] = _section(section, name, data.get(name) or {}, where)
    cfg = _section(cls, "config", kwargs, where)
    if cfg.data.manifest is None:
        raise ConfigError(f"{where}: data.manifest is not set; pass data.manifest=PATH")
    return cfg
