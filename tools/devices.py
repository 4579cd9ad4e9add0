"""Where an in-process model runs: one resolver for every ``device`` setting."""

from __future__ import annotations

from vara.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str, setting: str) -> str:
    """``auto`` -> cuda where a GPU is visible, else cpu; a CUDA device asked for on a machine
    without one is an error naming ``setting`` (e.g. ``scorer.device``)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{setting}={device!r} but no CUDA device is available; use cpu")
    return device
