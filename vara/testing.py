"""Offline test helpers for users and the test suite: a tiny random-weight VLM and synthetic
videos. Nothing here downloads anything; heavy imports happen inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_tiny_vlm", "write_test_video"]


def build_tiny_vlm(path: str | Path, **kwargs: Any) -> Path:
    """Build a tiny random Idefics3 VLM (+ locally trained tokenizer) that both vLLM and
    transformers load; see ``vara.tiny_vlm.build_tiny_vlm`` for the options."""
    from vara.tiny_vlm import build_tiny_vlm as build

    return build(path, **kwargs)


def write_test_video(path: str | Path, **kwargs: Any) -> Path:
    """Write a synthetic video whose frames encode their own index; see
    ``vara.synth_video.write_test_video`` for codecs and options."""
    from vara.synth_video import write_test_video as write

    return write(path, **kwargs)
