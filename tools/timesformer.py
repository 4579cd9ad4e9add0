"""The TimeSformer baseline's model files, as the classifier tool reads them and its recipe
(``finetune/timesformer.py``) writes them: the PIL image processor both use, the frames ->
pixel_values encoder, and the loader of a run directory's ``model/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoEncoder", "load_timesformer", "timesformer_processor_class"]


class _TimesformerAdapter:
    """A TimeSformer video classifier behind the same (inputs dict -> logits) call."""

    def __init__(self, net: Any):
        self.net = net

    def to(self, device: str) -> _TimesformerAdapter:
        self.net.to(device)
        return self

    def eval(self) -> _TimesformerAdapter:
        self.net.eval()
        return self

    def __call__(self, inputs: dict[str, Any]) -> Any:
        return self.net(**inputs).logits


class VideoEncoder:
    """Frames of windows -> ``{"pixel_values": (B, T, 3, S, S)}`` through a video model's
    image processor: what the TimeSformer recipe trains on and this tool scores with."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, windows: Sequence[np.ndarray]) -> dict[str, Any]:
        return dict(self.processor([list(w) for w in windows], return_tensors="pt"))


def timesformer_processor_class() -> type:
    """The PIL VideoMAE image processor, named directly: transformers' video processors need
    torchvision, and the default class picks a torchvision backend wherever torchvision
    imports, whose resizing differs. Training and inference both use this one."""
    try:
        from transformers import VideoMAEImageProcessorPil as cls
    except ImportError:  # transformers without a separate PIL class: this one is PIL
        from transformers import VideoMAEImageProcessor as cls
    return cls


def load_timesformer(run: Path):
    """A run directory's ``model/``: the net behind the (inputs -> logits) call, and its encoder."""
    from transformers import TimesformerForVideoClassification

    from vara.tools.classifier_model import own_memory

    path = run / "model"
    net = TimesformerForVideoClassification.from_pretrained(str(path), local_files_only=True)
    own_memory(net)  # logits bit-identical to training's (see own_memory)
    # The PIL image processor, named directly as the recipe does: transformers' video
    # processors need torchvision, and the default VideoMAEImageProcessor picks a torchvision
    # backend wherever torchvision imports, whose resizing differs from training's.
    processor = timesformer_processor_class().from_pretrained(str(path), local_files_only=True)
    return _TimesformerAdapter(net), VideoEncoder(processor)
